"""`ggtool run`, `ps` and `stop` as a user types them, against a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.ggtool.server.serve_helpers import ROOT, Server, free_port, ggtool, wait_for

pytestmark = pytest.mark.slow


def test_run_with_a_prompt(server: Server) -> None:
    env = {"OLLAMA_HOST": f"127.0.0.1:{server.port}"}
    out = ggtool("run", "smol-fixed", "Say", "hello", env=env).stdout
    assert out.strip()
    piped = subprocess.run([sys.executable, "-m", "ggtool.cli.app", "run", "smol-fixed"], cwd=ROOT, input="Say hi\n",
                           capture_output=True, text=True, timeout=120, env={**os.environ, **env}, check=True)
    assert piped.stdout.strip()


def test_run_interactive_session(server: Server) -> None:
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{server.port}"}
    p = subprocess.run([sys.executable, "-m", "ggtool.cli.app", "run", "smol-fixed"], cwd=ROOT, env=env,
                       input="", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0  # empty stdin: nothing to send, clean exit


def test_run_starts_a_background_server(model_store: Path) -> None:
    port = free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(model_store),
           "GGTOOL_MODELS": str(model_store), "GGTOOL_NUM_THREAD": "1"}
    try:
        p = subprocess.run([sys.executable, "-m", "ggtool.cli.app", "run", "smol-fixed", "Hi"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() and "started a ggtool server in the background" in p.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=5).status_code == 200
    finally:
        for pid in _servers_on(port):
            os.kill(pid, signal.SIGTERM)
        assert wait_for(lambda: not _servers_on(port), timeout=20)


def _servers_on(port: int) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes()
            environ = (p / "environ").read_bytes()
        except OSError:
            continue
        if b"ggtool.cli.app\x00serve" in cmd and f"OLLAMA_HOST=127.0.0.1:{port}".encode() in environ:
            found.append(int(p.name))
    return found


def test_ps_and_stop_without_a_server() -> None:
    env = {"OLLAMA_HOST": f"127.0.0.1:{free_port()}"}
    for args in (["ps"], ["stop", "smol"]):
        p = subprocess.run([sys.executable, "-m", "ggtool.cli.app", *args], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, **env}, timeout=60)
        assert p.returncode == 5 and "could not connect" in p.stderr


def test_serve_says_what_to_install(tmp_path: Path) -> None:
    # a Python whose llama_cpp / fastapi / uvicorn imports fail
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\nclass _Block:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('llama_cpp', 'fastapi', 'uvicorn'):\n"
        "            raise ModuleNotFoundError(name)\n        return None\n"
        "sys.meta_path.insert(0, _Block())\n")
    env = {**os.environ, "PYTHONPATH": f"{shim}{os.pathsep}{ROOT}"}
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "ggtool.cli.app", "serve"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2
    assert "pip install 'ggtool[serve]'" in p.stderr and "llama-cpp-python" in p.stderr
    assert time.monotonic() - t0 < 30


def test_store_commands_while_serving(server: Server) -> None:
    env = {"OLLAMA_MODELS": str(server.store), "GGTOOL_MODELS": str(server.store)}
    ggtool("cp", "bert", "bert-cli", env=env)
    names = {m["name"] for m in httpx.get(server.url + "/api/tags", timeout=10).json()["models"]}
    assert "bert-cli:latest" in names
    r = httpx.post(server.url + "/api/embed", json={"model": "bert-cli", "input": "x"}, timeout=60)
    assert r.status_code == 200
    ggtool("rm", "bert-cli", env=env)
    r = httpx.post(server.url + "/api/embed", json={"model": "bert-cli", "input": "x"}, timeout=60)
    assert r.status_code == 404
    # the shared blob is still used by bert: the server keeps serving it
    assert httpx.post(server.url + "/api/embed", json={"model": "bert", "input": "x"}, timeout=60).status_code == 200
    # leave no runner listed under the deleted name for the tests that follow
    httpx.post(server.url + "/api/generate", json={"model": "bert", "keep_alive": 0}, timeout=60)
    assert wait_for(lambda: not any(m["name"].startswith("bert") for m in server.ps()))
