"""The FastAPI application factory and `serve()`.

`create_app(config, store)` wires the routers, the error handlers (Ollama's `{"error": …}` on
/api, OpenAI's error object on /v1), CORS, the DNS-rebinding guard and the body limits, and
owns the scheduler's lifetime (runners stop when the app stops).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from ggtool import __version__
from ggtool.errors import (
    AuthError,
    GgtoolError,
    InvalidFileError,
    InvalidNameError,
    NotFoundError,
    UsageError,
    VerificationError,
)
from ggtool.runner.base import ContextLengthError, RunnerError
from ggtool.server.config import ServerConfig
from ggtool.server.gotemplate import TemplateError
from ggtool.server.inference import HTTPError
from ggtool.server.models import ModelCatalog
from ggtool.server.scheduler import LoadError, QueueFull, Scheduler
from ggtool.server.security import (
    ALLOWED_HEADERS,
    ALLOWED_METHODS,
    BodyLimit,
    ForceJSON,
    HostGuard,
    origin_regex,
)
from ggtool.server.state import ServerState, llamacpp_factory

log = logging.getLogger("ggtool.server")


def status_for(e: BaseException) -> int:
    if isinstance(e, HTTPError):
        return e.status
    if isinstance(e, QueueFull):
        return 503
    if isinstance(e, (InvalidNameError, UsageError, TemplateError, ContextLengthError, InvalidFileError,
                      VerificationError)):
        return 400
    if isinstance(e, NotFoundError):
        return 404
    if isinstance(e, AuthError):
        return 401
    if isinstance(e, (LoadError, RunnerError)):
        return 500
    return 500


def _error_response(request: Request, status: int, message: str) -> JSONResponse:
    if request.url.path.startswith("/v1/"):
        from ggtool.server.openai_api import openai_error

        return openai_error(status, message)
    return JSONResponse({"error": message}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            return f"invalid JSON: {ctx.get('error', 'malformed body')}"
        if tuple(err.get("loc", ())) == ("body",) and err.get("type") == "missing":
            return "missing request body"
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def create_app(config: ServerConfig | None = None, store: Any = None, *, runner_factory: Any = None) -> FastAPI:
    config = config or ServerConfig()
    if store is None:
        from ggtool.store import Store

        store = Store(config.models)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler = Scheduler(
            runner_factory or llamacpp_factory(config),
            max_loaded=config.max_loaded_models,
            max_queue=config.max_queue,
            memory_budget=config.max_memory,
            default_keep_alive=config.keep_alive,
        )
        app.state.ggtool = ServerState(config=config, store=store, catalog=ModelCatalog(store), scheduler=scheduler)
        try:
            yield
        finally:
            await scheduler.shutdown()

    app = FastAPI(title="ggtool", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(request, 400, _validation_message(exc))

    @app.exception_handler(GgtoolError)
    async def _on_error(request: Request, exc: GgtoolError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return _error_response(request, status, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        msg = "404 page not found" if exc.status_code == 404 else str(exc.detail)
        return _error_response(request, exc.status_code, msg)

    from ggtool.server import ollama_api, openai_api, store_api

    app.include_router(ollama_api.router)
    app.include_router(store_api.router)
    app.include_router(openai_api.router)

    # add_middleware wraps: the last added runs first. Order of execution: body limit, CORS
    # (answers preflights itself, as gin-contrib/cors does in Ollama), then the host guard.
    app.add_middleware(ForceJSON)
    app.add_middleware(HostGuard, enabled=config.binds_loopback)
    app.add_middleware(
        CORSMiddleware,
        allow_origin_regex=origin_regex(config.origins),
        allow_methods=ALLOWED_METHODS,
        allow_headers=ALLOWED_HEADERS,
        allow_credentials=False,
    )
    app.add_middleware(BodyLimit, limit=config.max_body)
    return app


def serve(config: ServerConfig | None = None, *, store: Any = None, log_level: str = "info") -> None:
    """Run the server in the foreground until SIGINT/SIGTERM."""
    import uvicorn

    config = config or ServerConfig()
    app = create_app(config, store)
    logging.basicConfig(level=logging.DEBUG if config.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uv = uvicorn.Config(
        app, host=config.host.host, port=config.host.port, log_level="debug" if config.debug else log_level,
        access_log=config.debug, timeout_graceful_shutdown=5, lifespan="on",
    )
    uvicorn.Server(uv).run()
