"""Loaded runners and their lifecycle, as Ollama's scheduler (server/sched.go) runs them.

- A request `acquire`s a lease on the runner for its model (loading it if needed) and a slot
  on it (`num_parallel` per runner); `release` gives both back. Reference counts decide when a
  runner is idle; keep-alive (the latest request's `keep_alive`, else OLLAMA_KEEP_ALIVE) starts
  counting when the count drops to zero; 0 unloads at once, negative keeps it forever.
- One model loads at a time. Before a load, idle runners are evicted while the number loaded is
  at OLLAMA_MAX_LOADED_MODELS or the memory estimate (GGUF size + KV cache) would exceed the
  budget; if every runner is busy the request waits for one to become idle.
- A request whose runner options (num_ctx, num_batch, num_thread, use_mmap, num_gpu …) differ
  from the loaded runner's waits until it is idle, then reloads it.
- Requests waiting for a load or a slot are the queue; beyond OLLAMA_MAX_QUEUE they get 503.
- A runner whose process died is dropped; requests on it got an error, the next one reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ggtool.errors import GgtoolError
from ggtool.runner.base import LoadOptions, Runner, RunnerError
from ggtool.server.models import ServedModel

log = logging.getLogger("ggtool.server")

FOREVER_TS = 10_790_000_000.0  # ~year 2311: what /api/ps shows for "forever" (Ollama: now+MaxInt64)


class QueueFull(GgtoolError):
    """OLLAMA_MAX_QUEUE requests are already waiting (HTTP 503)."""


class LoadError(GgtoolError):
    """The runner failed to start or load the model (HTTP 500)."""


RunnerFactory = Callable[[ServedModel, LoadOptions], Runner]


@dataclass
class Loaded:
    model: ServedModel
    options: LoadOptions
    runner: Runner
    estimate: int
    refcount: int = 0
    duration: float = 300.0  # seconds of idle keep-alive
    expires_at: float = 0.0  # wall clock, for /api/ps
    loaded_at: float = field(default_factory=time.time)
    timer: asyncio.TimerHandle | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failed: BaseException | None = None
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    unloading: bool = False
    last_used: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> str:
        return self.model.key

    @property
    def alive(self) -> bool:
        return self.failed is None and self.runner.alive


@dataclass
class Lease:
    loaded: Loaded
    load_duration: int  # ns spent waiting for the runner (Ollama's load_duration)
    _released: bool = False

    @property
    def runner(self) -> Runner:
        return self.loaded.runner


class Scheduler:
    def __init__(
        self,
        factory: RunnerFactory,
        *,
        max_loaded: int = 3,
        max_queue: int = 512,
        memory_budget: int = 8 << 30,
        default_keep_alive: float = 300.0,
    ) -> None:
        self.factory = factory
        self.max_loaded = max(1, max_loaded)
        self.max_queue = max(1, max_queue)
        self.memory_budget = memory_budget
        self.default_keep_alive = default_keep_alive
        self.loaded: dict[str, Loaded] = {}
        self.pending = 0
        self._cond = asyncio.Condition()
        self._loading = False
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- acquire / release -----------------------------------------------------------------
    async def acquire(self, model: ServedModel, options: LoadOptions, keep_alive: float | None) -> Lease:
        """A runner for `model` with a free slot. Raises QueueFull, LoadError, RunnerError."""
        if self.pending >= self.max_queue:
            raise QueueFull("server busy, please try again.  maximum pending requests exceeded")
        t0 = time.perf_counter()
        self.pending += 1
        entry: Loaded | None = None
        try:
            entry = await self._get_runner(model, options, keep_alive)
            await entry.slots.acquire()
        except BaseException:
            if entry is not None:
                self._drop_ref(entry)
            raise
        finally:
            self.pending -= 1
        if not entry.alive:
            # died while we waited for a slot: give back and retry once
            entry.slots.release()
            self._drop_ref(entry)
            return await self.acquire(model, options, keep_alive)
        return Lease(entry, int((time.perf_counter() - t0) * 1e9))

    def release(self, lease: Lease) -> None:
        """Synchronous, so it is safe in cancelled streaming responses."""
        if lease._released:
            return
        lease._released = True
        lease.loaded.slots.release()
        self._drop_ref(lease.loaded)

    async def _get_runner(self, model: ServedModel, options: LoadOptions, keep_alive: float | None) -> Loaded:
        async with self._cond:
            while True:
                if self._closing:
                    raise LoadError("server is shutting down")
                entry = self.loaded.get(model.key)
                if entry is not None and not entry.ready.is_set():
                    # being loaded by another request: wait for it
                    self._cond.release()
                    try:
                        await entry.ready.wait()
                    finally:
                        await self._cond.acquire()
                    continue
                if entry is not None and (not entry.alive or entry.unloading):
                    if not entry.unloading:
                        self._start_unload(entry)
                    await self._cond.wait()
                    continue
                if entry is not None and entry.options != options:
                    if entry.refcount == 0:
                        self._start_unload(entry)
                    await self._cond.wait()
                    continue
                if entry is not None:
                    self._take_ref(entry, keep_alive)
                    return entry
                if self._loading:
                    await self._cond.wait()
                    continue
                estimate = model.facts.file_size + model.facts.kv_bytes(options.num_ctx, options.num_parallel)
                victim = self._victim(estimate)
                if victim == "wait":
                    await self._cond.wait()
                    continue
                if victim is not None:
                    self._start_unload(victim)
                    await self._cond.wait()
                    continue
                entry = Loaded(
                    model=model, options=options, runner=self.factory(model, options),
                    estimate=estimate, duration=self.default_keep_alive,
                )
                entry.slots = asyncio.Semaphore(options.num_parallel)
                self.loaded[model.key] = entry
                self._take_ref(entry, keep_alive)
                self._loading = True
                break
        # load outside the lock: other models' requests keep flowing
        try:
            await entry.runner.load()
        except BaseException as e:
            entry.failed = e
            async with self._cond:
                self._loading = False
                self.loaded.pop(model.key, None)
                entry.ready.set()
                self._cond.notify_all()
            with contextlib.suppress(Exception):
                await entry.runner.close()
            if isinstance(e, asyncio.CancelledError):
                raise
            if isinstance(e, GgtoolError):
                raise LoadError(f"llama runner process has terminated: {e}") from e
            raise
        async with self._cond:
            self._loading = False
            entry.loaded_at = time.time()
            entry.ready.set()
            self._cond.notify_all()
        log.info("loaded %s (pid %s, ~%d MB)", model.short, entry.runner.pid, entry.estimate >> 20)
        return entry

    def _victim(self, estimate: int) -> Loaded | str | None:
        """An idle runner to evict before loading, "wait" if all are busy, None if it fits."""
        current = list(self.loaded.values())  # runners still unloading hold memory too
        used = sum(e.estimate for e in current)
        too_many = len(current) >= self.max_loaded
        too_big = bool(current) and used + estimate > self.memory_budget
        if not too_many and not too_big:
            return None
        if any(e.unloading for e in current):
            return "wait"  # an eviction is under way: let it finish first
        idle = [e for e in current if e.refcount == 0 and e.ready.is_set()]
        if not idle:
            return "wait"
        # Ollama: sort by session duration then name, first idle one
        idle.sort(key=lambda e: (e.duration, e.model.short))
        return idle[0]

    def _take_ref(self, entry: Loaded, keep_alive: float | None) -> None:
        entry.refcount += 1
        entry.last_used = time.monotonic()
        if keep_alive is not None:
            entry.duration = keep_alive
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        entry.expires_at = self._expiry(entry.duration)

    def _drop_ref(self, entry: Loaded) -> None:
        entry.refcount = max(0, entry.refcount - 1)
        entry.last_used = time.monotonic()
        if not entry.alive and not entry.unloading:
            self._start_unload(entry)
            return
        if entry.refcount == 0 and not entry.unloading:
            entry.expires_at = self._expiry(entry.duration)
            if entry.duration <= 0:
                self._start_unload(entry)
            elif math.isfinite(entry.duration):
                loop = asyncio.get_running_loop()
                entry.timer = loop.call_later(entry.duration, self._expire, entry)
        self._notify()

    @staticmethod
    def _expiry(duration: float) -> float:
        return FOREVER_TS if not math.isfinite(duration) else time.time() + max(0.0, duration)

    def _expire(self, entry: Loaded) -> None:
        entry.timer = None
        if entry.refcount == 0 and not entry.unloading:
            self._start_unload(entry)

    def _notify(self) -> None:
        async def note() -> None:
            async with self._cond:
                self._cond.notify_all()

        self._spawn(note())

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _start_unload(self, entry: Loaded) -> None:
        if entry.unloading:
            return
        entry.unloading = True
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None

        async def run() -> None:
            try:
                await entry.runner.close()
            except Exception as e:  # noqa: BLE001 - a failing close must not wedge the scheduler
                log.warning("closing runner for %s: %s", entry.model.short, e)
            async with self._cond:
                if self.loaded.get(entry.key) is entry:
                    del self.loaded[entry.key]
                self._cond.notify_all()
            log.info("unloaded %s", entry.model.short)

        self._spawn(run())

    # -- explicit control ------------------------------------------------------------------
    async def unload(self, model: ServedModel, *, wait: bool = True) -> bool:
        """keep_alive 0 with an empty prompt: unload now, or when its requests finish."""
        entry = self.loaded.get(model.key)
        if entry is None:
            return False
        entry.duration = 0.0
        if entry.refcount == 0:
            self._start_unload(entry)
        if wait:
            async with self._cond:
                while self.loaded.get(model.key) is entry:
                    await self._cond.wait()
        return True

    def snapshot(self) -> list[Loaded]:
        """Loaded runners for /api/ps, latest expiry first."""
        items = [e for e in self.loaded.values() if e.ready.is_set() and e.failed is None and not e.unloading]
        return sorted(items, key=lambda e: -e.expires_at)

    async def shutdown(self) -> None:
        self._closing = True
        for e in list(self.loaded.values()):
            if e.timer is not None:
                e.timer.cancel()
            with contextlib.suppress(Exception):
                await e.runner.close()
        self.loaded.clear()
        for t in list(self._tasks):
            t.cancel()


def runner_error_status(e: BaseException) -> int:
    if isinstance(e, QueueFull):
        return 503
    if isinstance(e, RunnerError):
        return 500
    return 500
