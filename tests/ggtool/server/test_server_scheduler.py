"""The scheduler's bookkeeping (reference counts, keep-alive, eviction, queue, reloads) against
a minimal in-memory implementation of the Runner interface. The same behaviours are tested
end to end with real llama-cpp-python runners in test_e2e_lifecycle.py."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from ggtool.names import ModelName
from ggtool.runner.base import LoadOptions, ModelFacts, Runner, RunnerError
from ggtool.server.models import GGUFFacts, ServedModel
from ggtool.server.scheduler import FOREVER_TS, LoadError, QueueFull, Scheduler


class InMemoryRunner(Runner):
    """Implements the interface without a model: enough to observe scheduling decisions."""

    def __init__(self, model: ServedModel, options: LoadOptions, log: list[str], fail: bool = False) -> None:
        self.model, self.options, self.log, self.fail = model, options, log, fail
        self.facts = ModelFacts()
        self._alive = False

    async def load(self) -> None:
        await asyncio.sleep(0.01)
        if self.fail:
            raise RunnerError("cannot load")
        self._alive = True
        self.log.append(f"load {self.model.short} {self.options.num_ctx}")

    async def ping(self) -> None: ...

    async def completion(self, req):  # type: ignore[override]
        yield None

    async def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return []

    async def detokenize(self, tokens: list[int]) -> str:
        return ""

    async def embedding(self, inputs, *, truncate=True):  # type: ignore[override]
        raise NotImplementedError

    async def close(self) -> None:
        self._alive = False
        self.log.append(f"close {self.model.short}")

    @property
    def memory_size(self) -> int:
        return self.model.facts.file_size

    @property
    def pid(self) -> int | None:
        return None

    @property
    def alive(self) -> bool:
        return self._alive


def model(name: str, size: int = 100) -> ServedModel:
    n = ModelName.parse(name)
    return ServedModel(name=n, short=n.display_shortest(), model_id=name, path=Path(f"/m/{name}"), go_template=None,
                       system="", parameters={}, messages=[], details={}, size=size, modified=0.0,
                       facts=GGUFFacts(file_size=size))


def sched(log: list[str], fail: set[str] = frozenset(), **kw) -> Scheduler:
    return Scheduler(lambda m, o: InMemoryRunner(m, o, log, fail=m.short in fail), **kw)


OPTS = LoadOptions(num_ctx=512)


def run(coro):
    return asyncio.run(coro)


def test_reuse_and_keep_alive_expiry() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        s = sched(log, default_keep_alive=0.2)
        a = await s.acquire(model("a"), OPTS, None)
        assert a.loaded.refcount == 1
        s.release(a)
        b = await s.acquire(model("a"), OPTS, None)  # reused, timer cancelled
        s.release(b)
        await asyncio.sleep(0.4)
        assert s.loaded == {}
        return log

    assert run(main()) == ["load a:latest 512", "close a:latest"]


def test_keep_alive_zero_unloads_when_idle_and_negative_keeps_forever() -> None:
    async def main() -> None:
        log: list[str] = []
        s = sched(log)
        a = await s.acquire(model("a"), OPTS, 0.0)
        await asyncio.sleep(0.05)
        assert "close a:latest" not in log  # in use
        s.release(a)
        await asyncio.sleep(0.05)
        assert log[-1] == "close a:latest"
        b = await s.acquire(model("b"), OPTS, math.inf)
        s.release(b)
        await asyncio.sleep(0.05)
        assert [e.expires_at for e in s.snapshot()] == [FOREVER_TS]

    run(main())


def test_eviction_at_the_model_limit_waits_for_busy_runners() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        s = sched(log, max_loaded=1)
        a = await s.acquire(model("a"), OPTS, None)
        task = asyncio.create_task(s.acquire(model("b"), OPTS, None))
        await asyncio.sleep(0.1)
        assert not task.done()  # a is busy: b waits
        s.release(a)
        b = await asyncio.wait_for(task, 2)
        s.release(b)
        return log

    assert run(main()) == ["load a:latest 512", "close a:latest", "load b:latest 512"]


def test_memory_budget_evicts_idle_runners() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        s = sched(log, max_loaded=5, memory_budget=150)
        for name in ("a", "b"):
            lease = await s.acquire(model(name, 100), OPTS, None)
            s.release(lease)
        return log

    assert run(main()) == ["load a:latest 512", "close a:latest", "load b:latest 512"]


def test_queue_limit_answers_503() -> None:
    async def main() -> None:
        s = sched([], max_queue=1)
        held = await s.acquire(model("a"), OPTS, None)  # the only slot
        waiting = asyncio.create_task(s.acquire(model("a"), OPTS, None))
        await asyncio.sleep(0.05)
        assert s.pending == 1
        with pytest.raises(QueueFull, match="maximum pending requests exceeded"):
            await s.acquire(model("a"), OPTS, None)
        s.release(held)
        s.release(await waiting)
        assert s.pending == 0

    run(main())


def test_cancelled_waiter_leaves_the_queue() -> None:
    async def main() -> None:
        s = sched([], max_queue=2)
        held = await s.acquire(model("a"), OPTS, None)
        waiting = asyncio.create_task(s.acquire(model("a"), OPTS, None))
        await asyncio.sleep(0.05)
        waiting.cancel()
        await asyncio.sleep(0.01)
        assert s.pending == 0 and s.loaded[model("a").key].refcount == 1
        s.release(held)

    run(main())


def test_reload_when_runner_options_change() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        s = sched(log)
        s.release(await s.acquire(model("a"), OPTS, None))
        s.release(await s.acquire(model("a"), LoadOptions(num_ctx=1024), None))
        return log

    assert run(main()) == ["load a:latest 512", "close a:latest", "load a:latest 1024"]


def test_dead_runner_is_replaced() -> None:
    async def main() -> list[str]:
        log: list[str] = []
        s = sched(log)
        a = await s.acquire(model("a"), OPTS, None)
        a.runner._alive = False  # the process died
        s.release(a)
        s.release(await s.acquire(model("a"), OPTS, None))
        return log

    assert run(main()) == ["load a:latest 512", "close a:latest", "load a:latest 512"]


def test_load_failure() -> None:
    async def main() -> None:
        s = sched([], fail={"a:latest"})
        with pytest.raises(LoadError, match="cannot load"):
            await s.acquire(model("a"), OPTS, None)
        assert s.loaded == {} and s.pending == 0

    run(main())
