"""Where numba keeps the compiled quantizers (`@njit(cache=True)`).

numba writes its cache next to the source (`quant/__pycache__`). When the package folder
is read-only (a system or wheel install), point NUMBA_CACHE_DIR at a ggtool cache folder
instead — unless the user already set NUMBA_CACHE_DIR, which always wins.
Must run before numba is imported (numba reads the variable at import time).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def default_cache_dir() -> Path:
    """`$GGTOOL_CACHE_DIR/numba`, else `$XDG_CACHE_HOME/ggtool/numba`, else `~/.cache/ggtool/numba`."""
    if os.environ.get("GGTOOL_CACHE_DIR"):
        return Path(os.environ["GGTOOL_CACHE_DIR"]) / "numba"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ggtool" / "numba"


def _writable(path: Path) -> bool:
    pycache = path / "__pycache__"
    target = pycache if pycache.exists() else path
    return os.access(target, os.W_OK | os.X_OK)


def configure_numba_cache() -> str | None:
    """Set NUMBA_CACHE_DIR if needed; returns the cache folder in use (None = numba's default)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    if _writable(PACKAGE_DIR):
        return None
    folder = default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    try:  # numba already imported by someone else: tell its config too
        import sys

        cfg = sys.modules.get("numba.core.config")
        if cfg is not None:
            cfg.CACHE_DIR = str(folder)
    except Exception:  # pragma: no cover - best effort only
        pass
    return str(folder)
