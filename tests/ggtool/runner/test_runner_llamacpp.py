"""The llama-cpp-python runner subprocess behind the Runner interface, with real models."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from ggtool.runner import (
    CompletionRequest,
    ContextLengthError,
    LoadOptions,
    RunnerDied,
    RunnerError,
    SamplingOptions,
)
from ggtool.runner.llamacpp import LlamaCppRunner

pytestmark = pytest.mark.slow
CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
COUNT = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"


@pytest.fixture(scope="module")
def ggufs() -> dict[str, Path]:
    from fixtures.serve_models import served_ggufs

    return served_ggufs()


def greedy(n: int, **kw) -> SamplingOptions:
    return SamplingOptions(temperature=0, num_predict=n, **kw)


async def collect(runner: LlamaCppRunner, req: CompletionRequest) -> tuple[str, object]:
    text = []
    last = None
    async for ch in runner.completion(req):
        text.append(ch.text)
        last = ch
    return "".join(text), last


def with_runner(path: Path, coro_fn, **opts) -> object:
    async def main() -> object:
        r = LlamaCppRunner(path, LoadOptions(**{"num_ctx": 512, "num_thread": 1, **opts}))
        await r.load()
        try:
            return await coro_fn(r)
        finally:
            await r.close()
            assert not r.alive

    return asyncio.run(main())


def test_completion_basics(ggufs: dict[str, Path]) -> None:
    async def body(r: LlamaCppRunner) -> None:
        assert r.facts.n_ctx == 512 and r.facts.n_ctx_train == 8192 and r.facts.eos_token == "<|im_end|>"
        assert "<|im_start|>" in (r.facts.chat_template or "")
        toks = await r.tokenize("Hello world")
        assert await r.detokenize(toks) == "Hello world"
        a, last = await collect(r, CompletionRequest(CHATML.format("Name a fruit."), greedy(10)))
        b, _ = await collect(r, CompletionRequest(CHATML.format("Name a fruit."), greedy(10)))
        assert a == b and a  # greedy twice (the second reuses the cached prompt)
        assert last.done and last.eval_count <= 10 and last.prompt_eval_count == len(await r.tokenize(CHATML.format("Name a fruit.")))
        seeded = SamplingOptions(temperature=1.0, seed=42, num_predict=12)
        assert (await collect(r, CompletionRequest(COUNT, seeded)))[0] == (await collect(r, CompletionRequest(COUNT, seeded)))[0]
        text, last = await collect(r, CompletionRequest(COUNT, greedy(8)))
        assert last.done_reason == "length" and last.eval_count == 8
        stop = text.strip().split(",")[1].strip()  # a number the model will write
        cut, last = await collect(r, CompletionRequest(COUNT, greedy(8, stop=[stop])))
        assert last.done_reason == "stop" and cut == text[: text.index(stop)]

    with_runner(ggufs["smollm2"], body)


def test_prompt_cache_reuse_is_exact(ggufs: dict[str, Path]) -> None:
    long_prompt = " ".join(f"item {i}," for i in range(130))  # > 512 tokens: one aligned chunk reusable

    async def body(r: LlamaCppRunner) -> None:
        n = len(await r.tokenize(long_prompt))
        assert 512 < n < 1000
        a, first = await collect(r, CompletionRequest(long_prompt, greedy(8)))
        b, second = await collect(r, CompletionRequest(long_prompt, greedy(8)))
        c, third = await collect(r, CompletionRequest(long_prompt + " and more", greedy(8)))
        assert (first.prompt_cached, second.prompt_cached, third.prompt_cached) == (0, 512, 512)
        assert a == b  # reusing the cache does not change a greedy output
        short, s1 = await collect(r, CompletionRequest(CHATML.format("Hi"), greedy(4)))
        again, s2 = await collect(r, CompletionRequest(CHATML.format("Hi"), greedy(4)))
        assert (s1.prompt_cached, s2.prompt_cached) == (0, 0) and short == again

    with_runner(ggufs["smollm2"], body, num_ctx=1024)


def test_prompt_cache_prefix_mode_reuses_any_common_prefix(ggufs: dict[str, Path]) -> None:
    async def body(r: LlamaCppRunner) -> None:
        base = CHATML.format("Name three colours of the rainbow.")
        n = len(await r.tokenize(base))
        a, first = await collect(r, CompletionRequest(base, greedy(6)))
        b, second = await collect(r, CompletionRequest(base, greedy(6)))
        # the whole prompt but its last token comes from the cache
        assert (first.prompt_cached, second.prompt_cached) == (0, n - 1)
        assert a and b and second.prompt_eval_count == n
        # the generated answer is cached too: a follow-up turn reuses prompt + answer
        turn2 = base + a + "<|im_end|>\n" + CHATML.format("And two more?")
        common = len(await r.tokenize(base + a))
        _, third = await collect(r, CompletionRequest(turn2, greedy(4)))
        assert common - 2 <= third.prompt_cached <= common  # the last piece may re-tokenize
        other, fourth = await collect(r, CompletionRequest("Completely different text", greedy(4)))
        assert fourth.prompt_cached == 0 and other

    with_runner(ggufs["smollm2"], body, prompt_cache="prefix")


def test_grammar_constrains_output(ggufs: dict[str, Path]) -> None:
    from ggtool.server.inference import format_grammar

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": False}

    async def body(r: LlamaCppRunner) -> None:
        text, _ = await collect(r, CompletionRequest(CHATML.format("Give a number."), greedy(20), grammar=format_grammar(schema)))
        assert isinstance(json.loads(text)["n"], int)
        with pytest.raises(RunnerError, match="invalid grammar"):
            await collect(r, CompletionRequest("x", greedy(2), grammar="root ::= ("))

    with_runner(ggufs["smollm2"], body)


def test_parallel_slots_decode_together(ggufs: dict[str, Path]) -> None:
    async def body(r: LlamaCppRunner) -> None:
        seen: list[tuple[int, float]] = []

        async def one(i: int) -> str:
            out = []
            async for ch in r.completion(CompletionRequest(COUNT, greedy(24))):
                seen.append((i, time.monotonic()))
                out.append(ch.text)
            return "".join(out)

        a, b = await asyncio.gather(one(0), one(1))
        assert a and b
        order = [i for i, _ in seen]
        # both streams made progress before either finished: they shared decode batches
        first_done = min(max(k for k, (i, _) in enumerate(seen) if i == j) for j in (0, 1))
        assert {0, 1} <= set(order[:first_done])

    with_runner(ggufs["smollm2"], body, num_parallel=2)


def test_cancel_frees_the_slot(ggufs: dict[str, Path]) -> None:
    async def body(r: LlamaCppRunner) -> None:
        it = r.completion(CompletionRequest(COUNT, greedy(100_000)))
        for _ in range(3):
            await it.__anext__()
        await it.aclose()  # sends cancel
        t0 = time.monotonic()
        text, last = await collect(r, CompletionRequest(COUNT, greedy(3)))
        assert last.done and time.monotonic() - t0 < 20

    with_runner(ggufs["smollm2"], body)


def test_context_overflow(ggufs: dict[str, Path]) -> None:
    async def body(r: LlamaCppRunner) -> None:
        with pytest.raises(ContextLengthError):
            await collect(r, CompletionRequest("word " * 800, greedy(1), truncate=False))
        _, last = await collect(r, CompletionRequest("word " * 800, greedy(1)))
        assert last.prompt_eval_count < 512

    with_runner(ggufs["smollm2"], body)


def test_sigkill_mid_stream(ggufs: dict[str, Path]) -> None:
    async def main() -> None:
        r = LlamaCppRunner(ggufs["smollm2"], LoadOptions(num_ctx=512, num_thread=1))
        await r.load()
        it = r.completion(CompletionRequest(COUNT, greedy(100_000)))
        await it.__anext__()
        os.kill(r.pid, signal.SIGKILL)
        with pytest.raises(RunnerDied, match="SIGKILL"):
            async for _ in it:
                pass
        assert not r.alive
        with pytest.raises(RunnerDied):
            await r.tokenize("x")
        await r.close()

    asyncio.run(main())


def test_embeddings(ggufs: dict[str, Path]) -> None:
    async def body(r: LlamaCppRunner) -> None:
        assert r.facts.pooling and r.facts.n_embd == 64
        res = await r.embedding(["hello world", "the cat", "hello world"])
        assert len(res.embeddings) == 3 and res.embeddings[0] == res.embeddings[2] and res.prompt_eval_count > 6
        with pytest.raises(ContextLengthError):
            await r.embedding(["word " * 600], truncate=False)

    with_runner(ggufs["bert"], body, embedding_only=True)


def test_load_failure_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)

    async def main() -> None:
        r = LlamaCppRunner(bad, LoadOptions(num_ctx=64, num_thread=1))
        with pytest.raises(RunnerError):
            await r.load()
        with pytest.raises(RunnerError, match="does not exist"):
            await LlamaCppRunner(tmp_path / "missing.gguf", LoadOptions()).load()

    asyncio.run(main())
