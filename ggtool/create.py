"""Build a model in the store from Ollama's structured create request.

One function, `create_model(request, store=…)`, does what Ollama's `/api/create` does
(server/create.go), and both the CLI (`ggtool create`) and the server call it:

1. base layers: `from_` a model in the store (its layers reused, `from` = its short name), or
   files — GGUF files (imported into blobs while hashing; media type from `general.type`), or a
   Hugging Face SafeTensors folder (converted straight into a blob, weights never copied);
2. `quantize` the model layer on the way in (from F16/BF16/F32 sources) with ggtool.quantize;
3. the config blob from the model layer's GGUF metadata (Ollama's ConfigV2 values);
4. template / system / license / params / messages layers, replaced or merged as Ollama does;
   without TEMPLATE the GGUF's own `tokenizer.chat_template` is kept (no guessed Go template);
5. the manifest, written last; the replaced manifest's now-unused blobs removed.

Progress uses Ollama's create status strings ("parsing GGUF", "using existing layer sha256:…",
"creating new layer sha256:…", "writing manifest", "success", …).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggtool.atomic import TEMP_MARK
from ggtool.errors import GgtoolError, InvalidFileError, NotFoundError, UsageError
from ggtool.events import ProgressCallback, ProgressEvent, no_progress
from ggtool.manifest import (
    GGUF_MEDIA_TYPES,
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_DRAFT,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    Descriptor,
    DraftConfig,
    ModelConfig,
    build_manifest,
    config_descriptor,
    messages_bytes,
    params_bytes,
)
from ggtool.modelfile import CreateRequest
from ggtool.names import ModelName, parse_model_name
from ggtool.store import BlobInfo, Lease, Store, StoredModel

GGUF_MAGIC = b"GGUF"
QUANTIZE_SOURCE_TYPES = ("F32", "F16", "BF16")
# the digest Ollama reports while quantizing (a placeholder, not a real digest)
QUANTIZE_PROGRESS_DIGEST = "0000000000000000000"

# Ollama's FileType.String() (fs/ggml/type.go), by llama_ftype value; gaps are "unknown"
_FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
}
# architecture defaults Ollama applies (server/create.go createModel)
_ARCH_RENDERER_PARSER = {
    "gemma4": ("gemma4", "gemma4"),
    "laguna": ("laguna", "laguna"),
    "nemotron_h": ("nemotron-3-nano", "nemotron-3-nano"),
    "nemotron_h_moe": ("nemotron-3-nano", "nemotron-3-nano"),
    "nemotron_h_omni": ("nemotron-3-nano", "nemotron-3-nano"),
}
_SIDE_FILES = (".json", ".jinja", ".model", ".txt", ".md")


def file_type_name(value: Any) -> str:
    """Ollama's name for `general.file_type` (note: 0/absent is "unknown", as in Ollama)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return _FILE_TYPES.get(value, "unknown")
    return "unknown"


def human_number(n: int) -> str:
    """Ollama's format.HumanNumber (model_type / parameter_size)."""
    if n >= 1_000_000_000:
        x = n / 1_000_000_000
        return f"{x:.0f}B" if x == int(x) else f"{x:.1f}B"
    if n >= 1_000_000:
        x = n / 1_000_000
        return f"{x:.0f}M" if x == int(x) else f"{x:.2f}M"
    if n >= 1_000:
        return f"{n / 1000:.0f}K"
    return str(n)


@dataclass(frozen=True, slots=True)
class GGUFFacts:
    """What create needs from a GGUF header."""

    architecture: str
    kind: str  # general.type ("model", "adapter", "projector", "mmproj", …)
    file_type: str  # Ollama's name, "unknown" when absent or 0
    file_type_id: int | None
    parameter_count: int
    split_count: int
    has_block_count: bool
    vision_block_count: int
    is_f_type: bool  # every tensor F32/F16/BF16 (a quantize source)

    @property
    def media_type(self) -> str:
        if self.kind == "adapter":
            return MEDIA_TYPE_ADAPTER
        if self.kind in ("projector", "mmproj"):
            return MEDIA_TYPE_PROJECTOR
        if not self.has_block_count and self.vision_block_count > 0:
            return MEDIA_TYPE_PROJECTOR
        return MEDIA_TYPE_MODEL


