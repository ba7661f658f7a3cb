"""The llama-cpp-python runner: one subprocess per loaded model, driven over a socketpair.

The server side is asyncio: one reader task per runner demultiplexes the runner's frames to
the requests waiting on them. When the process dies (a native crash, SIGKILL, the OOM
killer) every request in flight gets `RunnerDied`; the scheduler then drops the runner and
the next request starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ggtool.runner import protocol
from ggtool.runner.base import (
    CompletionChunk,
    CompletionRequest,
    ContextLengthError,
    EmbeddingResult,
    LoadOptions,
    ModelFacts,
    Runner,
    RunnerDied,
    RunnerError,
    TokenLogprob,
)

PING_TIMEOUT = 10.0
LOAD_TIMEOUT_DEFAULT = 300.0

# Some VMs advertise AMX but fault on its instructions; llama.cpp's weight repacking then
# kills the runner with SIGILL. Once seen, later runners load without the extra buffer types
# (GGTOOL_EXTRA_BUFTS=0 skips them from the start).
_extra_bufts_broken = os.environ.get("GGTOOL_EXTRA_BUFTS", "").strip() in ("0", "false", "off")


def _describe_exit(rc: int | None) -> str:
    if rc is None:
        return "runner process stopped answering"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"runner process was killed by {name}"
    return f"runner process exited with status {rc}"


class LlamaCppRunner(Runner):
    def __init__(
        self,
        model_path: str | os.PathLike[str],
        options: LoadOptions,
        *,
        estimated_size: int = 0,
        load_timeout: float = LOAD_TIMEOUT_DEFAULT,
        verbose: bool = False,
    ) -> None:
        self.model_path = str(model_path)
        self.options = options
        self.estimated_size = estimated_size
        self.load_timeout = load_timeout
        self.verbose = verbose
        self.facts = ModelFacts()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._streams: dict[int, asyncio.Queue[Any]] = {}
        self._futures: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._dead: RunnerDied | None = None
        self._closing = False

    # -- lifecycle -------------------------------------------------------------------------
    async def load(self) -> None:
        global _extra_bufts_broken
        if not Path(self.model_path).is_file():
            raise RunnerError(f"model file {self.model_path} does not exist")
        try:
            await self._start(extra_bufts=not _extra_bufts_broken)
        except RunnerDied as e:
            rc = self._proc.returncode if self._proc else None
            if rc == -signal.SIGILL and not _extra_bufts_broken:
                _extra_bufts_broken = True
                await self._reset()
                await self._start(extra_bufts=False)
            else:
                raise RunnerError(f"failed to load model: {e}") from e

    async def _reset(self) -> None:
        if self._read_task:
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._read_task
        if self._writer:
            self._writer.close()
        self._proc = self._reader = self._writer = self._read_task = None
        self._dead = None

    async def _start(self, *, extra_bufts: bool) -> None:
        parent, child = socket.socketpair()
        try:
            env = dict(os.environ)
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ggtool.runner.worker", "--fd", str(child.fileno()),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=None if self.verbose else asyncio.subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the server's terminal is the server's to handle
                env=env,
            )
        finally:
            child.close()
        self._reader, self._writer = await asyncio.open_unix_connection(sock=parent, limit=protocol.MAX_FRAME)
        opts = self.options.to_dict()
        opts["extra_bufts"] = extra_bufts
        opts["verbose"] = self.verbose
        self._write({"op": "load", "model": self.model_path, "options": opts})
        try:
            first = await asyncio.wait_for(self._read_frame(), self.load_timeout)
        except TimeoutError as e:
            await self._kill()
            raise RunnerError(f"timed out loading model after {self.load_timeout:.0f}s") from e
        if first is None:
            rc = await self._wait_exit()
            raise RunnerDied(_describe_exit(rc))
        if first.get("type") == "error":
            await self._wait_exit()
            raise RunnerError(str(first.get("message", "load failed")))
        f = first.get("facts") or {}
        self.facts = ModelFacts(**{k: v for k, v in f.items() if k in ModelFacts.__dataclass_fields__})
        self._read_task = asyncio.create_task(self._read_loop())

    async def close(self) -> None:
        self._closing = True
        if self._proc is None:
            return
        if self._proc.returncode is None and self._writer is not None:
            with contextlib.suppress(Exception):
                self._write({"op": "shutdown"})
                await self._writer.drain()
            try:
                await asyncio.wait_for(self._proc.wait(), 5.0)
            except TimeoutError:
                await self._kill()
        if self._writer is not None:
            self._writer.close()
        if self._read_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._read_task, 2.0)
        self._fail_all(RunnerDied("model was unloaded"))

    async def _kill(self) -> None:
        if self._proc and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            with contextlib.suppress(Exception):
                await self._proc.wait()

    async def _wait_exit(self) -> int | None:
        if self._proc is None:
            return None
        try:
            return await asyncio.wait_for(self._proc.wait(), 5.0)
        except TimeoutError:
            await self._kill()
            return self._proc.returncode

    # -- I/O -------------------------------------------------------------------------------
    def _write(self, msg: dict[str, Any]) -> None:
        if self._writer is None or self._writer.is_closing():
            raise self._dead or RunnerDied("runner is not running")
        self._writer.write(protocol.encode(msg))

    async def _send(self, msg: dict[str, Any]) -> None:
        if self._dead:
            raise self._dead
        self._write(msg)
        try:
            await self._writer.drain()  # type: ignore[union-attr]
        except (ConnectionError, OSError) as e:
            raise self._dead or RunnerDied(str(e)) from e

    async def _read_frame(self) -> dict[str, Any] | None:
        assert self._reader is not None
        try:
            header = await self._reader.readexactly(protocol.HEADER_SIZE)
            body = await self._reader.readexactly(protocol.header_length(header))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return None
        return protocol.decode_body(body)

    async def _read_loop(self) -> None:
        try:
            while True:
                msg = await self._read_frame()
                if msg is None:
                    break
                rid = msg.get("id")
                q = self._streams.get(rid)  # type: ignore[arg-type]
                if q is not None:
                    q.put_nowait(msg)
                    continue
                fut = self._futures.pop(rid, None)  # type: ignore[arg-type]
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except protocol.ProtocolError:
            pass
        rc = await self._wait_exit()
        if rc == -signal.SIGILL:
            # a native fault after load (e.g. an AMX kernel first used by a larger batch):
            # later runners load without the extra buffer types
            global _extra_bufts_broken
            _extra_bufts_broken = True
        self._dead = RunnerDied("model was unloaded" if self._closing else _describe_exit(rc))
        self._fail_all(self._dead)

    def _fail_all(self, err: RunnerDied) -> None:
        if self._dead is None:
            self._dead = err
        for q in self._streams.values():
            q.put_nowait(err)
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(err)
        self._futures.clear()

    async def _call(self, msg: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._futures[rid] = fut
        try:
            await self._send({**msg, "id": rid})
            res = await asyncio.wait_for(fut, timeout) if timeout else await fut
        finally:
            self._futures.pop(rid, None)
        if res.get("type") == "error":
            raise _error_from(res)
        return res

    # -- API -------------------------------------------------------------------------------
    async def ping(self) -> None:
        try:
            await self._call({"op": "ping"}, timeout=PING_TIMEOUT)
        except TimeoutError as e:
            raise RunnerDied("runner did not answer a ping") from e

    async def completion(self, req: CompletionRequest) -> AsyncIterator[CompletionChunk]:  # type: ignore[override]
        rid = next(self._ids)
        q: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[rid] = q
        finished = False
        try:
            await self._send({"op": "completion", "id": rid, "request": req.to_dict()})
            while True:
                ev = await q.get()
                if isinstance(ev, BaseException):
                    finished = True
                    raise ev
                kind = ev.get("type")
                if kind == "chunk":
                    yield CompletionChunk(text=ev.get("text", ""), logprobs=_logprobs(ev))
                elif kind == "done":
                    finished = True
                    yield CompletionChunk(
                        done=True,
                        done_reason=ev.get("done_reason", "stop"),
                        prompt_eval_count=int(ev.get("prompt_eval_count", 0)),
                        prompt_cached=int(ev.get("prompt_cached", 0)),
                        prompt_eval_duration=int(ev.get("prompt_eval_duration", 0)),
                        eval_count=int(ev.get("eval_count", 0)),
                        eval_duration=int(ev.get("eval_duration", 0)),
                    )
                    return
                elif kind == "error":
                    finished = True
                    raise _error_from(ev)
        finally:
            self._streams.pop(rid, None)
            if not finished and self._dead is None:
                # the caller went away (client disconnect): stop generating
                with contextlib.suppress(Exception):
                    self._write({"op": "cancel", "id": rid})

    async def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        res = await self._call({"op": "tokenize", "text": text, "add_special": add_special})
        return [int(t) for t in res["tokens"]]

    async def detokenize(self, tokens: list[int]) -> str:
        res = await self._call({"op": "detokenize", "tokens": [int(t) for t in tokens]})
        return str(res["text"])

    async def embedding(self, inputs: list[str], *, truncate: bool = True) -> EmbeddingResult:
        res = await self._call({"op": "embed", "inputs": inputs, "truncate": truncate})
        return EmbeddingResult(embeddings=res["embeddings"], prompt_eval_count=int(res["prompt_eval_count"]))

    @property
    def memory_size(self) -> int:
        return self.estimated_size

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._dead is None and self._proc is not None and self._proc.returncode is None


def _error_from(ev: dict[str, Any]) -> RunnerError:
    msg = str(ev.get("message", "runner error"))
    if ev.get("kind") == "ContextOverflow":
        return ContextLengthError(msg)
    return RunnerError(msg)


def _logprobs(ev: dict[str, Any]) -> list[TokenLogprob]:
    return [
        TokenLogprob(token=x["token"], logprob=x["logprob"], bytes=x.get("bytes", []),
                     top_logprobs=x.get("top_logprobs", []))
        for x in ev.get("logprobs") or []
    ]
