"""What `ggtool show` and the server's /api/show report about a stored model.

`model_parts(store, model)` reads a model's small layers (template, system, params, licenses,
messages, config) once; `show_model(...)` shapes them like Ollama's ShowResponse
(server/routes.go GetModelInfo), with `model_info` from the GGUF header. Foreign artifacts
(no GGUF model layer) are shown with what their manifest says.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ggtool.errors import GgtoolError
from ggtool.manifest import (
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_DRAFT,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_PROMPT,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    ModelConfig,
)
from ggtool.modelfile import model_commands, parameters_text, show_modelfile
from ggtool.store import Store, StoredModel

MAX_TEXT_LAYER = 16 << 20  # templates, licenses … are small; refuse absurd ones
DEFAULT_TEMPLATE = "{{ .Prompt }}"  # Ollama's template.DefaultTemplate
ARRAY_PREVIEW = 5  # model_info arrays longer than this are emptied unless verbose (Ollama)


@dataclass
class ModelParts:
    """The decoded small layers of a stored model."""

    model: StoredModel
    config: ModelConfig
    template: str | None = None
    system: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    licenses: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    model_path: Path | None = None
    projector_paths: list[Path] = field(default_factory=list)
    adapter_paths: list[Path] = field(default_factory=list)
    draft_path: Path | None = None

    @property
    def parent_model(self) -> str:
        layer = self.model.manifest.model_layer
        return layer.from_ if layer is not None else ""


def model_parts(store: Store, model: StoredModel) -> ModelParts:
    try:
        config = ModelConfig.from_bytes(store.read_blob(model.manifest.config.digest, limit=4 << 20))
    except (GgtoolError, OSError):
        config = ModelConfig(architecture="", os="")  # foreign or missing config: show the rest
    parts = ModelParts(model, config)
    for d in model.manifest.layers:
        mt = d.media_type
        if mt == MEDIA_TYPE_MODEL and parts.model_path is None:
            parts.model_path = store.blob_path(d.digest)
        elif mt == MEDIA_TYPE_PROJECTOR:
            parts.projector_paths.append(store.blob_path(d.digest))
        elif mt == MEDIA_TYPE_ADAPTER:
            parts.adapter_paths.append(store.blob_path(d.digest))
        elif mt == MEDIA_TYPE_DRAFT:
            parts.draft_path = store.blob_path(d.digest)
        elif mt in (MEDIA_TYPE_TEMPLATE, MEDIA_TYPE_PROMPT):
            parts.template = _text(store, d.digest)
        elif mt == MEDIA_TYPE_SYSTEM:
            parts.system = _text(store, d.digest)
        elif mt == MEDIA_TYPE_LICENSE:
            parts.licenses.append(_text(store, d.digest))
        elif mt == MEDIA_TYPE_PARAMS:
            v = _json(store, d.digest)
            if isinstance(v, dict):
                parts.parameters = v
        elif mt == MEDIA_TYPE_MESSAGES:
            v = _json(store, d.digest)
            if isinstance(v, list):
                parts.messages = [m for m in v if isinstance(m, dict)]
    return parts


def _text(store: Store, digest: str) -> str:
    return store.read_blob(digest, limit=MAX_TEXT_LAYER).decode("utf-8", errors="replace")


def _json(store: Store, digest: str) -> Any:
    try:
        return json.loads(_text(store, digest))
    except ValueError:
        return None


def modelfile_text(parts: ModelParts) -> str:
    """`show --modelfile`: FROM the blob paths, so `create -f` of it rebuilds the same model."""
    mf = model_commands(
        model_path=str(parts.model_path) if parts.model_path else parts.model.display,
        adapters=[str(p) for p in parts.adapter_paths],
        draft=str(parts.draft_path) if parts.draft_path else "",
        projectors=[str(p) for p in parts.projector_paths],
        template=parts.template,
        system=parts.system,
        renderer=parts.config.renderer,
        parser=parts.config.parser,
        requires=parts.config.requires,
        parameters=parts.parameters,
        licenses=parts.licenses,
        messages=[{"role": m.get("role", ""), "content": m.get("content", "")} for m in parts.messages],
    )
    return show_modelfile(parts.model.display, mf)


def _kv_json(v: Any, vtype: Any, subtype: Any, verbose: bool) -> Any:
    from gguf import GGUFValueType

    if vtype == GGUFValueType.FLOAT32:
        return float(np.format_float_positional(np.float32(v), unique=True, trim="-"))
    if vtype == GGUFValueType.ARRAY:
        if not verbose and len(v) > ARRAY_PREVIEW:
            return []
        if isinstance(v, np.ndarray):
            if subtype == GGUFValueType.FLOAT32:
                return [float(np.format_float_positional(x, unique=True, trim="-")) for x in v]
            return v.tolist()
        return list(v)
    return v


def model_info(path: Path, *, verbose: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """(model_info, tensors, facts) from a GGUF: its KV minus general.name and the chat
    template (Ollama), with `general.parameter_count` as Ollama computes it."""
    from gguf import GGUFValueType

    from ggtool.gguf_io import read_gguf

    with read_gguf(path) as g:
        info: dict[str, Any] = {}
        for k, e in g.kv.items():
            if k.startswith("GGUF."):
                continue
            raw = e.value if e.subtype == GGUFValueType.FLOAT32 else e.python_value()
            info[k] = _kv_json(raw, e.vtype, e.subtype, verbose)
        facts = {"chat_template": g.get("tokenizer.chat_template") or "", "architecture": g.architecture or ""}
        info.pop("general.name", None)
        info.pop("tokenizer.chat_template", None)
        info["general.parameter_count"] = sum(t.n_elements for t in g.tensors)
        tensors = [{"name": t.name, "type": t.type_name, "shape": list(t.shape)} for t in g.tensors]
        facts["pooling"] = f"{facts['architecture']}.pooling_type" in g.kv
        facts["vision"] = f"{facts['architecture']}.vision.block_count" in g.kv
        facts["audio"] = f"{facts['architecture']}.audio.block_count" in g.kv
    return dict(sorted(info.items())), tensors, facts


def capabilities(parts: ModelParts, facts: dict[str, Any] | None) -> list[str]:
    """A close reading of Ollama's Model.Capabilities() (config, GGUF, projector, template)."""
    caps: list[str] = []

    def add(c: str) -> None:
        if c not in caps:
            caps.append(c)

    for c in parts.config.capabilities or []:
        add(c)
    if facts is not None:
        if parts.template is None and facts.get("chat_template"):
            ct = facts["chat_template"]
            if "tools" in ct or "tool_call" in ct:
                add("tools")
            if "<think>" in ct and "</think>" in ct:
                add("thinking")
        add("embedding" if facts.get("pooling") else "completion")
        if facts.get("vision"):
            add("vision")
        if facts.get("audio"):
            add("audio")
    if parts.projector_paths:
        add("vision")
    t = parts.template or ""
    if ".Tools" in t:
        add("tools")
    if ".Suffix" in t:
        add("insert")
    if ".Thinking" in t or ".Think" in t:
        add("thinking")
    return caps