def gguf_facts(path: str | os.PathLike[str]) -> GGUFFacts:
    """Read and validate a GGUF header (InvalidFileError if it is not a valid GGUF)."""
    from ggtool.gguf_io import read_gguf

    with read_gguf(path) as g:
        arch = g.get("general.architecture")
        arch = arch if isinstance(arch, str) and arch else "unknown"
        kind = g.get("general.type")
        ft = g.get("general.file_type")
        ft_id = ft if isinstance(ft, int) and not isinstance(ft, bool) else None
        split = g.get("split.count")
        block = g.get(f"{arch}.block_count")
        vision = g.get(f"{arch}.vision.block_count") or g.get("clip.vision.block_count") or 0
        ftypes = {0, 1, 30}  # ggml F32, F16, BF16
        return GGUFFacts(
            architecture=arch,
            kind=kind if isinstance(kind, str) else "unknown",
            file_type=file_type_name(ft_id),
            file_type_id=ft_id,
            parameter_count=sum(t.n_elements for t in g.tensors),
            split_count=split if isinstance(split, int) else 0,
            has_block_count=bool(block),
            vision_block_count=vision if isinstance(vision, int) else 0,
            is_f_type=bool(g.tensors) and all(t.ggml_type in ftypes for t in g.tensors),
        )


def is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


@dataclass(slots=True)
class _Layer:
    desc: Descriptor
    status: str
    facts: GGUFFacts | None = None
    path: Path | None = None  # the blob, or the local source file while `pending`
    pending: bool = False  # a local file not imported yet (a quantize may replace it first)
    owned_sha256: str = ""  # set when `path` is our own scratch output (moved in, not copied)
    converted_as: str = ""  # file type a SafeTensors conversion already quantized to (one pass)


@dataclass(frozen=True, slots=True)
class CreateResult:
    model: StoredModel
    removed_blobs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        m = self.model
        return {
            "status": "success",
            "model": m.display,
            "digest": m.model_id,
            "size": m.size,
            "layers": [{"mediaType": d.media_type, "digest": d.digest, "size": d.size} for d in m.manifest.layers],
        }


# -- the pipeline -----------------------------------------------------------------------------
def create_model(
    request: CreateRequest,
    *,
    store: Store,
    progress: ProgressCallback = no_progress,
    pull: Callable[[ModelName, ProgressCallback], None] | None = None,
) -> CreateResult:
    """Create `request.model` in `store` (see the module docstring). `pull(name, progress)`, if
    given, fetches a `from_` model that is not in the store (Ollama pulls it on demand)."""
    if not request.model:
        raise UsageError("invalid model name", hint="give the new model a name")
    name = store.resolve(parse_model_name(request.model))
    has_files = bool(request.files or request.local_files)
    if not request.from_ and not has_files:
        raise UsageError("neither 'from' or 'files' was specified")
    if request.remote_host:
        raise UsageError("remote models (remote_host) are not supported by ggtool")
    if request.draft_quantize and not (request.draft_files or request.local_draft_files):
        raise UsageError("--draft-quantize requires a DRAFT model")

    config = ModelConfig(renderer=request.renderer, parser=request.parser, requires=request.requires)
    work = _Workdir(store)
    with store.lease() as lease, work:
        if request.from_:
            layers = _layers_from_model(store, request.from_, config, lease, progress, pull)
        else:
            layers = _layers_from_files(store, request.files, request.local_files, None, lease, work, progress,
                                        quantize=request.quantize.upper())
        if request.draft_files or request.local_draft_files:
            layers += _layers_from_files(
                store, request.draft_files, request.local_draft_files, MEDIA_TYPE_DRAFT, lease, work, progress
            )
        if request.adapters or request.local_adapters:
            if len(request.adapters) + len(request.local_adapters) > 1:
                raise UsageError("only one adapter is currently supported")
            layers += _layers_from_files(
                store, request.adapters, request.local_adapters, MEDIA_TYPE_ADAPTER, lease, work, progress
            )
        if request.info:
            _apply_info(config, request.info)

        layers = _quantize_and_configure(store, request, layers, config, lease, work, progress)
        layers = [_import_pending(store, la, lease, progress) for la in layers]
        layers = _set_text_layers(store, request, layers, lease)

        cfg_bytes = config.to_bytes()
        cfg_info = store.put_bytes(cfg_bytes, lease=lease)
        for layer in layers:
            if layer.status:
                progress(ProgressEvent(layer.status))
        progress(ProgressEvent("writing manifest"))
        manifest = build_manifest(config_descriptor(cfg_bytes), [la.desc for la in layers])
        assert manifest.config.digest == cfg_info.digest
        stored, removed = store.write_manifest(name, manifest)
    if removed:
        progress(ProgressEvent("removing unused layers"))
    progress(ProgressEvent("success"))
    return CreateResult(stored, removed)


