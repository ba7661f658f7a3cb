"""Ollama's native inference endpoints: /api/generate, /api/chat, /api/embed, /api/embeddings,
/api/ps, /api/version and GET /.

Each handler validates, resolves the model and schedules a runner before it writes a byte, so
every early failure is a proper status with `{"error": …}`; once streaming has started an error
becomes a final NDJSON line `{"error": …}`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from ggtool import __version__
from ggtool.errors import GgtoolError
from ggtool.runner.base import CompletionRequest, ContextLengthError, SamplingOptions
from ggtool.server.inference import (
    Event,
    Generation,
    HTTPError,
    _go,
    created_at,
    format_grammar,
    model_template,
    parse_keep_alive,
    render_chat_prompt,
    rfc3339,
    run_until_disconnect,
    think_settings,
)
from ggtool.server.models import ServedModel
from ggtool.server.options import load_options, merge_options
from ggtool.server.schemas import (
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    MessageIn,
)
from ggtool.server.state import ServerState, get_state
from ggtool.server.templates import Message, RenderInput, ToolCall
from ggtool.server.tools import ThinkingParser, ToolCallParser

router = APIRouter()
NDJSON = "application/x-ndjson"


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


async def resolve(st: ServerState, name: str) -> ServedModel:
    if not name:
        raise HTTPError(400, "model is required")
    return await anyio.to_thread.run_sync(st.catalog.resolve, name)


def plan_options(st: ServerState, model: ServedModel, options: dict[str, Any] | None) -> tuple[SamplingOptions, Any]:
    eff = merge_options(model.parameters, options, default_num_ctx=st.config.context_length)
    lo = load_options(
        eff.runner,
        n_ctx_train=model.facts.n_ctx_train,
        num_parallel=st.config.num_parallel,
        embedding_only=model.facts.pooling,
        default_threads=st.config.num_thread,
        flash_attn=st.config.flash_attention,
        kv_cache_type=st.config.kv_cache_type,
        prompt_cache=st.config.prompt_cache,
    )
    return eff.sampling, lo


def check_images(name: str, has_images: bool) -> None:
    # the llama-cpp-python runner has no multimodal projector support yet
    if has_images:
        raise HTTPError(400, f'"{name}" does not support image input in ggtool yet')


def check_top_logprobs(n: int) -> None:
    if n < 0 or n > 20:
        raise HTTPError(400, "top_logprobs must be between 0 and 20")


async def load_or_unload(st: ServerState, model: ServedModel, options: dict[str, Any] | None,
                         keep_alive: float | None) -> str:
    """An empty prompt/messages: load the model (or unload it with keep_alive 0)."""
    if keep_alive is not None and keep_alive == 0:
        await st.scheduler.unload(model, wait=False)
        return "unload"
    _, lo = plan_options(st, model, options)
    lease = await st.scheduler.acquire(model, lo, keep_alive)
    st.scheduler.release(lease)
    return "load"


def _metrics(ev: Event) -> dict[str, Any]:
    return {k: v for k, v in ev.metrics.items() if v}


def _logprobs_json(items: list[Any]) -> list[dict[str, Any]]:
    return [{"token": x.token, "logprob": x.logprob, "bytes": x.bytes,
             **({"top_logprobs": x.top_logprobs} if x.top_logprobs else {})} for x in items]


def tool_calls_json(calls: list[Any]) -> list[dict[str, Any]]:
    return [{"id": c.id, "function": {"index": c.index, "name": c.name, "arguments": c.arguments}} for c in calls]


async def start_generation(st: ServerState, model: ServedModel, lo: Any, keep_alive: float | None,
                           build: Any, t0: float) -> Generation:
    """Acquire a runner, build the prompt with it (`build(runner)` → Generation), start it."""
    lease = await st.scheduler.acquire(model, lo, keep_alive)
    try:
        gen = await build(lease)
        await gen.start()
        return gen
    except BaseException:
        st.scheduler.release(lease)
        raise


def stream_ndjson(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        try:
            async for obj in events:
                yield _line(obj)
        except GgtoolError as e:
            yield _line({"error": str(e)})

    return StreamingResponse(body(), media_type=NDJSON)


# -- /api/generate ---------------------------------------------------------------------------
async def prepare_generate(st: ServerState, req: GenerateRequest, t0: float) -> tuple[ServedModel, Any]:
    """Shared by /api/generate and /v1/completions: (model, Generation | JSONResponse | reason)."""
    if req.raw and (req.template or req.system or req.context):
        raise HTTPError(400, "raw mode does not support template, system, or context")
    keep_alive = parse_keep_alive(req.keep_alive)
    grammar = format_grammar(req.format)
    check_top_logprobs(req.top_logprobs)
    model = await resolve(st, req.model)
    if not req.prompt and not req.images and keep_alive == 0:
        return model, await load_or_unload(st, model, req.options, keep_alive)  # before capability checks
    caps = model.capabilities
    if "completion" not in caps:
        raise HTTPError(400, f'"{req.model}" does not support generate')
    if req.suffix and not req.raw:
        tmpl0 = model_template(model, None, st.config.go_template) if not req.template else None
        if tmpl0 is not None and "insert" not in tmpl0.capabilities:
            raise HTTPError(400, f'"{req.model}" does not support insert')
    think = think_settings(req.model, caps, req.think)
    check_images(req.model, bool(req.images))
    if not req.prompt and not req.images:
        return model, await load_or_unload(st, model, req.options, keep_alive)
    sampling, lo = plan_options(st, model, req.options)

    async def build(lease: Any) -> Generation:
        runner = lease.runner
        prompt = req.prompt
        tmpl = None
        if not req.raw:
            tmpl = _go(req.template) if req.template else model_template(model, runner, st.config.go_template)
            if req.suffix:
                inp = RenderInput(messages=[], prompt=req.prompt, suffix=req.suffix)
            else:
                msgs: list[Message] = []
                system = req.system or model.system
                if system:
                    msgs.append(Message("system", system))
                if req.context is None:
                    msgs += [_model_message(m) for m in model.messages]
                msgs.append(Message("user", req.prompt, images=list(req.images or [])))
                inp = RenderInput(messages=msgs, think=think.think, think_level=think.level,
                                  is_think_set=think.is_set)
            prefix = ""
            if req.context:
                n_vocab = runner.facts.n_vocab
                if n_vocab and any(not 0 <= t < n_vocab for t in req.context):
                    raise HTTPError(400, "invalid context: token ids must be in the model's vocabulary")
                prefix = await runner.detokenize(req.context)
            prompt = prefix + tmpl.render(inp)
        think_parser = None
        if tmpl is not None and think.think and (tags := tmpl.thinking_tags()):
            think_parser = ThinkingParser(*tags, started=prompt.rstrip().endswith(tags[0]))
        creq = CompletionRequest(
            prompt=prompt, options=sampling, grammar=grammar,
            truncate=req.truncate is not False, shift=req.shift is not False,
            logprobs=req.logprobs or req.top_logprobs > 0, top_logprobs=req.top_logprobs,
        )
        return Generation(st.scheduler, lease, creq, t_start=t0, think_parser=think_parser,
                          context_prompt=None if req.raw else prompt)

    if req.debug_render_only:
        return model, await _render_only(st, model, lo, keep_alive, build, req.model)
    return model, await start_generation(st, model, lo, keep_alive, build, t0)


@router.post("/api/generate")
async def generate(req: GenerateRequest, request: Request) -> Response:
    t0 = time.perf_counter()
    st = get_state(request)
    _model, gen = await prepare_generate(st, req, t0)
    if isinstance(gen, JSONResponse):
        return gen
    if isinstance(gen, str):
        return JSONResponse({"model": req.model, "created_at": created_at(), "response": "",
                             "done": True, "done_reason": gen})

    def chunk(ev: Event) -> dict[str, Any]:
        out: dict[str, Any] = {"model": req.model, "created_at": created_at(), "response": ev.content}
        if ev.thinking:
            out["thinking"] = ev.thinking
        out["done"] = ev.done
        if ev.done:
            out["done_reason"] = ev.done_reason
            if ev.context is not None:
                out["context"] = ev.context
            out.update(_metrics(ev))
        if ev.logprobs:
            out["logprobs"] = _logprobs_json(ev.logprobs)
        return out

    return await _respond(request, req.stream, gen, chunk)


async def _respond(request: Any, stream: bool | None, gen: Generation,
                   chunk: Callable[[Event], dict[str, Any]]) -> Any:
    """NDJSON chunks unless `stream` is false; then one merged chunk (generation closed after)."""
    if stream is not False:
        async def events() -> AsyncIterator[dict[str, Any]]:
            async for ev in gen.events():
                yield chunk(ev)

        return stream_ndjson(events())

    try:
        final = await run_until_disconnect(request, collect_events(gen))
    finally:
        await gen.close()
    return JSONResponse(chunk(final))


async def collect_events(gen: Generation) -> Event:
    """stream:false: one Event with the concatenated text and the final metrics."""
    text: list[str] = []
    thinking: list[str] = []
    calls: list[Any] = []
    logprobs: list[Any] = []
    final: Event | None = None
    async for ev in gen.events():
        if ev.done:
            final = ev
        else:
            text.append(ev.content)
            thinking.append(ev.thinking)
            calls += ev.tool_calls
            logprobs += ev.logprobs
    assert final is not None
    final.content, final.thinking, final.tool_calls, final.logprobs = (
        "".join(text), "".join(thinking), calls, logprobs)
    return final


async def _render_only(st: ServerState, model: ServedModel, lo: Any, keep_alive: float | None,
                       build: Any, name: str) -> JSONResponse:
    lease = await st.scheduler.acquire(model, lo, keep_alive)
    try:
        gen = await build(lease)
        prompt = gen.request.prompt
    finally:
        st.scheduler.release(lease)
    return JSONResponse({"model": name, "created_at": created_at(), "debug_info": {"rendered_template": prompt}})


def _model_message(m: dict[str, Any]) -> Message:
    return Message(role=str(m.get("role", "")), content=str(m.get("content", "")))


def to_messages(msgs: list[MessageIn]) -> list[Message]:
    out: list[Message] = []
    for m in msgs:
        calls = []
        for i, tc in enumerate(m.tool_calls or []):
            args = tc.function.arguments
            if isinstance(args, str):
                try:
                    args = json.loads(args) if args.strip() else {}
                except ValueError:
                    raise HTTPError(400, "invalid tool call arguments: not a JSON object") from None
                if not isinstance(args, dict):
                    raise HTTPError(400, "invalid tool call arguments: not a JSON object")
            calls.append(ToolCall(name=tc.function.name, arguments=dict(args or {}), id=tc.id or "",
                                  index=tc.function.index if tc.function.index is not None else i))
        out.append(Message(
            role=m.role.lower(), content=m.content or "", thinking=m.thinking or "",
            images=list(m.images or []), tool_calls=calls, tool_name=m.tool_name or "",
            tool_call_id=m.tool_call_id or "",
        ))
    return out


def validate_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    for t in tools:
        fn = t.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn.get("name"):
            raise HTTPError(400, "invalid tool: each tool needs a function with a name")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise HTTPError(400, "invalid tool: function parameters must be an object")
    return tools


# -- /api/chat -------------------------------------------------------------------------------
async def prepare_chat(st: ServerState, req: ChatRequest, request: Request, t0: float) -> tuple[Any, Any]:
    """Shared by /api/chat and /v1/chat/completions: returns (model, Generation | str reason)."""
    keep_alive = parse_keep_alive(req.keep_alive)
    grammar = format_grammar(req.format)
    check_top_logprobs(req.top_logprobs)
    tools = validate_tools(req.tools)
    messages = to_messages(req.messages or [])
    for m in messages:
        if m.role not in ("system", "user", "assistant", "tool"):
            raise HTTPError(400, f"invalid message role {m.role!r}")
    model = await resolve(st, req.model)
    if not messages and keep_alive == 0:
        return model, await load_or_unload(st, model, req.options, keep_alive)  # before capability checks
    caps = model.capabilities
    if "completion" not in caps:
        raise HTTPError(400, f'"{req.model}" does not support chat')
    if tools and "tools" not in caps:
        raise HTTPError(400, f'"{req.model}" does not support tools')
    think = think_settings(req.model, caps, req.think)
    check_images(req.model, any(m.images for m in messages))
    if not messages:
        return model, await load_or_unload(st, model, req.options, keep_alive)
    sampling, lo = plan_options(st, model, req.options)
    msgs = [_model_message(m) for m in model.messages] + messages
    if messages[0].role != "system" and model.system:
        msgs = [Message("system", model.system)] + msgs

    async def build(lease: Any) -> Generation:
        runner = lease.runner
        tmpl = model_template(model, runner, st.config.go_template)
        prompt = await render_chat_prompt(runner, tmpl, msgs, tools=tools, think=think,
                                          num_ctx=lo.num_ctx, truncate=req.truncate is not False)
        think_parser = None
        if think.think and (tags := tmpl.thinking_tags()):
            think_parser = ThinkingParser(*tags, started=prompt.rstrip().endswith(tags[0]))
        tool_parser = ToolCallParser(tmpl.tool_call_tag(), tools) if tools else None
        creq = CompletionRequest(
            prompt=prompt, options=sampling, grammar=grammar,
            truncate=req.truncate is not False, shift=req.shift is not False,
            logprobs=req.logprobs or req.top_logprobs > 0, top_logprobs=req.top_logprobs,
        )
        return Generation(st.scheduler, lease, creq, t_start=t0, tool_parser=tool_parser,
                          think_parser=think_parser)

    if req.debug_render_only:
        return model, await _render_only(st, model, lo, keep_alive, build, req.model)
    return model, await start_generation(st, model, lo, keep_alive, build, t0)


@router.post("/api/chat")
async def chat(req: ChatRequest, request: Request) -> Response:
    t0 = time.perf_counter()
    st = get_state(request)
    _model, gen = await prepare_chat(st, req, request, t0)
    if isinstance(gen, JSONResponse):
        return gen
    if isinstance(gen, str):
        return JSONResponse({"model": req.model, "created_at": created_at(),
                             "message": {"role": "assistant", "content": ""},
                             "done": True, "done_reason": gen})

    def chunk(ev: Event) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": ev.content}
        if ev.thinking:
            msg["thinking"] = ev.thinking
        if ev.tool_calls:
            msg["tool_calls"] = tool_calls_json(ev.tool_calls)
        out: dict[str, Any] = {"model": req.model, "created_at": created_at(), "message": msg, "done": ev.done}
        if ev.done:
            out["done_reason"] = ev.done_reason
            out.update(_metrics(ev))
        if ev.logprobs:
            out["logprobs"] = _logprobs_json(ev.logprobs)
        return out

    return await _respond(request, req.stream, gen, chunk)


# -- embeddings ------------------------------------------------------------------------------
def normalize(v: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(v)):
        raise HTTPError(500, "embedding contains NaN or Inf values")
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


async def embed_texts(st: ServerState, model: ServedModel, inputs: list[str], *, options: dict[str, Any] | None,
                      keep_alive: float | None, truncate: bool, request: Request) -> tuple[list[np.ndarray], int, int]:
    """Raw (unnormalized) vectors, prompt tokens and load duration (ns)."""
    _, lo = plan_options(st, model, options)
    lease = await st.scheduler.acquire(model, lo, keep_alive)
    try:
        async def run() -> Any:
            return await lease.runner.embedding(inputs, truncate=truncate)

        try:
            res = await run_until_disconnect(request, run())
        except ContextLengthError as e:
            raise HTTPError(400, str(e)) from None
    finally:
        st.scheduler.release(lease)
    return [np.asarray(v, dtype=np.float64) for v in res.embeddings], res.prompt_eval_count, lease.load_duration


@router.post("/api/embed")
async def embed(req: EmbedRequest, request: Request) -> Response:
    t0 = time.perf_counter()
    st = get_state(request)
    keep_alive = parse_keep_alive(req.keep_alive)
    if req.dimensions is not None and req.dimensions < 0:
        raise HTTPError(400, "dimensions must be a positive number")
    inputs = [req.input] if isinstance(req.input, str) else list(req.input or [])
    model = await resolve(st, req.model)
    if not inputs:
        await load_or_unload(st, model, req.options, keep_alive)
        return JSONResponse({"model": req.model, "embeddings": []})
    vecs, n_tokens, load_ns = await embed_texts(st, model, inputs, options=req.options, keep_alive=keep_alive,
                                                truncate=req.truncate is not False, request=request)
    out = []
    for v in vecs:
        v = normalize(v)
        if req.dimensions and req.dimensions < len(v):
            v = normalize(v[: req.dimensions])
        out.append([float(x) for x in v.astype(np.float32)])
    return JSONResponse({
        "model": req.model, "embeddings": out,
        "total_duration": int((time.perf_counter() - t0) * 1e9),
        "load_duration": load_ns, "prompt_eval_count": n_tokens,
    })


@router.post("/api/embeddings")
async def embeddings(req: EmbeddingsRequest, request: Request) -> Response:
    st = get_state(request)
    keep_alive = parse_keep_alive(req.keep_alive)
    model = await resolve(st, req.model)
    if not req.prompt:
        await load_or_unload(st, model, req.options, keep_alive)
        return JSONResponse({"embedding": []})
    vecs, _, _ = await embed_texts(st, model, [req.prompt], options=req.options, keep_alive=keep_alive,
                                   truncate=True, request=request)
    v = vecs[0]
    if not np.all(np.isfinite(v)):
        raise HTTPError(500, "embedding contains NaN or Inf values")
    return JSONResponse({"embedding": [float(x) for x in v]})


# -- status ----------------------------------------------------------------------------------
@router.get("/api/ps")
async def ps(request: Request) -> Response:
    st = get_state(request)
    models = []
    for e in st.scheduler.snapshot():
        m = e.model
        exp = e.expires_at if math.isfinite(e.expires_at) else 10_790_000_000.0
        models.append({
            "name": m.short, "model": m.short, "size": e.estimate, "size_vram": 0,
            "digest": m.model_id, "details": m.details, "expires_at": rfc3339(exp),
            "context_length": e.options.num_ctx,
        })
    return JSONResponse({"models": models})


@router.get("/api/version")
@router.head("/api/version", include_in_schema=False)
async def version() -> Response:
    return JSONResponse({"version": __version__})


@router.get("/")
@router.head("/", include_in_schema=False)
async def root() -> Response:
    return PlainTextResponse("Ollama is running")