def go_time(ts: float) -> str:
    """A time as Go's time.Time marshals it (RFC 3339 with nanoseconds, local offset)."""
    dt = _dt.datetime.fromtimestamp(ts).astimezone()
    frac = f"{dt.microsecond:06d}".rstrip("0")
    off = dt.strftime("%z")
    off = "Z" if off in ("+0000", "") else f"{off[:3]}:{off[3:]}"
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + off


def show_model(store: Store, name: str, *, verbose: bool = False) -> dict[str, Any]:
    """Ollama's /api/show response for a stored model."""
    model = store.get(name)
    parts = model_parts(store, model)
    cfg = parts.config
    resp: dict[str, Any] = {
        "license": "\n".join(parts.licenses),
        "modelfile": modelfile_text(parts),
        "parameters": parameters_text(parts.parameters),
        "template": parts.template if parts.template is not None else DEFAULT_TEMPLATE,
        "system": parts.system,
        "details": {
            "parent_model": parts.parent_model,
            "format": cfg.model_format,
            "family": cfg.model_family,
            "families": cfg.model_families,
            "parameter_size": cfg.model_type,
            "quantization_level": cfg.file_type,
        },
        "messages": [{"role": m.get("role", ""), "content": m.get("content", "")} for m in parts.messages],
        "model_info": {},
        "modified_at": go_time(model.modified),
    }
    for key in ("requires", "renderer", "parser"):
        if getattr(cfg, key):
            resp[key] = getattr(cfg, key)
    facts = None
    if parts.model_path is not None and parts.model_path.is_file():
        info, tensors, facts = model_info(parts.model_path, verbose=verbose)
        resp["model_info"] = info
        resp["tensors"] = tensors
        if parts.template is None and facts["chat_template"]:
            resp["template"] = facts["chat_template"]  # rendered natively, as Ollama ≥ 0.30 does
    if parts.projector_paths and parts.projector_paths[0].is_file():
        resp["projector_info"], _, _ = model_info(parts.projector_paths[0], verbose=verbose)
    resp["capabilities"] = capabilities(parts, facts)
    if not model.is_model:
        resp["artifact"] = {
            "media_type": model.manifest.media_type or "application/vnd.oci.image.manifest.v1+json",
            "artifact_type": model.manifest.artifact_type,
            "layers": [{"mediaType": d.media_type, "digest": d.digest, "size": d.size} for d in model.manifest.layers],
        }
    resp["digest"] = model.model_id
    return resp
