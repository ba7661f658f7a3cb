"""Ollama's store endpoints over `ggtool.store`, `ggtool.create` and `ggtool.registry`:
/api/tags, /api/show, /api/copy, /api/delete, /api/create, /api/pull, /api/push and
HEAD/POST /api/blobs/:digest.

The store functions are blocking; they run in worker threads, and their progress events are
relayed to the NDJSON stream through a queue. No path is ever built from a request except
through the store's validated name and digest helpers.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ggtool.errors import GgtoolError, InvalidNameError, NotFoundError, VerificationError
from ggtool.events import ProgressEvent
from ggtool.names import ModelName, parse_model_name
from ggtool.server.inference import HTTPError, rfc3339
from ggtool.server.schemas import (
    CopyRequest,
    CreateRequestBody,
    DeleteRequest,
    PullRequest,
    PushRequest,
    ShowRequest,
)
from ggtool.server.state import get_state

router = APIRouter()
NDJSON = "application/x-ndjson"
_DIGEST_RE = re.compile(r"sha256[:-]([0-9a-f]{64})")
_PROGRESS_INTERVAL = 0.06  # Ollama reports transfer progress every 60 ms


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _name(value: str, what: str = "name") -> ModelName:
    if not value:
        raise HTTPError(400, "model is required" if what == "name" else f"{what} is required")
    try:
        return parse_model_name(value)
    except InvalidNameError:
        raise HTTPError(400, f'{what} "{value}" is invalid') from None


# -- progress streaming ----------------------------------------------------------------------
async def _progress_stream(
    work: Callable[[Callable[[ProgressEvent], None]], Any], stream: bool
) -> Response:
    """Run `work(progress)` in a thread; stream its events (NDJSON) or answer the last one."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[Any] = asyncio.Queue()
    last_sent: dict[str, float] = {}
    done_marker = object()

    def progress(ev: ProgressEvent) -> None:
        key = ev.digest or ev.status
        now = time.monotonic()
        final = ev.total is not None and (ev.completed or 0) >= ev.total
        if ev.total is not None and not final and now - last_sent.get(key, 0.0) < _PROGRESS_INTERVAL:
            return
        last_sent[key] = now
        loop.call_soon_threadsafe(q.put_nowait, ev.to_dict())

    async def runner() -> None:
        try:
            await anyio.to_thread.run_sync(work, progress)
        except GgtoolError as e:
            await q.put(e)
        except Exception as e:  # noqa: BLE001 - reported to the client as an error line
            await q.put(GgtoolError(f"{type(e).__name__}: {e}"))
        await q.put(done_marker)

    task = asyncio.create_task(runner())

    async def events() -> AsyncIterator[Any]:
        try:
            while True:
                item = await q.get()
                if item is done_marker:
                    return
                yield item
        finally:
            if not task.done():
                # the client left: the store operation finishes on its own (it is atomic)
                pass

    if stream:
        first = await q.get()
        if isinstance(first, GgtoolError):
            await task
            raise _as_http(first)

        async def body() -> AsyncIterator[bytes]:
            if first is not done_marker:
                yield _line(first)
                async for item in events():
                    if isinstance(item, GgtoolError):
                        yield _line({"error": str(item)})
                        return
                    yield _line(item)

        return StreamingResponse(body(), media_type=NDJSON)
    last: dict[str, Any] = {"status": "success"}
    async for item in events():
        if isinstance(item, GgtoolError):
            raise _as_http(item)
        last = item
    return JSONResponse(last)


def _as_http(e: GgtoolError) -> HTTPError:
    if isinstance(e, HTTPError):
        return e
    from ggtool.errors import AuthError, InvalidFileError, NetworkError, UsageError

    if isinstance(e, NotFoundError):
        return HTTPError(404, str(e))
    if isinstance(e, (UsageError, InvalidNameError, VerificationError, InvalidFileError)):
        return HTTPError(400, str(e))
    if isinstance(e, AuthError):
        return HTTPError(401, str(e))
    if isinstance(e, NetworkError):
        return HTTPError(502, str(e))
    return HTTPError(500, str(e))


# -- list / show / copy / delete -------------------------------------------------------------
def _details(store: Any, model: Any) -> dict[str, Any]:
    from ggtool.show import model_parts

    parts = model_parts(store, model)
    cfg = parts.config
    return {
        "parent_model": parts.parent_model,
        "format": cfg.model_format,
        "family": cfg.model_family,
        "families": cfg.model_families,
        "parameter_size": cfg.model_type,
        "quantization_level": cfg.file_type,
    }


@router.get("/api/tags")
@router.head("/api/tags", include_in_schema=False)
async def tags(request: Request) -> Response:
    st = get_state(request)

    def listing() -> list[dict[str, Any]]:
        out = []
        for m in st.store.list_models():
            try:
                details = _details(st.store, m)
            except GgtoolError:
                continue
            out.append({
                "name": m.display, "model": m.display, "modified_at": rfc3339(m.modified),
                "size": m.size, "digest": m.model_id, "details": details,
            })
        return out

    return JSONResponse({"models": await anyio.to_thread.run_sync(listing)})


