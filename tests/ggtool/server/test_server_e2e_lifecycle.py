"""Model lifecycle with real runners, each test on its own `ggtool serve`: keep-alive expiry,
explicit unload, eviction at the model limit and the memory budget, reload on option change,
the queue's 503, a runner killed with SIGKILL mid-stream, and clients that disconnect."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.ggtool.server.serve_helpers import running_server, wait_for

pytestmark = pytest.mark.slow
# greedy counting from this raw prompt goes on for thousands of tokens without an end-of-turn
COUNT = {"prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", "raw": True}
LONG = {"temperature": 0, "num_predict": 100_000}


def names(server) -> set[str]:
    return {m["name"] for m in server.ps()}


def gen(server, model: str, **body) -> httpx.Response:
    return httpx.post(server.url + "/api/generate", json={"model": model, "stream": False, **body}, timeout=120)


def test_keep_alive_expiry_and_env_default(model_store: Path) -> None:
    with running_server(model_store, OLLAMA_KEEP_ALIVE="2s") as s:
        assert gen(s, "smol", prompt="hi", options={"num_predict": 1}, keep_alive="1s").status_code == 200
        (m,) = s.ps()
        pid = s.runner_pids()
        assert len(pid) == 1
        assert wait_for(lambda: names(s) == set(), timeout=10)
        assert wait_for(lambda: s.runner_pids() == [], timeout=10)  # the process is gone, not just hidden
        gen(s, "smol", prompt="hi", options={"num_predict": 1})  # OLLAMA_KEEP_ALIVE applies
        time.sleep(0.5)
        assert names(s) == {"smol:latest"}
        assert wait_for(lambda: names(s) == set(), timeout=10)
        gen(s, "smol", prompt="hi", options={"num_predict": 1}, keep_alive=-1)
        (m,) = s.ps()
        assert int(m["expires_at"][:4]) > 2200  # forever


def test_explicit_unload_and_ggtool_stop(model_store: Path) -> None:
    from tests.ggtool.server.serve_helpers import ggtool

    with running_server(model_store) as s:
        gen(s, "smol")
        httpx.post(s.url + "/api/embed", json={"model": "bert", "input": "x"}, timeout=60)
        assert names(s) == {"smol:latest", "bert:latest"}
        env = {"OLLAMA_HOST": f"127.0.0.1:{s.port}"}
        out = ggtool("ps", env=env).stdout
        assert "smol:latest" in out and "bert:latest" in out and "CONTEXT" in out
        ggtool("stop", "bert", env=env)
        assert wait_for(lambda: names(s) == {"smol:latest"})
        with pytest.raises(subprocess.CalledProcessError) as ei:
            ggtool("stop", "bert", env=env)  # not loaded any more
        assert "couldn't find model" in ei.value.stderr


def test_eviction_at_the_model_limit(model_store: Path) -> None:
    with running_server(model_store, OLLAMA_MAX_LOADED_MODELS="1") as s:
        gen(s, "smol", prompt="hi", options={"num_predict": 1})
        (smol_pid,) = s.runner_pids()
        r = httpx.post(s.url + "/api/embed", json={"model": "bert", "input": "x"}, timeout=60)
        assert r.status_code == 200
        assert names(s) == {"bert:latest"}
        assert smol_pid not in s.runner_pids()


def test_eviction_by_memory_budget(model_store: Path) -> None:
    with running_server(model_store, GGTOOL_MAX_MEMORY="100MB", OLLAMA_MAX_LOADED_MODELS="4") as s:
        gen(s, "smol", prompt="hi", options={"num_predict": 1})  # alone it may exceed the budget: loads anyway
        assert names(s) == {"smol:latest"}
        httpx.post(s.url + "/api/embed", json={"model": "bert", "input": "x"}, timeout=60)
        assert names(s) == {"bert:latest"}


def test_reload_when_runner_options_change(model_store: Path) -> None:
    with running_server(model_store) as s:
        gen(s, "smol", prompt="hi", options={"num_predict": 1})
        (first,) = s.runner_pids()
        gen(s, "smol", prompt="hi", options={"num_predict": 1, "temperature": 0.1})  # sampling only: same runner
        assert s.runner_pids() == [first]
        gen(s, "smol", prompt="hi", options={"num_predict": 1, "num_ctx": 512})
        assert wait_for(lambda: len(s.runner_pids()) == 1 and s.runner_pids() != [first])
        assert s.ps()[0]["context_length"] == 512


class _Stream:
    """A streaming request whose first chunk has arrived; the connection stays open until close()."""

    def __init__(self, s, model: str, options: dict) -> None:
        self.client = httpx.Client(timeout=120)
        req = self.client.build_request("POST", s.url + "/api/generate", json={"model": model, **COUNT, "options": options})
        self.response = self.client.send(req, stream=True)
        assert self.response.status_code == 200
        self.lines = self.response.iter_lines()  # keep a reference: dropping it closes the connection
        assert json.loads(next(self.lines))["done"] is False

    def rest(self) -> list[dict]:
        return [json.loads(x) for x in self.lines if x]

    def close(self) -> None:
        self.response.close()
        self.client.close()


def test_queue_full_answers_503(model_store: Path) -> None:
    with running_server(model_store, OLLAMA_MAX_QUEUE="1", OLLAMA_NUM_PARALLEL="1") as s:
        busy = _Stream(s, "smol", LONG)  # holds the only slot
        waiting: dict = {}

        def second() -> None:
            waiting["r"] = gen(s, "smol", prompt="hi", options={"num_predict": 2})

        t = threading.Thread(target=second)
        t.start()
        time.sleep(1.0)  # the second request is now queued
        third = gen(s, "smol", prompt="hi", options={"num_predict": 2})
        assert third.status_code == 503
        assert third.json() == {"error": "server busy, please try again.  maximum pending requests exceeded"}
        busy.close()  # the client leaves: its slot frees, the queued request runs
        t.join(60)
        assert waiting["r"].status_code == 200 and waiting["r"].json()["done"]


def test_runner_killed_mid_stream(model_store: Path) -> None:
    with running_server(model_store) as s:
        stream = _Stream(s, "smol", LONG)
        (pid,) = s.runner_pids()
        os.kill(pid, signal.SIGKILL)
        tail = stream.rest()
        stream.close()
        assert tail and "error" in tail[-1] and "SIGKILL" in tail[-1]["error"]
        assert s.proc.poll() is None  # the server lives on
        again = gen(s, "smol", prompt="hi", options={"num_predict": 2})
        assert again.status_code == 200 and again.json()["done"]
        assert s.runner_pids() and s.runner_pids() != [pid]


def test_client_disconnect_cancels_generation(model_store: Path) -> None:
    with running_server(model_store, OLLAMA_NUM_PARALLEL="1") as s:
        # streaming: read a little, hang up
        _Stream(s, "smol", LONG).close()
        t0 = time.monotonic()
        ok = gen(s, "smol", prompt="hi", options={"num_predict": 2})  # would wait forever if not cancelled
        assert ok.status_code == 200 and time.monotonic() - t0 < 30
        # non-streaming: the client gives up after a second
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(s.url + "/api/generate", timeout=httpx.Timeout(1.0, connect=5.0),
                       json={"model": "smol", **COUNT, "stream": False, "options": LONG})
        t0 = time.monotonic()
        ok = gen(s, "smol", prompt="hi", options={"num_predict": 2})
        assert ok.status_code == 200 and time.monotonic() - t0 < 30
        # OpenAI streaming too
        c2 = httpx.Client(timeout=60)
        r2 = c2.send(c2.build_request("POST", s.url + "/v1/completions", json={
            "model": "smol", "stream": True, "max_tokens": 100_000, "temperature": 0, "prompt": COUNT["prompt"]}),
            stream=True)
        next(r2.iter_lines())
        r2.close()
        c2.close()
        t0 = time.monotonic()
        assert gen(s, "smol", prompt="hi", options={"num_predict": 2}).status_code == 200
        assert time.monotonic() - t0 < 30
