"""What /api/generate, /api/chat and the OpenAI endpoints share: prompt building, structured
output, the generation stream with tool-call/thinking parsing, and the error type with status.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import functools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from ggtool.errors import GgtoolError
from ggtool.runner.base import CompletionChunk, CompletionRequest, Runner
from ggtool.server.config import FOREVER, parse_go_duration
from ggtool.server.models import ServedModel
from ggtool.server.scheduler import Lease, Scheduler
from ggtool.server.templates import (
    GoPromptTemplate,
    Message,
    PromptTemplate,
    RenderInput,
    compile_go,
)
from ggtool.server.tools import ParsedCall, ThinkingParser, ToolCallParser


class HTTPError(GgtoolError):
    """An error with the HTTP status it answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def created_at() -> str:
    """RFC 3339 with nanoseconds in UTC, as Go marshals time.Now().UTC()."""
    ns = time.time_ns()
    dt = _dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=_dt.UTC)
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def rfc3339(ts: float) -> str:
    from ggtool.show import go_time

    return go_time(ts)


def parse_keep_alive(v: Any) -> float | None:
    """api.Duration: number = seconds, string = Go duration; negative = forever."""
    if v is None:
        return None
    if isinstance(v, bool):
        raise HTTPError(400, "invalid keep_alive: expected a number or a duration string")
    if isinstance(v, (int, float)):
        d = float(v)
        if d != d:  # NaN
            raise HTTPError(400, "invalid keep_alive")
    elif isinstance(v, str):
        try:
            d = parse_go_duration(v)
        except ValueError:
            try:
                d = float(v)
            except ValueError:
                raise HTTPError(400, f'time: invalid duration "{v}"') from None
    else:
        raise HTTPError(400, "invalid keep_alive")
    return FOREVER if d < 0 else d