@router.post("/api/show")
async def show(req: ShowRequest, request: Request) -> Response:
    st = get_state(request)
    name = req.model or req.name
    _name(name)
    from ggtool.show import show_model

    try:
        resp = await anyio.to_thread.run_sync(lambda: show_model(st.store, name, verbose=req.verbose))
    except NotFoundError:
        raise HTTPError(404, f"model '{name}' not found") from None
    if req.system:
        resp["system"] = req.system
    return JSONResponse(resp)


@router.post("/api/copy")
async def copy(req: CopyRequest, request: Request) -> Response:
    st = get_state(request)
    src = _name(req.source, "source")
    dst = _name(req.destination, "destination")
    try:
        await anyio.to_thread.run_sync(lambda: st.store.copy(src, dst))
    except NotFoundError:
        raise HTTPError(404, f'model "{req.source}" not found') from None
    return Response(status_code=200)


@router.delete("/api/delete")
async def delete(req: DeleteRequest, request: Request) -> Response:
    st = get_state(request)
    value = req.model or req.name
    if not value:
        raise HTTPError(400, "model is required")
    try:
        name = parse_model_name(value)
    except InvalidNameError:
        raise HTTPError(400, f'name "{value}" is invalid') from None
    try:
        await anyio.to_thread.run_sync(lambda: st.store.remove(name))
    except NotFoundError:
        raise HTTPError(404, f"model '{value}' not found") from None
    return Response(status_code=200)


# -- pull / push / create --------------------------------------------------------------------
def _transport(insecure: bool) -> Any:
    from ggtool.registry import TransportOptions

    return TransportOptions(plain_http=insecure)


@router.post("/api/pull")
async def pull(req: PullRequest, request: Request) -> Response:
    st = get_state(request)
    value = req.model or req.name
    try:
        name = parse_model_name(value)
    except InvalidNameError:
        raise HTTPError(400, "invalid model name") from None
    from ggtool.registry import PullOptions
    from ggtool.registry import pull as do_pull

    opts = PullOptions(transport=_transport(req.insecure))
    return await _progress_stream(
        lambda progress: do_pull(name, store=st.store, options=opts, progress=progress), req.stream is not False
    )


@router.post("/api/push")
async def push(req: PushRequest, request: Request) -> Response:
    st = get_state(request)
    value = req.model or req.name
    try:
        name = parse_model_name(value)
    except InvalidNameError:
        raise HTTPError(400, "invalid model name") from None
    from ggtool.registry import PushOptions
    from ggtool.registry import push as do_push

    opts = PushOptions(transport=_transport(req.insecure))
    return await _progress_stream(
        lambda progress: do_push(name, store=st.store, options=opts, progress=progress), req.stream is not False
    )


@router.post("/api/create")
async def create(body: CreateRequestBody, request: Request) -> Response:
    st = get_state(request)
    raw = await request.json()
    from ggtool.create import create_model
    from ggtool.errors import UsageError
    from ggtool.modelfile import CreateRequest

    try:
        creq = CreateRequest.from_api(raw)
    except UsageError as e:
        raise HTTPError(400, str(e)) from None
    if not creq.model:
        raise HTTPError(400, "model is required")
    _name(creq.model)
    if creq.from_:
        _name(creq.from_, "from")

    def pull_missing(name: ModelName, progress: Callable[[ProgressEvent], None]) -> None:
        from ggtool.registry import pull as do_pull

        do_pull(name, store=st.store, progress=progress)

    return await _progress_stream(
        lambda progress: create_model(creq, store=st.store, progress=progress, pull=pull_missing),
        bool(raw.get("stream", True)) if isinstance(raw, dict) else True,
    )


# -- blobs -----------------------------------------------------------------------------------
def _digest(value: str) -> str:
    m = _DIGEST_RE.fullmatch(value)
    if not m:
        raise HTTPError(400, "invalid digest format")
    return f"sha256:{m.group(1)}"


@router.head("/api/blobs/{digest}")
async def blob_head(digest: str, request: Request) -> Response:
    st = get_state(request)
    d = _digest(digest)
    if await anyio.to_thread.run_sync(st.store.has_blob, d):
        return Response(status_code=200)
    return JSONResponse({"error": f'blob "{digest}" not found'}, status_code=404)


@router.post("/api/blobs/{digest}")
async def blob_upload(digest: str, request: Request) -> Response:
    """Streamed and unbounded, but verified: the blob appears only if its bytes hash to `digest`."""
    st = get_state(request)
    d = _digest(digest)
    if await anyio.to_thread.run_sync(st.store.has_blob, d):
        return Response(status_code=200)
    writer = await anyio.to_thread.run_sync(lambda: st.store.blob_writer(expected_digest=d))
    try:
        buf: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            buf.append(chunk)
            size += len(chunk)
            if size >= 4 << 20:
                data = b"".join(buf)
                buf, size = [], 0
                await anyio.to_thread.run_sync(writer.write, data)
        if buf:
            await anyio.to_thread.run_sync(writer.write, b"".join(buf))
        try:
            info = await anyio.to_thread.run_sync(writer.commit)
        except VerificationError:
            raise HTTPError(400, f'digest mismatch, expected "{d}", got "{writer.digest}"') from None
    finally:
        if writer.result is None:
            await anyio.to_thread.run_sync(writer.abort)
    return Response(status_code=201 if info.created else 200)
