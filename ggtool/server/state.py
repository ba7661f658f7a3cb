"""The server's shared objects (one per app): config, store, model catalog, scheduler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from ggtool.runner.base import LoadOptions, Runner
from ggtool.server.config import ServerConfig
from ggtool.server.models import ModelCatalog, ServedModel
from ggtool.server.scheduler import Scheduler


@dataclass
class ServerState:
    config: ServerConfig
    store: Any  # ggtool.store.Store
    catalog: ModelCatalog
    scheduler: Scheduler


def get_state(request: Request) -> ServerState:
    return request.app.state.ggtool


def llamacpp_factory(config: ServerConfig):
    from ggtool.runner.llamacpp import LlamaCppRunner

    def make(model: ServedModel, options: LoadOptions) -> Runner:
        estimate = model.facts.file_size + model.facts.kv_bytes(options.num_ctx, options.num_parallel)
        return LlamaCppRunner(model.path, options, estimated_size=estimate,
                              load_timeout=config.load_timeout, verbose=config.debug)

    return make
