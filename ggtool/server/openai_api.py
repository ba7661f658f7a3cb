"""OpenAI-compatible endpoints, translated onto the native handlers as Ollama's middleware does:
/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models, /v1/models/{model}.

Streaming is SSE (`data: <json>\\n\\n` … `data: [DONE]\\n\\n`); errors use OpenAI's error object.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ggtool.errors import GgtoolError, NotFoundError
from ggtool.server.inference import Event, HTTPError, parse_keep_alive
from ggtool.server.ollama_api import (
    collect_events,
    embed_texts,
    normalize,
    prepare_chat,
    prepare_generate,
    resolve,
)
from ggtool.server.schemas import (
    ChatRequest,
    GenerateRequest,
    MessageIn,
    OAIChatRequest,
    OAICompletionRequest,
    OAIEmbeddingRequest,
    ToolCallFunctionIn,
    ToolCallIn,
)
from ggtool.server.state import get_state

router = APIRouter()
FINGERPRINT = "fp_ollama"
_EFFORT = {"none": False, "minimal": "low", "low": "low", "medium": "medium", "high": "high",
           "max": "max", "xhigh": "max", "ultra": "max"}


def openai_error(status: int, message: str) -> JSONResponse:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}},
                        status_code=status)


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


def _options(temperature: float | None, top_p: float | None, max_tokens: int | None, seed: int | None,
             stop: str | list[str] | None, freq: float | None, pres: float | None) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "temperature": 1.0 if temperature is None else temperature,
        "top_p": 1.0 if top_p is None else top_p,
    }
    if max_tokens is not None:
        opts["num_predict"] = max_tokens
    if seed is not None:
        opts["seed"] = seed
    if stop is not None:
        opts["stop"] = [stop] if isinstance(stop, str) else list(stop)
    if freq is not None:
        opts["frequency_penalty"] = freq
    if pres is not None:
        opts["presence_penalty"] = pres
    return opts


def _response_format(rf: dict[str, Any] | None) -> Any:
    if not rf:
        return None
    kind = rf.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        js = rf.get("json_schema") or {}
        schema = js.get("schema") if isinstance(js, dict) else None
        if not isinstance(schema, dict):
            raise HTTPError(400, "response_format json_schema needs a schema object")
        return schema
    if kind in (None, "text"):
        return None
    raise HTTPError(400, f"invalid response_format type {kind!r}")


def _image(url: str) -> str:
    for prefix in ("data:image/jpeg;base64,", "data:image/jpg;base64,", "data:image/png;base64,",
                   "data:image/webp;base64,", "data:;base64,"):
        if url.startswith(prefix):
            return url[len(prefix):]
    raise HTTPError(400, "invalid image input")


def to_native_messages(msgs: list[Any]) -> list[MessageIn]:
    out: list[MessageIn] = []
    names_by_id: dict[str, str] = {}
    for m in msgs:
        text: list[str] = []
        images: list[str] = []
        if isinstance(m.content, str):
            text.append(m.content)
        elif isinstance(m.content, list):
            for part in m.content:
                kind = part.get("type")
                if kind == "text":
                    t = part.get("text")
                    if not isinstance(t, str):
                        raise HTTPError(400, "invalid message format")
                    text.append(t)
                elif kind == "image_url":
                    iu = part.get("image_url")
                    url = iu.get("url") if isinstance(iu, dict) else iu if isinstance(iu, str) else part.get("url")
                    if not isinstance(url, str):
                        raise HTTPError(400, "invalid message format")
                    images.append(_image(url))
                else:
                    raise HTTPError(400, "invalid message format")
        calls = []
        for tc in m.tool_calls or []:
            args = tc.function.arguments
            if isinstance(args, str):
                try:
                    args = json.loads(args) if args.strip() else {}
                except ValueError:
                    raise HTTPError(400, "invalid tool call arguments") from None
            if tc.id:
                names_by_id[tc.id] = tc.function.name
            calls.append(ToolCallIn(id=tc.id, function=ToolCallFunctionIn(name=tc.function.name,
                                                                         arguments=args if isinstance(args, dict) else {})))
        tool_name = m.name or ""
        if m.role == "tool" and not tool_name and m.tool_call_id:
            tool_name = names_by_id.get(m.tool_call_id, "")
        out.append(MessageIn(
            role=m.role, content="\n".join(text) if len(text) > 1 else (text[0] if text else ""),
            images=images or None, tool_calls=calls or None, tool_name=tool_name or None,
            tool_call_id=m.tool_call_id, thinking=m.reasoning or m.reasoning_content,
        ))
    return out


def _finish(ev: Event, had_calls: bool) -> str:
    if had_calls:
        return "tool_calls"
    return "length" if ev.done_reason == "length" else "stop"


def _tool_calls(calls: list[Any]) -> list[dict[str, Any]]:
    return [{"id": c.id, "index": c.index, "type": "function",
             "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
            for c in calls]


def _usage(ev: Event) -> dict[str, int]:
    p = ev.metrics.get("prompt_eval_count", 0)
    c = ev.metrics.get("eval_count", 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _logprobs(items: list[Any]) -> dict[str, Any] | None:
    if not items:
        return None
    return {"content": [{"token": x.token, "logprob": x.logprob, "bytes": x.bytes,
                         "top_logprobs": x.top_logprobs or []} for x in items]}


# -- chat ------------------------------------------------------------------------------------
@router.post("/v1/chat/completions")
async def chat_completions(req: OAIChatRequest, request: Request) -> Response:
    t0 = time.perf_counter()
    st = get_state(request)
    if not req.messages:
        raise HTTPError(400, "[] is too short - 'messages'")
    think: Any = None
    effort = req.reasoning_effort or ((req.reasoning or {}).get("effort") if req.reasoning else None)
    if effort is not None:
        if effort not in _EFFORT:
            raise HTTPError(400, f"invalid reasoning value: {effort!r}")
        think = _EFFORT[effort]
    native = ChatRequest(
        model=req.model,
        messages=to_native_messages(req.messages),
        tools=req.tools,
        format=_response_format(req.response_format),
        options=_options(req.temperature, req.top_p, req.max_completion_tokens or req.max_tokens, req.seed,
                         req.stop, req.frequency_penalty, req.presence_penalty),
        stream=req.stream,
        think=think,
        logprobs=bool(req.logprobs),
        top_logprobs=req.top_logprobs or 0,
    )
    _model, gen = await prepare_chat(st, native, request, t0)
    cid = f"chatcmpl-{random.randint(0, 998)}"
    created = int(time.time())
    if isinstance(gen, (str, JSONResponse)):
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": created, "model": req.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })
    if not req.stream:
        try:
            from ggtool.server.inference import run_until_disconnect

            final = await run_until_disconnect(request, collect_events(gen))
        finally:
            await gen.close()
        msg: dict[str, Any] = {"role": "assistant", "content": final.content}
        if final.thinking:
            msg["reasoning"] = final.thinking
        if final.tool_calls:
            msg["tool_calls"] = _tool_calls(final.tool_calls)
        choice: dict[str, Any] = {"index": 0, "message": msg, "finish_reason": _finish(final, bool(final.tool_calls))}
        if final.logprobs:
            choice["logprobs"] = _logprobs(final.logprobs)
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": created, "model": req.model,
            "system_fingerprint": FINGERPRINT, "choices": [choice], "usage": _usage(final),
        })
    include_usage = bool(req.stream_options and req.stream_options.include_usage)

    async def body() -> AsyncIterator[bytes]:
        first = True
        had_calls = False

        def chunk(delta: dict[str, Any], finish: str | None, logprobs: Any = None) -> dict[str, Any]:
            c: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
            if logprobs is not None:
                c["logprobs"] = logprobs
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req.model,
                    "system_fingerprint": FINGERPRINT, "choices": [c]}

        try:
            async for ev in gen.events():
                if ev.done:
                    yield _sse(chunk({}, _finish(ev, had_calls)))
                    if include_usage:
                        yield _sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                                    "model": req.model, "system_fingerprint": FINGERPRINT, "choices": [],
                                    "usage": _usage(ev)})
                    break
                parts: list[dict[str, Any]] = []
                if ev.thinking:
                    parts.append({"reasoning": ev.thinking})
                if ev.content:
                    parts.append({"content": ev.content})
                if ev.tool_calls:
                    had_calls = True
                    parts.append({"tool_calls": _tool_calls(ev.tool_calls)})
                for delta in parts:
                    if first:
                        delta = {"role": "assistant", **delta}
                        first = False
                    yield _sse(chunk(delta, None, _logprobs(ev.logprobs)))
        except GgtoolError as e:
            yield _sse({"error": {"message": str(e), "type": "api_error", "param": None, "code": None}})
            return
        yield b"data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


# -- completions -----------------------------------------------------------------------------
@router.post("/v1/completions")
async def completions(req: OAICompletionRequest, request: Request) -> Response:
    t0 = time.perf_counter()
    st = get_state(request)
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise HTTPError(400, "prompt must be a string")
        prompt = prompt[0]
    native = GenerateRequest(
        model=req.model, prompt=prompt, suffix=req.suffix or "",
        options=_options(req.temperature, req.top_p, req.max_tokens, req.seed, req.stop,
                         req.frequency_penalty, req.presence_penalty),
        stream=req.stream, logprobs=bool(req.logprobs), top_logprobs=min(20, req.logprobs or 0),
    )
    _model, gen = await prepare_generate(st, native, t0)
    cid = f"cmpl-{random.randint(0, 998)}"
    created = int(time.time())

    def envelope(text: str, finish: str | None) -> dict[str, Any]:
        return {"id": cid, "object": "text_completion", "created": created, "model": req.model,
                "system_fingerprint": FINGERPRINT,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}

    if isinstance(gen, (str, JSONResponse)):
        out = envelope("", "stop")
        out["usage"] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return JSONResponse(out)
    if not req.stream:
        from ggtool.server.inference import run_until_disconnect

        try:
            final = await run_until_disconnect(request, collect_events(gen))
        finally:
            await gen.close()
        out = envelope(final.content, _finish(final, False))
        out["usage"] = _usage(final)
        return JSONResponse(out)
    include_usage = bool(req.stream_options and req.stream_options.include_usage)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for ev in gen.events():
                if ev.done:
                    yield _sse(envelope("", _finish(ev, False)))
                    if include_usage:
                        u = envelope("", None)
                        u["choices"] = []
                        u["usage"] = _usage(ev)
                        yield _sse(u)
                    break
                if ev.content:
                    yield _sse(envelope(ev.content, None))
        except GgtoolError as e:
            yield _sse({"error": {"message": str(e), "type": "api_error", "param": None, "code": None}})
            return
        yield b"data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream")


# -- embeddings ------------------------------------------------------------------------------
@router.post("/v1/embeddings")
async def embeddings(req: OAIEmbeddingRequest, request: Request) -> Response:
    st = get_state(request)
    if req.input is None or req.input == "" or req.input == []:
        raise HTTPError(400, "invalid input")
    if req.encoding_format not in (None, "float", "base64"):
        raise HTTPError(400, f"invalid encoding_format {req.encoding_format!r}")
    if req.dimensions is not None and req.dimensions < 0:
        raise HTTPError(400, "dimensions must be a positive number")
    inputs = [req.input] if isinstance(req.input, str) else list(req.input)
    model = await resolve(st, req.model)
    vecs, n_tokens, _ = await embed_texts(st, model, inputs, options=None, keep_alive=parse_keep_alive(None),
                                          truncate=True, request=request)
    data = []
    for i, v in enumerate(vecs):
        v = normalize(v)
        if req.dimensions and req.dimensions < len(v):
            v = normalize(v[: req.dimensions])
        f32 = v.astype(np.float32)
        emb: Any = base64.b64encode(f32.astype("<f4").tobytes()).decode() if req.encoding_format == "base64" \
            else [float(x) for x in f32]
        data.append({"object": "embedding", "embedding": emb, "index": i})
    return JSONResponse({"object": "list", "data": data, "model": req.model,
                         "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})


# -- models ----------------------------------------------------------------------------------
def _model_obj(m: Any) -> dict[str, Any]:
    return {"id": m.display, "object": "model", "created": int(m.modified), "owned_by": m.name.namespace}


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    st = get_state(request)
    models = await anyio.to_thread.run_sync(st.store.list_models)
    return JSONResponse({"object": "list", "data": [_model_obj(m) for m in models if m.is_model]})


@router.get("/v1/models/{model:path}")
async def get_model(model: str, request: Request) -> Response:
    st = get_state(request)
    try:
        name = st.catalog.parse(model)
        stored = await anyio.to_thread.run_sync(st.store.get, name)
    except (NotFoundError, GgtoolError):
        raise HTTPError(404, f"model '{model}' not found") from None
    return JSONResponse(_model_obj(stored))