class _Workdir:
    """A scratch folder inside the store root (same filesystem), removed on exit."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.path: Path | None = None

    def get(self) -> Path:
        if self.path is None:
            self.store.ensure_dirs()
            self.path = Path(tempfile.mkdtemp(prefix=".ggtool-create-", dir=self.store.root))
        return self.path

    def blob_temp(self, suffix: str = ".gguf") -> Path:
        """A temp path in blobs/ for an output that becomes a blob by rename."""
        self.store.ensure_dirs()
        return self.store.blobs_dir / f"{TEMP_MARK}blob-create-{os.getpid()}-{secrets.token_hex(6)}{suffix}"

    def __enter__(self) -> _Workdir:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)


def _layers_from_model(
    store: Store,
    from_: str,
    config: ModelConfig,
    lease: Lease,
    progress: ProgressCallback,
    pull: Callable[[ModelName, ProgressCallback], None] | None,
) -> list[_Layer]:
    base_name = parse_model_name(from_)
    try:
        base = store.get(base_name)
    except NotFoundError:
        if pull is None:
            raise NotFoundError(
                f"model '{base_name.display_shortest()}' not found", hint=f"ggtool pull {base_name.display_shortest()}"
            ) from None
        pull(base_name, lambda ev: None if ev.status == "success" else progress(ev))  # one success, at the end
        base = store.get(base_name)
    store.require_model_layer(base)  # a foreign artifact cannot be the base of a model
    short = base.display
    layers = []
    for d in base.manifest.layers:
        info = store.reuse_blob(d.digest, lease)
        desc = Descriptor(d.media_type, d.digest, info.size, from_=short, name=d.name)
        facts = None
        if d.media_type in GGUF_MEDIA_TYPES:
            facts = gguf_facts(store.blob_path(d.digest))
        layers.append(_Layer(desc, info.status, facts, store.blob_path(d.digest)))
    # inherit what Ollama inherits from the base config
    with contextlib.suppress(GgtoolError, OSError):
        base_cfg = ModelConfig.from_bytes(store.read_blob(base.manifest.config.digest, limit=4 << 20))
        config.renderer = config.renderer or base_cfg.renderer
        config.parser = config.parser or base_cfg.parser
        config.requires = config.requires or base_cfg.requires
        config.model_format = config.model_format or base_cfg.model_format
        config.capabilities = config.capabilities or base_cfg.capabilities
    return layers


def _layers_from_files(
    store: Store,
    files: Mapping[str, str],
    local: Mapping[str, Path],
    media_type: str | None,
    lease: Lease,
    work: _Workdir,
    progress: ProgressCallback,
    quantize: str = "",
) -> list[_Layer]:
    """Files (blobs by digest, or local paths) → layers: SafeTensors converted, GGUFs imported.
    `quantize`: a SafeTensors model is converted straight to that file type in one pass."""
    names = sorted(set(files) | set(local))
    if not names:
        raise UsageError("no files provided to convert")
    if any(n.endswith(".safetensors") for n in names):
        return [_convert_safetensors(store, files, local, media_type, lease, work, progress, quantize)]
    layers = []
    for n in names:
        path = local.get(n) or store.blob_path(files[n])
        if not path.is_file():
            raise NotFoundError(f"{n}: blob {files.get(n)} not found in the store" if n in files else f"{path}: no such file")
        if not is_gguf(path):
            if n.endswith(_SIDE_FILES):
                continue  # config/tokenizer files beside a GGUF (FROM <folder>) are not layers
            raise InvalidFileError("supplied file was not in GGUF format", hint=n)
        progress(ProgressEvent("parsing GGUF"))
        facts = gguf_facts(path)
        if facts.split_count > 1:
            raise UsageError(
                f"{n} is one part of a split GGUF; split models are not supported yet",
                hint="merge the parts first (llama-gguf-split --merge)",
            )
        mt = media_type or facts.media_type
        if n in local:  # imported after quantization, so a quantized model never stores its source
            layers.append(_Layer(Descriptor(mt, "", path.stat().st_size, from_=n), "", facts, path, pending=True))
            continue
        info = store.reuse_blob(files[n], lease)
        desc = Descriptor(mt, info.digest, info.size, from_=n)
        layers.append(_Layer(desc, info.status, facts, store.blob_path(info.digest)))
    if not layers:
        raise InvalidFileError("supplied file was not in GGUF format")
    return layers


def _import_pending(store: Store, layer: _Layer, lease: Lease, progress: ProgressCallback) -> _Layer:
    if not layer.pending:
        return layer
    assert layer.path is not None
    if layer.owned_sha256:
        info = store.install_blob_file(layer.path, "sha256:" + layer.owned_sha256, verified=True, lease=lease)
    else:
        info = _import_file(store, layer.path, layer.desc.from_, lease, progress)
    desc = Descriptor(layer.desc.media_type, info.digest, info.size, from_=layer.desc.from_)
    return _Layer(desc, info.status, layer.facts, store.blob_path(info.digest))


def _import_file(store: Store, path: Path, name: str, lease: Lease, progress: ProgressCallback) -> BlobInfo:
    size = path.stat().st_size
    status = f"copying file {name}"
    progress(ProgressEvent(status, total=size, completed=0))
    return store.put_file(path, lease=lease, progress=lambda n: progress(ProgressEvent(status, total=size, completed=n)))


def _convert_safetensors(
    store: Store,
    files: Mapping[str, str],
    local: Mapping[str, Path],
    media_type: str | None,
    lease: Lease,
    work: _Workdir,
    progress: ProgressCallback,
    quantize: str = "",
) -> _Layer:
    """A folder of links to the files (local paths or blobs), converted into one GGUF blob
    (quantized on the way when `quantize` names a file type: no intermediate F16 copy)."""
    folder = work.get() / "hf"
    for n in sorted(set(files) | set(local)):
        target = local[n].resolve() if n in local else store.blob_path(files[n])
        link = folder / n
        if not link.resolve().is_relative_to(folder.resolve()):
            raise UsageError(f"file path must be relative: {n}")
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)
    progress(ProgressEvent("converting model" if media_type != MEDIA_TYPE_ADAPTER else "converting adapter"))
    out = work.get() / "converted.gguf"  # in the store root: becomes a blob by rename
    sha = convert_folder(folder, out, progress=progress, quantize=quantize or None)
    facts = gguf_facts(out)
    mt = media_type or facts.media_type
    return _Layer(Descriptor(mt, "", out.stat().st_size), "", facts, out, pending=True, owned_sha256=sha,
                  converted_as=quantize)


def convert_folder(
    folder: Path, output: Path, *, progress: ProgressCallback = no_progress, quantize: str | None = None
) -> str:
    """Hugging Face folder → GGUF with ggtool's converter (outtype auto: BF16 stays BF16, else
    F16, as Ollama converts; or straight to `quantize`'s file type); returns the sha256 hex."""
    from ggtool.convert import convert

    def relay(ev: ProgressEvent) -> None:
        if ev.status != "success":  # the create pipeline reports its own success
            progress(ev)

    result = convert(folder, output=output, outtype="auto", force=True, quantize=quantize, progress=relay)
    return result.sha256


