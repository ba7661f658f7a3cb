"""Where the compiled numba kernels are cached."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import quant
from fixtures.components import require_component
from quant import _cache


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("NUMBA_CACHE_DIR", "GGTOOL_CACHE_DIR"):
        # setenv first so that monkeypatch restores the variable even if the code under
        # test sets it directly (delenv of an absent variable records nothing)
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cfg = sys.modules.get("numba.core.config")
    if cfg is not None:  # configure_numba_cache may retarget a live numba: restore it after
        monkeypatch.setattr(cfg, "CACHE_DIR", cfg.CACHE_DIR)
    return tmp_path


def test_writable_package_dir_keeps_numbas_default(clean_env, monkeypatch):
    pkg = clean_env / "pkg"
    pkg.mkdir()
    monkeypatch.setattr(_cache, "PACKAGE_DIR", pkg)
    assert _cache.configure_numba_cache() is None
    assert "NUMBA_CACHE_DIR" not in os.environ


def test_read_only_package_dir_uses_the_ggtool_cache(clean_env, monkeypatch, request):
    pkg = clean_env / "pkg"
    pkg.mkdir()
    if os.geteuid() == 0:  # root ignores mode bits; a read-only mount stops root too
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(pkg)],
                           capture_output=True, text=True)
        require_component("a read-only tmpfs mount (root)", r.returncode == 0, r.stderr.strip())
        request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(pkg)], check=False))
    else:
        pkg.chmod(0o555)
    monkeypatch.setattr(_cache, "PACKAGE_DIR", pkg)
    assert _cache.configure_numba_cache() == str(clean_env / "xdg" / "ggtool" / "numba")
    assert os.environ["NUMBA_CACHE_DIR"] == str(clean_env / "xdg" / "ggtool" / "numba")


def test_not_writable_decision_uses_the_ggtool_cache(clean_env, monkeypatch):
    monkeypatch.setattr(_cache, "_writable", lambda path: False)
    monkeypatch.setenv("GGTOOL_CACHE_DIR", str(clean_env / "gg"))
    assert _cache.configure_numba_cache() == str(clean_env / "gg" / "numba")
    assert (clean_env / "gg" / "numba").is_dir()


def test_an_existing_numba_cache_dir_wins(clean_env, monkeypatch):
    monkeypatch.setattr(_cache, "_writable", lambda path: False)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(clean_env / "mine"))
    assert _cache.configure_numba_cache() == str(clean_env / "mine")
    assert not (clean_env / "xdg").exists()


@pytest.mark.slow
def test_kernels_are_loaded_from_the_cache_in_a_new_process(tmp_path):
    code = (
        "import numpy as np, quant, quant._fast as f\n"
        "quant.quantize(np.ones(256, np.float32), 'Q4_K')\n"
        "print(len(f.q4_k.stats.cache_hits))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    root = Path(quant.__file__).resolve().parents[1]

    def run():
        return subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )

    assert run().stdout.strip() == "0"  # compiled and stored
    assert run().stdout.strip() == "1"  # loaded from disk
    assert any(tmp_path.rglob("*.nbi"))
