"""Ollama's request options: validation, defaults and precedence.

Precedence is defaults < the model's params layer < the request's `options`. Unknown keys are
ignored (Ollama logs a warning), keys Ollama removed are ignored silently, and a value of the
wrong JSON type is a 400 with Ollama's message (`option "x" must be of type integer`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ggtool.errors import UsageError
from ggtool.runner.base import PROMPT_CACHE_MODES, LoadOptions, SamplingOptions

# name -> JSON kind (Go field type)
PREDICT_OPTIONS: dict[str, str] = {
    "num_keep": "integer",
    "seed": "integer",
    "num_predict": "integer",
    "top_k": "integer",
    "top_p": "float32",
    "min_p": "float32",
    "typical_p": "float32",
    "repeat_last_n": "integer",
    "temperature": "float32",
    "repeat_penalty": "float32",
    "presence_penalty": "float32",
    "frequency_penalty": "float32",
    "stop": "array",
}
RUNNER_OPTIONS: dict[str, str] = {
    "num_ctx": "integer",
    "num_batch": "integer",
    "num_gpu": "integer",
    "main_gpu": "integer",
    "use_mmap": "boolean",
    "num_thread": "integer",
    "draft_num_predict": "integer",
}
REMOVED_OPTIONS = frozenset({
    "penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock",
    "mirostat", "mirostat_tau", "mirostat_eta", "numa", "tfs_z",
})
ALL_OPTIONS = {**PREDICT_OPTIONS, **RUNNER_OPTIONS}
_INT64 = 2**63


class OptionError(UsageError):
    """A request option of the wrong type (HTTP 400)."""


def _check(name: str, kind: str, value: Any) -> Any:
    bad = OptionError(f'option "{name}" must be of type {kind}')
    if kind == "integer":
        # encoding/json gives float64; Ollama truncates it to an int
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if isinstance(value, float):
            if not math.isfinite(value) or abs(value) >= _INT64:
                raise bad
            value = int(value)
        if abs(value) >= _INT64:
            raise bad
        return value
    if kind == "float32":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        v = float(value)
        if not math.isfinite(v) or abs(v) > 3.4e38:
            raise bad
        return v
    if kind == "boolean":
        if not isinstance(value, bool):
            raise bad
        return value
    if kind == "array":
        if isinstance(value, str):  # a Modelfile PARAMETER stop given once
            return [value]
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise OptionError(f'option "{name}" must be of type array of strings')
        return list(value)
    raise bad


def validate_options(options: Any, *, where: str = "options") -> dict[str, Any]:
    """The recognised options of a request/params map, type-checked."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise OptionError(f"invalid {where}: expected an object")
    out: dict[str, Any] = {}
    for k, v in options.items():
        if not isinstance(k, str) or k in REMOVED_OPTIONS:
            continue
        kind = ALL_OPTIONS.get(k)
        if kind is None or v is None:
            continue  # unknown key: ignored, as Ollama does (with a warning)
        out[k] = _check(k, kind, v)
    return out


@dataclass
class EffectiveOptions:
    sampling: SamplingOptions
    runner: dict[str, Any] = field(default_factory=dict)  # num_ctx … as requested (pre-clamp)


def merge_options(
    model_params: Mapping[str, Any] | None,
    request_options: Mapping[str, Any] | None,
    *,
    default_num_ctx: int,
) -> EffectiveOptions:
    """defaults < model params < request options."""
    merged: dict[str, Any] = {}
    try:
        merged.update(validate_options(model_params or {}, where="model parameters"))
    except OptionError:
        # a bad params layer in the store must not make the model unusable: keep what's valid
        for k, v in (model_params or {}).items():
            try:
                merged.update(validate_options({k: v}))
            except OptionError:
                continue
    merged.update(validate_options(request_options))
    s = SamplingOptions()
    for k in PREDICT_OPTIONS:
        if k in merged:
            setattr(s, k, merged[k])
    runner = {"num_ctx": default_num_ctx, "num_batch": 512, "num_gpu": -1, "main_gpu": 0,
              "use_mmap": True, "num_thread": 0}
    for k in RUNNER_OPTIONS:
        if k in merged and k in runner:
            runner[k] = merged[k]
    return EffectiveOptions(sampling=s, runner=runner)


def load_options(
    runner_opts: Mapping[str, Any],
    *,
    n_ctx_train: int,
    num_parallel: int,
    embedding_only: bool,
    default_threads: int,
    flash_attn: bool,
    kv_cache_type: str,
    prompt_cache: str = PROMPT_CACHE_MODES[0],
) -> LoadOptions:
    """The runner's load options: num_ctx clamped to the training context (min 4)."""
    num_ctx = int(runner_opts.get("num_ctx") or 4096)
    if n_ctx_train > 0:
        num_ctx = min(num_ctx, n_ctx_train)
    num_ctx = max(4, num_ctx)
    num_batch = max(1, int(runner_opts.get("num_batch") or 512))
    num_thread = int(runner_opts.get("num_thread") or 0) or default_threads
    return LoadOptions(
        num_ctx=num_ctx,
        num_batch=num_batch,
        num_thread=max(0, num_thread),
        use_mmap=bool(runner_opts.get("use_mmap", True)),
        num_gpu=int(runner_opts.get("num_gpu", -1)),
        main_gpu=int(runner_opts.get("main_gpu", 0)),
        num_parallel=1 if embedding_only else max(1, num_parallel),
        embedding_only=embedding_only,
        flash_attn=flash_attn,
        kv_cache_type=kv_cache_type,
        prompt_cache=prompt_cache,
    )
