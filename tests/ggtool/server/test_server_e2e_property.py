"""Property test against a real server with real models: bodies drawn from the server's own
OpenAPI document (valid shapes, wrong types, arbitrary JSON) never produce a 5xx, and every
error has Ollama's or OpenAI's error body. Generation knobs are bounded so the test stays
short; values that reload a runner are drawn from a small set."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ggtool.server.openapi_strategies import json_values, operations
from tests.ggtool.server.serve_helpers import Server

pytestmark = pytest.mark.slow

WRONG = st.text(max_size=3) | st.booleans() | st.lists(st.integers(), max_size=2) | st.just(None)


def mostly(valid: st.SearchStrategy, wrong: st.SearchStrategy = WRONG) -> st.SearchStrategy:
    """Valid most of the time, so that enough requests get through to generation."""
    return st.one_of(valid, valid, valid, valid, valid, valid, valid, wrong)


# num_predict is always bounded: -1 (the default) generates until the model stops, maybe never
OPTIONS = st.fixed_dictionaries({"num_predict": st.integers(0, 3)}, optional={
    "temperature": mostly(st.floats(0, 2)),
    "top_k": mostly(st.integers(-1, 100)),
    "top_p": mostly(st.floats(0, 1)),
    "min_p": mostly(st.floats(0, 1)),
    "seed": mostly(st.integers(-(2**40), 2**40)),
    "repeat_penalty": mostly(st.floats(0.5, 2)),
    "repeat_last_n": mostly(st.integers(-1, 128)),
    "stop": mostly(st.lists(st.text(min_size=1, max_size=4), max_size=2)),
    "num_ctx": mostly(st.sampled_from([1024])),  # other sizes reload the runner (slow)
    "num_thread": mostly(st.sampled_from([1])),
    "use_mmap": mostly(st.just(True)),
    "junk": json_values(),
})
MESSAGE = st.fixed_dictionaries(
    {"role": mostly(st.sampled_from(["user", "system", "assistant", "tool"]), st.text(max_size=5)),
     "content": mostly(st.text(max_size=20))},
    optional={"images": st.just([]), "tool_calls": mostly(st.just([]), json_values())})
OVERRIDES = {
    "model": st.sampled_from(["smol", "smol", "smol-tools", "bert", "ghost", "bad name", ""]),
    "options": mostly(OPTIONS),
    "keep_alive": mostly(st.sampled_from(["5m", "10m", 600]), st.text(max_size=4)),  # 0 would unload every time
    "prompt": mostly(st.text(max_size=20)),
    "messages": mostly(st.lists(MESSAGE, min_size=1, max_size=3)),
    "input": mostly(st.text(max_size=20) | st.lists(st.text(max_size=10), max_size=3)),
    "format": mostly(st.sampled_from([None, "", "json", {"type": "object", "properties": {"a": {"type": "integer"}}}]),
                     json_values()),
    "think": mostly(st.none()),
    "template": mostly(st.just("")),
    "suffix": mostly(st.just("")),
    "tools": mostly(st.none()),
    "images": mostly(st.none()),
    "max_tokens": st.integers(0, 3),
    "max_completion_tokens": mostly(st.integers(0, 3)),
    "context": mostly(st.none(), st.lists(st.integers(-5, 60000), max_size=4) | WRONG),
    "dimensions": mostly(st.integers(-2, 100)),
    "top_logprobs": mostly(st.integers(-1, 25)),
    "logprobs": st.booleans(),
}


ALWAYS = frozenset({"model", "messages", "prompt", "input", "options", "max_tokens"})


@pytest.fixture(scope="module")
def ops(server: Server) -> list:
    doc = httpx.get(server.url + "/openapi.json", timeout=10).json()
    skip = {"/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete", "/api/blobs/{digest}"}
    return operations(doc, skip=skip, overrides=OVERRIDES, always=ALWAYS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(data=st.data())
def test_no_server_errors(server: Server, ops: list, data: st.DataObject) -> None:
    method, path, strat = data.draw(st.sampled_from(ops))
    body = data.draw(strat)
    r = httpx.request(method, server.url + path, content=json.dumps(body).encode(), timeout=120)
    assert r.status_code < 500, (method, path, body, r.text)
    if r.status_code >= 400:
        err = r.json()["error"]
        assert isinstance(err, str) or (isinstance(err, dict) and err["message"])
    elif r.headers.get("content-type", "").startswith("application/x-ndjson"):
        lines = [json.loads(x) for x in r.text.splitlines() if x]
        assert lines and all("error" not in x for x in lines), (method, path, body, r.text[-500:])
    assert server.proc.poll() is None
