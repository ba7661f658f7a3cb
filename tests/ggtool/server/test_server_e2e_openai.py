"""A real `ggtool serve` driven by the official `openai` Python client, and compared token for
token with llama-cpp-python's own chat completion on the same GGUF."""

from __future__ import annotations

import base64
import json
import math
import struct
from pathlib import Path

import openai
import pytest

from tests.ggtool.server.direct_llama import run_direct
from tests.ggtool.server.serve_helpers import Server

pytestmark = pytest.mark.slow


@pytest.fixture()
def oai(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=120, max_retries=0)


def test_chat_completions(oai: openai.OpenAI) -> None:
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    r = oai.chat.completions.create(model="smol", messages=msgs, max_tokens=10, temperature=0, seed=3)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-") and r.system_fingerprint == "fp_ollama"
    c = r.choices[0]
    assert c.message.role == "assistant" and c.message.content and c.finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 10 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    stream = oai.chat.completions.create(model="smol", messages=msgs, max_tokens=10, temperature=0, seed=3,
                                         stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == c.message.content
    finals = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == c.finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    assert len({ch.id for ch in chunks}) == 1 and len({ch.created for ch in chunks}) == 1


def test_completions(oai: openai.OpenAI) -> None:
    r = oai.completions.create(model="smol", prompt="Once upon a time", max_tokens=6, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text and r.usage.completion_tokens <= 6
    streamed = "".join(ch.choices[0].text for ch in oai.completions.create(
        model="smol", prompt="Once upon a time", max_tokens=6, temperature=0, stream=True))
    assert streamed == r.choices[0].text


def test_embeddings(oai: openai.OpenAI) -> None:
    r = oai.embeddings.create(model="bert", input=["hello", "world"])
    assert [d.index for d in r.data] == [0, 1] and len(r.data[0].embedding) == 64
    assert math.isclose(sum(x * x for x in r.data[0].embedding), 1.0, rel_tol=1e-4)
    assert r.usage.prompt_tokens > 0
    b = oai.embeddings.create(model="bert", input="hello", encoding_format="base64")
    raw = b.data[0].embedding
    if isinstance(raw, str):  # the client decodes base64 itself when it asked for it implicitly
        raw = list(struct.unpack(f"<{len(base64.b64decode(raw)) // 4}f", base64.b64decode(raw)))
    assert all(math.isclose(x, y, abs_tol=1e-6) for x, y in zip(raw, r.data[0].embedding, strict=True))
    d = oai.embeddings.create(model="bert", input="hello", dimensions=8)
    assert len(d.data[0].embedding) == 8


def test_models(oai: openai.OpenAI) -> None:
    ids = {m.id for m in oai.models.list()}
    assert {"smol:latest", "bert:latest"} <= ids
    m = oai.models.retrieve("smol")
    assert m.id == "smol:latest" and m.owned_by == "library"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("ghost")


def test_errors_use_openai_error_objects(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as ei:
        oai.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "x"}])
    assert "not found" in ei.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="smol", messages=[])


def test_json_schema_response_format(oai: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}},
              "required": ["color"]}
    r = oai.chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "Pick a color."}], max_tokens=30, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    assert json.loads(r.choices[0].message.content)["color"] in ("red", "green", "blue")


# -- parity with llama-cpp-python -----------------------------------------------------------
PARITY = [
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [{"role": "user", "content": "List three fruits."}, {"role": "assistant", "content": "Apple, banana, cherry."},
     {"role": "user", "content": "And three vegetables?"}],
]


@pytest.mark.parametrize("messages", PARITY, ids=["system", "user-only", "multi-turn"])
def test_greedy_matches_llama_cpp_python_token_for_token(oai: openai.OpenAI, ggufs: dict[str, Path], messages: list) -> None:
    n = 48
    direct = run_direct({"model": str(ggufs["smollm2"]), "messages": messages, "max_tokens": n, "n_ctx": 1024, "seed": 11})
    ours = oai.chat.completions.create(model="smol", messages=messages, max_tokens=n, temperature=0, top_p=0.9, seed=11)
    assert ours.choices[0].message.content == direct["text"]
    assert ours.usage.completion_tokens == direct["usage"]["completion_tokens"]
    assert ours.usage.prompt_tokens == direct["usage"]["prompt_tokens"]
    assert ours.choices[0].finish_reason == direct["finish_reason"]