@functools.lru_cache(maxsize=64)
def _schema_grammar(schema_json: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(schema_json)


@functools.lru_cache(maxsize=1)
def _json_grammar() -> str:
    from llama_cpp.llama_grammar import JSON_GBNF

    return JSON_GBNF


def format_grammar(fmt: Any) -> str | None:
    """`format`: "json" or a JSON-schema object → GBNF; null/"" → none; else 400."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return _json_grammar()
    if isinstance(fmt, dict):
        try:
            return _schema_grammar(json.dumps(fmt, sort_keys=False))
        except Exception as e:  # noqa: BLE001 - the converter raises assorted types on bad schemas
            raise HTTPError(400, f"invalid JSON schema in format: {e}") from None
    shown = json.dumps(fmt) if not isinstance(fmt, str) else json.dumps(fmt)
    raise HTTPError(400, f'invalid format: {shown}; expected "json" or a valid JSON Schema object')


def _go(source: str) -> GoPromptTemplate:
    return compile_go(source)


def model_template(model: ServedModel, runner: Runner | None, prefer_go: bool | None) -> PromptTemplate:
    """The model's prompt template, with the tokenizer's BOS/EOS text once the runner knows it."""
    facts = runner.facts if runner is not None else None
    return model.template(bos_token=facts.bos_token if facts else "", eos_token=facts.eos_token if facts else "",
                          prefer_go=prefer_go)


@dataclass
class ThinkSettings:
    think: bool = False
    level: str = ""
    is_set: bool = False


def think_settings(name: str, caps: list[str], think: Any) -> ThinkSettings:
    supported = "thinking" in caps
    if think is None:
        return ThinkSettings(think=supported, is_set=False)
    if isinstance(think, bool):
        if think and not supported:
            raise HTTPError(400, f'"{name}" does not support thinking')
        return ThinkSettings(think=think, is_set=True)
    if isinstance(think, str):
        level = think.lower()
        if level not in ("low", "medium", "high", "max"):
            raise HTTPError(400, f"invalid think value: {think!r} (expected a boolean or low, medium, high, max)")
        if not supported:
            raise HTTPError(400, f'"{name}" does not support thinking')
        return ThinkSettings(think=True, level=level, is_set=True)
    raise HTTPError(400, "invalid think value")


async def render_chat_prompt(
    runner: Runner,
    tmpl: PromptTemplate,
    messages: list[Message],
    *,
    tools: list[dict[str, Any]] | None,
    think: ThinkSettings,
    num_ctx: int,
    truncate: bool,
) -> str:
    """Render; when it may not fit num_ctx, drop the oldest non-system messages (Ollama)."""

    def render(msgs: list[Message]) -> str:
        return tmpl.render(RenderInput(messages=msgs, tools=tools, think=think.think,
                                       think_level=think.level, is_think_set=think.is_set))

    prompt = render(messages)
    if not truncate or len(prompt) + 2 <= num_ctx or len(messages) <= 1:
        return prompt
    if len(await runner.tokenize(prompt)) <= num_ctx:
        return prompt
    for i in range(1, len(messages)):
        kept = [m for m in messages[:i] if m.role == "system"] + messages[i:]
        candidate = render(kept)
        if len(await runner.tokenize(candidate)) <= num_ctx:
            return candidate
    return render([m for m in messages[:-1] if m.role == "system"] + messages[-1:])


@dataclass
class Event:
    content: str = ""
    thinking: str = ""
    tool_calls: list[ParsedCall] = field(default_factory=list)
    logprobs: list[Any] = field(default_factory=list)
    done: bool = False
    done_reason: str = ""
    metrics: dict[str, int] = field(default_factory=dict)
    context: list[int] | None = None


class Generation:
    """One running completion holding a scheduler lease until it ends or is closed."""

    def __init__(
        self,
        scheduler: Scheduler,
        lease: Lease,
        request: CompletionRequest,
        *,
        t_start: float,
        tool_parser: ToolCallParser | None = None,
        think_parser: ThinkingParser | None = None,
        context_prompt: str | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.lease = lease
        self.request = request
        self.t_start = t_start
        self.tools = tool_parser
        self.thinking = think_parser
        self.context_prompt = context_prompt
        self._it: AsyncIterator[CompletionChunk] = lease.runner.completion(request)
        self._first: CompletionChunk | None = None
        self._closed = False
        self.text: list[str] = []
        self.tool_calls: list[ParsedCall] = []

    async def start(self) -> None:
        """Wait for the first chunk, so that errors come before any byte of the response."""
        try:
            self._first = await self._it.__anext__()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await self._it.aclose()  # type: ignore[attr-defined]
        self.scheduler.release(self.lease)

    def _split(self, text: str) -> tuple[str, str, list[ParsedCall]]:
        thinking = ""
        if self.thinking is not None:
            thinking, text = self.thinking.add(text)
        calls: list[ParsedCall] = []
        if self.tools is not None and text:
            calls, text = self.tools.add(text)
        return text, thinking, calls

    def _flush(self) -> tuple[str, str, list[ParsedCall]]:
        thinking = content = ""
        if self.thinking is not None:
            thinking, content = self.thinking.finish()
        calls: list[ParsedCall] = []
        if self.tools is not None:
            c1, content = self.tools.add(content) if content else ([], "")
            c2, rest = self.tools.finish()
            calls = c1 + c2
            content += rest
        return content, thinking, calls

    async def events(self) -> AsyncIterator[Event]:
        try:
            chunk = self._first
            assert chunk is not None, "start() first"
            while True:
                if chunk.done:
                    content, thinking, calls = self._flush()
                    if content or thinking or calls:
                        self.text.append(content)
                        self.tool_calls += calls
                        yield Event(content=content, thinking=thinking, tool_calls=calls)
                    yield await self._final(chunk)
                    return
                content, thinking, calls = self._split(chunk.text)
                if content or thinking or calls or chunk.logprobs:
                    self.text.append(content)
                    self.tool_calls += calls
                    yield Event(content=content, thinking=thinking, tool_calls=calls, logprobs=chunk.logprobs)
                chunk = await self._it.__anext__()
        finally:
            await self.close()

    async def _final(self, chunk: CompletionChunk) -> Event:
        context = None
        if self.context_prompt is not None:
            with contextlib.suppress(GgtoolError):
                context = await self.lease.runner.tokenize(self.context_prompt + "".join(self.text))
        metrics = {
            "total_duration": int((time.perf_counter() - self.t_start) * 1e9),
            "load_duration": self.lease.load_duration,
            "prompt_eval_count": chunk.prompt_eval_count,
            "prompt_eval_duration": chunk.prompt_eval_duration,
            "eval_count": chunk.eval_count,
            "eval_duration": chunk.eval_duration,
        }
        return Event(done=True, done_reason=chunk.done_reason or "stop", metrics=metrics, context=context)


async def wait_disconnect(receive: Any) -> None:
    """Return when the client closes the connection (after the body was read)."""
    while True:
        msg = await receive()
        if msg.get("type") == "http.disconnect":
            return


async def run_until_disconnect(request: Any, coro: Any) -> Any:
    """Await `coro`; cancel it with HTTP 499 if the client goes away first (non-streaming)."""
    task = asyncio.ensure_future(coro)
    watcher = asyncio.ensure_future(wait_disconnect(request.receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise HTTPError(499, "request canceled")
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
