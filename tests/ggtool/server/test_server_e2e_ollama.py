"""A real `ggtool serve` driven by the official `ollama` Python client."""

from __future__ import annotations

import math
from pathlib import Path

import ollama
import pytest

from tests.ggtool.server.serve_helpers import Server

pytestmark = pytest.mark.slow
GREEDY = {"temperature": 0, "num_predict": 12, "seed": 7}


@pytest.fixture()
def client(server: Server) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=120)


def test_list_and_show(client: ollama.Client) -> None:
    names = {m.model for m in client.list().models}
    assert {"smol:latest", "smol-tools:latest", "smol-fixed:latest", "bert:latest"} <= names
    s = client.show("smol")
    assert s.details.family == "llama" and s.details.quantization_level == "Q4_K_M"
    assert "completion" in s.capabilities
    assert "<|im_start|>" in s.template  # the GGUF's chat template, rendered natively
    assert s.modelinfo["llama.context_length"] == 8192
    assert "tools" in client.show("smol-tools").capabilities
    assert client.show("bert").capabilities == ["embedding"]
    with pytest.raises(ollama.ResponseError) as ei:
        client.show("no-such-model")
    assert ei.value.status_code == 404


def test_generate_stream_and_merged(client: ollama.Client) -> None:
    whole = client.generate(model="smol", prompt="Name a color.", options=GREEDY)
    assert whole.done and whole.done_reason in ("stop", "length")
    assert whole.eval_count and whole.eval_count <= 12 and whole.prompt_eval_count > 5
    assert whole.total_duration >= whole.eval_duration > 0 and whole.context
    parts = list(client.generate(model="smol", prompt="Name a color.", options=GREEDY, stream=True))
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.response for p in parts) == whole.response  # greedy: same text
    assert parts[-1].eval_count == whole.eval_count


def test_generate_continues_from_context(client: ollama.Client) -> None:
    first = client.generate(model="smol", prompt="Say one word.", options=GREEDY)
    second = client.generate(model="smol", prompt="Another.", context=first.context, options=GREEDY)
    assert second.prompt_eval_count > first.prompt_eval_count


def test_chat_stream_and_merged(client: ollama.Client) -> None:
    msgs = [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Capital of France?"}]
    whole = client.chat(model="smol", messages=msgs, options=GREEDY)
    assert whole.message.role == "assistant" and whole.message.content
    chunks = list(client.chat(model="smol", messages=msgs, options=GREEDY, stream=True))
    assert "".join(c.message.content for c in chunks) == whole.message.content
    assert chunks[-1].done and chunks[-1].done_reason == whole.done_reason


def test_model_params_and_system_layers_apply(client: ollama.Client) -> None:
    r = client.chat(model="smol-fixed", messages=[{"role": "user", "content": "Tell me a long story."}])
    assert r.eval_count <= 8 and r.done_reason == "length"  # PARAMETER num_predict 8
    again = client.chat(model="smol-fixed", messages=[{"role": "user", "content": "Tell me a long story."}])
    assert again.message.content == r.message.content  # PARAMETER temperature 0


def test_seed_gives_the_same_sample_twice(client: ollama.Client) -> None:
    opts = {"temperature": 1.2, "top_k": 100, "seed": 1234, "num_predict": 16}
    a = client.generate(model="smol", prompt="Write a word.", options=opts).response
    b = client.generate(model="smol", prompt="Write a word.", options=opts).response
    assert a == b


def test_embed(client: ollama.Client) -> None:
    r = client.embed(model="bert", input=["hello world", "a cat sat", "hello world"])
    assert len(r.embeddings) == 3 and len(r.embeddings[0]) == 64
    for v in r.embeddings:
        assert math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4)
    assert r.embeddings[0] == r.embeddings[2] and r.embeddings[0] != r.embeddings[1]
    small = client.embed(model="bert", input="hello world", dimensions=16)
    assert len(small.embeddings[0]) == 16 and math.isclose(sum(x * x for x in small.embeddings[0]), 1.0, rel_tol=1e-4)
    legacy = client.embeddings(model="bert", prompt="hello world")
    norm = math.sqrt(sum(x * x for x in legacy.embedding))
    assert all(math.isclose(a, b / norm, abs_tol=1e-5) for a, b in zip(r.embeddings[0], legacy.embedding, strict=True))
    assert client.embed(model="bert", input=[]).embeddings == []


def test_embed_with_a_chat_model(client: ollama.Client) -> None:
    r = client.embed(model="smol", input="hello")
    assert len(r.embeddings[0]) == 576


def test_ps_reports_loaded_models(client: ollama.Client) -> None:
    client.generate(model="smol", prompt="hi", options={"num_predict": 1})
    loaded = {m.model: m for m in client.ps().models}
    # the runner is listed under whichever model sharing this GGUF blob loaded it first
    (m,) = [m for name, m in loaded.items() if name in ("smol:latest", "smol-fixed:latest", "smol-tools:latest")]
    assert m.size > 100_000_000 and m.context_length == 1024 and m.details.family == "llama"
    assert m.expires_at is not None


def test_create_copy_delete(client: ollama.Client) -> None:
    events = list(client.create(model="smol-pirate", from_="smol", system="You are a pirate.", stream=True))
    assert events[-1].status == "success"
    assert "SYSTEM You are a pirate." in client.show("smol-pirate").modelfile
    client.copy("smol-pirate", "smol-pirate2")
    assert {"smol-pirate:latest", "smol-pirate2:latest"} <= {m.model for m in client.list().models}
    r = client.chat(model="smol-pirate2", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 2})
    assert r.done
    client.delete("smol-pirate")
    client.delete("smol-pirate2")
    assert "smol-pirate:latest" not in {m.model for m in client.list().models}
    with pytest.raises(ollama.ResponseError) as ei:
        client.delete("smol-pirate")
    assert ei.value.status_code == 404


def test_create_from_uploaded_blob(client: ollama.Client, ggufs: dict[str, Path]) -> None:
    digest = client.create_blob(ggufs["bert"])
    r = client.create(model="bert-copy", files={"bert.gguf": digest})
    assert r.status == "success"
    assert len(client.embed(model="bert-copy", input="x").embeddings[0]) == 64
    client.delete("bert-copy")


def test_push_and_pull_through_a_local_registry(client: ollama.Client, tmp_path: Path) -> None:
    from tests.ggtool.registry.registry_servers import REGISTRY_BIN, RegistryServer

    if REGISTRY_BIN is None:
        pytest.skip("docker-registry is not installed")
    reg = RegistryServer(tmp_path / "registry").start()
    try:
        host = reg.url.split("://", 1)[1]
        name = f"{host}/test/bert:v1"
        client.copy("bert", name)
        pushed = list(client.push(name, insecure=True, stream=True))
        assert pushed[-1].status == "success"
        client.delete(name)
        pulled = list(client.pull(name, insecure=True, stream=True))
        assert pulled[0].status == "pulling manifest" and pulled[-1].status == "success"
        assert len(client.embed(model=name, input="x").embeddings[0]) == 64
        client.delete(name)
    finally:
        reg.stop()