def _apply_info(config: ModelConfig, info: Mapping[str, Any]) -> None:
    """The `info` overrides of /api/create (not reachable from a Modelfile)."""
    caps = info.get("capabilities")
    if isinstance(caps, list):
        config.capabilities = (config.capabilities or []) + [c for c in caps if isinstance(c, str)]
    for key, attr in (("model_family", "model_family"), ("base_name", "base_name"),
                      ("quantization_level", "file_type"), ("parameter_size", "model_type")):
        if key in info:
            v = info[key]
            if not isinstance(v, str):
                raise UsageError(f"info field {key!r} must be a string")
            setattr(config, attr, v)
    if config.model_family:
        config.model_families = [config.model_family]
    for key in ("context_length", "embedding_length"):
        if key in info:
            v = info[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or int(v) != v:
                raise UsageError(f"info field {key!r} must be a non-negative integer")
            setattr(config, key, int(v))


def _quantize_and_configure(
    store: Store,
    request: CreateRequest,
    layers: list[_Layer],
    config: ModelConfig,
    lease: Lease,
    work: _Workdir,
    progress: ProgressCallback,
) -> list[_Layer]:
    out = []
    for layer in layers:
        mt = layer.desc.media_type
        want = ""
        if mt == MEDIA_TYPE_MODEL:
            want = request.quantize.upper()
        elif mt == MEDIA_TYPE_DRAFT:
            want = request.draft_quantize.upper()
        if want and layer.facts is not None and layer.converted_as != want:
            layer = _quantize_layer(store, layer, want, lease, work, progress)
        if layer.facts is not None and mt == MEDIA_TYPE_MODEL:
            f = layer.facts
            config.model_format = config.model_format or "gguf"
            config.model_family = config.model_family or f.architecture
            config.model_type = config.model_type or human_number(f.parameter_count)
            config.file_type = config.file_type or f.file_type
            config.model_families = [*(config.model_families or []), f.architecture]
            defaults = _ARCH_RENDERER_PARSER.get(f.architecture)
            if defaults:
                config.renderer = config.renderer or defaults[0]
                config.parser = config.parser or defaults[1]
                if f.architecture == "gemma4" and "stop" not in request.parameters:
                    request.parameters["stop"] = ["<turn|>"]
        elif layer.facts is not None and mt == MEDIA_TYPE_DRAFT:
            config.draft = DraftConfig(model_format="gguf", architecture=layer.facts.architecture)
        out.append(layer)
    return out


def _quantize_layer(
    store: Store, layer: _Layer, want: str, lease: Lease, work: _Workdir, progress: ProgressCallback
) -> _Layer:
    facts = layer.facts
    assert facts is not None and layer.path is not None
    src_type = facts.file_type if facts.file_type != "unknown" else ("F32" if facts.is_f_type else "unknown")
    if layer.desc.media_type == MEDIA_TYPE_DRAFT and not facts.is_f_type:
        raise UsageError(f"draft quantization requires an unquantized draft model, got {facts.file_type}")
    if src_type not in QUANTIZE_SOURCE_TYPES or not facts.is_f_type:
        raise UsageError("quantization is only supported for F16, BF16 and F32 models")
    if src_type == want:
        return layer
    try:
        from ggtool.quantize import quantize_file
    except ImportError:
        raise GgtoolError("quantizing needs ggtool.quantize, which is not available in this build") from None

    status = f"quantizing {src_type} model to {want}"

    def relay(ev: ProgressEvent) -> None:
        if ev.total:
            progress(ProgressEvent(status, digest=QUANTIZE_PROGRESS_DIGEST, total=layer.desc.size,
                                   completed=int(layer.desc.size * (ev.completed or 0) / ev.total)))

    out = work.blob_temp()
    try:
        result = quantize_file(layer.path, want, out, overwrite=True, progress=relay)
        progress(ProgressEvent("verifying conversion"))
        facts = gguf_facts(out)
        info = store.install_blob_file(out, "sha256:" + result.sha256, verified=True, lease=lease)  # type: ignore[union-attr]
    finally:
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
    desc = Descriptor(layer.desc.media_type, info.digest, info.size)
    return _Layer(desc, info.status, facts, store.blob_path(info.digest))


def _validate_template(text: str) -> None:
    try:
        from ggtool.server.gotemplate import TemplateError, parse
    except ImportError:  # the template engine ships with the server; without it, store as is
        return
    try:
        parse(text)
    except TemplateError as e:
        raise UsageError(f"template error: {e}") from None


def _set_text_layers(store: Store, request: CreateRequest, layers: list[_Layer], lease: Lease) -> list[_Layer]:
    def put(media_type: str, data: bytes) -> _Layer:
        info = store.put_bytes(data, lease=lease)
        return _Layer(Descriptor(media_type, info.digest, info.size), info.status)

    def without(mt: str) -> list[_Layer]:
        return [la for la in layers if la.desc.media_type != mt]

    if request.template:
        _validate_template(request.template)
        layers = without(MEDIA_TYPE_TEMPLATE) + [put(MEDIA_TYPE_TEMPLATE, request.template.encode())]
    if request.system:
        layers = without(MEDIA_TYPE_SYSTEM) + [put(MEDIA_TYPE_SYSTEM, request.system.encode())]
    for lic in request.license:
        if lic:
            layers = layers + [put(MEDIA_TYPE_LICENSE, lic.encode())]
    params: dict[str, Any] = dict(request.parameters)
    for la in layers:
        if la.desc.media_type == MEDIA_TYPE_PARAMS:
            try:
                existing = json.loads(store.read_blob(la.desc.digest, limit=1 << 20))
            except (ValueError, UnicodeDecodeError):
                raise InvalidFileError(f"parameters layer {la.desc.digest} is not valid JSON") from None
            if isinstance(existing, dict):
                for k, v in existing.items():
                    params.setdefault(k, v)
    if params:
        layers = without(MEDIA_TYPE_PARAMS) + [put(MEDIA_TYPE_PARAMS, params_bytes(params))]
    if request.messages:
        layers = without(MEDIA_TYPE_MESSAGES) + [put(MEDIA_TYPE_MESSAGES, messages_bytes(request.messages))]
    return layers
