"""Helpers for the end-to-end server tests: the models (converted and quantized by ggtool,
cached), a store with them created by `ggtool create`, and a real `ggtool serve` process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fixtures.serve_models import ROOT, ggtool, served_ggufs

DATA = Path(__file__).parent / "data"


def library_template(name: str) -> str:
    return json.loads((DATA / "library_templates.json").read_text())[name]


def create_store(root: Path) -> Path:
    """A store with: smol (GGUF chat template), smol-tools (Ollama's llama3.2 Go template, which
    has tools), smol-fixed (greedy via PARAMETER, a SYSTEM layer) and bert (embeddings)."""
    g = served_ggufs()
    env = {"OLLAMA_MODELS": str(root), "GGTOOL_MODELS": str(root)}
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "smol": f"FROM {g['smollm2']}\n",
        "smol-tools": f'FROM {g["smollm2"]}\nTEMPLATE """{library_template("llama3.2")}"""\n'
                      'PARAMETER stop "<|eot_id|>"\n',
        "smol-fixed": f'FROM {g["smollm2"]}\nPARAMETER temperature 0\nPARAMETER num_predict 8\n'
                      'SYSTEM "You are terse."\n',
        "bert": f"FROM {g['bert']}\n",
    }
    for name, text in files.items():
        mf = root.parent / f"{name}.Modelfile"
        mf.write_text(text)
        ggtool("create", name, "-f", str(mf), "--quiet", "--store", str(root), env=env)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    store: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Server:
        self.port = self.port or free_port()
        env = {
            **os.environ,
            "OLLAMA_HOST": f"127.0.0.1:{self.port}",
            "OLLAMA_MODELS": str(self.store),
            "GGTOOL_MODELS": str(self.store),
            "GGTOOL_NUM_THREAD": "1",
            "OLLAMA_CONTEXT_LENGTH": "1024",
            **self.env,
        }
        self.log = self.store.parent / f"serve-{self.port}.log"
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "ggtool.cli.app", "serve"], cwd=ROOT, env=env,
                                         stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ggtool serve exited:\n{self.log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/api/version", timeout=1).status_code == 200:
                    return self
            time.sleep(0.2)
        raise RuntimeError(f"ggtool serve did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def runner_pids(self) -> list[int]:
        """PIDs of this server's runner processes (its children running ggtool.runner.worker)."""
        assert self.proc is not None
        out = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                stat = (p / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                cmd = (p / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.proc.pid and b"ggtool.runner.worker" in cmd:
                out.append(int(p.name))
        return out

    def ps(self) -> list[dict]:
        return httpx.get(self.url + "/api/ps", timeout=10).json()["models"]


@contextlib.contextmanager
def running_server(store: Path, **env: str) -> Iterator[Server]:
    s = Server(store, env=env).start()
    try:
        yield s
    finally:
        s.stop()


def wait_for(pred, timeout: float = 20.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()
