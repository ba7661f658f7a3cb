"""Quantize a model: a tensor source (a GGUF file, or a converter's plan) → recipe → writer.

This reproduces what llama.cpp's `llama_model_quantize` writes, byte for byte:
- tensors in the loader's order (non-block tensors first, then `blk.N.*` by layer number, names
  compared bytewise), whatever the input order;
- metadata copied in input order with its types, except `general.quantization_version` and
  `general.file_type`, which are appended last (= 2 and the requested llama ftype), and the
  `split.*` keys, which are dropped;
- 32-byte alignment, zero padding after every tensor, `n_dims` with trailing 1s trimmed;
- per-tensor types from `quant.recipes` (llama_tensor_get_type's rules); tensors whose type
  does not change are copied byte for byte.

(The lead owns this module; `quant/` owns the codecs and the recipe rules.)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFValueType

from ggtool.errors import GgtoolError, NotFoundError, UsageError
from ggtool.events import ProgressCallback, ProgressEvent, no_progress
from ggtool.gguf_io import GGUFStreamWriter, KVEntry, TensorSpec, read_gguf
from ggtool.gguf_io.model import DEFAULT_ALIGNMENT, tensor_nbytes, type_name

QUANTIZATION_VERSION = 2  # GGML_QNT_VERSION
FLOAT_TYPES = {0, 1, 30}  # F32, F16, BF16: what llama-quantize takes without --allow-requantize


# -- the tensor source ------------------------------------------------------------------------
@dataclass
class SourceTensor:
    """One input tensor: its header facts and two ways to read it."""

    name: str
    ne: tuple[int, ...]
    ggml_type: int
    raw_chunks: Callable[[], Iterator[bytes | memoryview | np.ndarray]]  # bytes as stored
    f32_rows: Callable[[int], Iterator[np.ndarray]]  # float32 (rows, ne0) chunks of <= n rows
    release: Callable[[], None] = lambda: None  # drop cached pages once written

    @property
    def n_rows(self) -> int:
        return math.prod(self.ne[1:]) if len(self.ne) > 1 else 1


@dataclass
class TensorSource:
    """Metadata and tensors of a model to quantize (from a GGUF file or a converter)."""

    kv: list[KVEntry]
    tensors: list[SourceTensor]
    description: str = ""
    close: Callable[[], None] = lambda: None

    def get(self, key: str, default: Any = None) -> Any:
        for e in self.kv:
            if e.key == key:
                return e.python_value()
        return default


def gguf_source(path: Path) -> TensorSource:
    """A GGUF file as a tensor source (memory-mapped; pages released after each tensor)."""
    from quant import dequantize

    g = read_gguf(path)

    def make(t: Any) -> SourceTensor:
        def raw() -> Iterator[memoryview]:
            yield g.tensor_bytes(t)

        def rows(n: int) -> Iterator[np.ndarray]:
            ne0 = t.ne[0]
            data = g.tensor_bytes(t)
            row_bytes = t.nbytes // max(1, math.prod(t.ne[1:]) if len(t.ne) > 1 else 1)
            total = math.prod(t.ne[1:]) if len(t.ne) > 1 else 1
            for r in range(0, total, n):
                k = min(n, total - r)
                piece = data[r * row_bytes : (r + k) * row_bytes]
                yield dequantize(piece, t.ggml_type, (k, ne0))

        return SourceTensor(t.name, t.ne, t.ggml_type, raw, rows, lambda: g.release_pages(t))

    return TensorSource(list(g.kv.values()), [make(t) for t in g.tensors], str(path), g.close)


def plan_source(plan: Any) -> TensorSource:
    """A converter's plan (`converters.plan.ConversionPlan`, made for --outtype f32) as a
    tensor source: every tensor reads as the float32 values `convert --outtype f32` would
    store, so `convert --quantize T` equals `convert --outtype f32` then `quantize T`."""
    kv = [KVEntry(m.key, m.vtype, m.value, m.subtype) for m in plan.metadata]

    def make(tp: Any) -> SourceTensor:
        def rows(n: int) -> Iterator[np.ndarray]:
            max_bytes = max(1, n) * tp.ne[0] * 4
            for chunk in tp.chunks(max_bytes):
                yield np.ascontiguousarray(chunk, dtype=np.float32).reshape(-1, tp.ne[0])

        def raw() -> Iterator[np.ndarray]:
            yield from rows(max(1, (1 << 24) // max(1, tp.ne[0] * 4)))

        return SourceTensor(tp.name, tuple(tp.ne), 0, raw, rows)  # 0 = F32

    return TensorSource(kv, [make(t) for t in plan.tensors], plan.hf_architecture, plan.close)


# -- order and metadata, as llama-quantize writes them ----------------------------------------
def trim_dims(ne: tuple[int, ...]) -> tuple[int, ...]:
    """ggml_n_dims: trailing 1-sized dimensions are dropped (at least one remains)."""
    dims = list(ne)
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    return tuple(dims)


def output_metadata(kv: Sequence[KVEntry], ftype_id: int) -> list[KVEntry]:
    """Input KV in order, minus split keys; quantization_version then file_type appended."""
    drop = {"general.quantization_version", "general.file_type", "split.no", "split.count",
            "split.tensors.count"}
    out = [e for e in kv if e.key not in drop]
    out.append(KVEntry("general.quantization_version", GGUFValueType.UINT32, QUANTIZATION_VERSION))
    out.append(KVEntry("general.file_type", GGUFValueType.UINT32, int(ftype_id)))
    return out


# -- the plan ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedTensor:
    name: str
    ne: tuple[int, ...]
    input_type: int
    output_type: int

    @property
    def input_bytes(self) -> int:
        return tensor_nbytes(self.input_type, self.ne)

    @property
    def output_bytes(self) -> int:
        return tensor_nbytes(self.output_type, self.ne)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.ne), "input_type": type_name(self.input_type),
                "type": type_name(self.output_type), "bytes": self.output_bytes}


@dataclass
class QuantizeOptions:
    file_type: str
    output_tensor_type: str | None = None
    token_embedding_type: str | None = None
    pure: bool = False
    allow_requantize: bool = False
    threads: int | None = None


@dataclass
class QuantizePlan:
    file_type: str
    ftype_id: int
    tensors: list[PlannedTensor]
    kv: list[KVEntry] = field(default_factory=list)

    @property
    def output_size(self) -> int:
        from ggtool.gguf_io.writer import build_header

        header, _ = build_header(self.kv, [TensorSpec(t.name, trim_dims(t.ne), t.output_type)
                                           for t in self.tensors])
        return len(header) + sum(t.output_bytes + (-t.output_bytes % DEFAULT_ALIGNMENT)
                                 for t in self.tensors)

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[type_name(t.output_type)] = counts.get(type_name(t.output_type), 0) + 1
        return {"file_type": self.file_type, "tensors": len(self.tensors), "tensor_types": counts,
                "size": self.output_size}


def model_hparams(source: TensorSource) -> Any:
    """The hyper-parameters llama_tensor_get_type looks at, from the GGUF metadata."""
    from quant import recipes

    arch = str(source.get("general.architecture") or "")

    def num(key: str, default: int | None = 0) -> int | None:
        v = source.get(f"{arch}.{key}")
        if isinstance(v, list):  # per-layer arrays (e.g. head_count_kv): llama.cpp uses layer 0
            v = v[0] if v else None
        return default if v is None else int(v)

    return recipes.ModelHParams(
        arch=arch,
        n_layer=num("block_count") or 0,
        n_head=num("attention.head_count") or 0,
        n_head_kv=num("attention.head_count_kv", None),
        n_expert=num("expert_count") or 0,
        n_layer_nextn=num("nextn_predict_layers") or 0,
    )


def _ggml_type_option(value: str | None, what: str) -> Any:
    if value is None:
        return None
    from quant import GGMLType

    try:
        return GGMLType[value.strip().upper()]
    except KeyError:
        raise UsageError(f"unknown ggml type {value!r} for {what}",
                         hint="e.g. q8_0, q6_k, f16") from None


def plan_quantization(source: TensorSource, options: QuantizeOptions) -> QuantizePlan:
    """Decide every tensor's output type (no data is read)."""
    from quant import recipes

    ftype = recipes.parse_file_type(options.file_type)
    ordered = sorted(source.tensors, key=lambda t: recipes.llama_sort_key(t.name))
    for t in ordered:
        if t.ggml_type not in FLOAT_TYPES and not options.allow_requantize:
            raise UsageError(
                f"tensor {t.name!r} is already quantized ({type_name(t.ggml_type)})",
                hint="quantize from an F32/F16/BF16 model, or pass --allow-requantize "
                "(quality suffers)",
            )
    qopts = recipes.QuantOptions(
        output_tensor_type=_ggml_type_option(options.output_tensor_type, "--output-tensor-type"),
        token_embedding_type=_ggml_type_option(options.token_embedding_type, "--token-embedding-type"),
        pure=options.pure,
    )
    specs = [recipes.TensorSpec(t.name, tuple(t.ne), recipes.GGMLType(t.ggml_type)) for t in ordered]
    types = recipes.plan_tensor_types(specs, ftype, model_hparams(source), qopts)
    planned = [PlannedTensor(t.name, tuple(t.ne), int(t.ggml_type), int(q))
               for t, q in zip(ordered, types, strict=True)]
    return QuantizePlan(ftype.name, int(ftype.ftype), planned,
                        output_metadata(source.kv, int(ftype.ftype)))


# -- running it -------------------------------------------------------------------------------
@dataclass
class QuantizeResult:
    path: Path
    sha256: str
    size: int
    file_type: str
    tensor_types: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"status": "success", "path": str(self.path), "sha256": self.sha256,
                "size": self.size, "file_type": self.file_type, "tensor_types": self.tensor_types}


def _chunk_rows(ne0: int) -> int:
    from quant import CHUNK_VALUES

    return max(1, CHUNK_VALUES // max(1, ne0))


def write_quantized(
    source: TensorSource,
    plan: QuantizePlan,
    output: Path,
    *,
    overwrite: bool = False,
    threads: int | None = None,
    progress: ProgressCallback = no_progress,
) -> QuantizeResult:
    """Stream every tensor through the codec into `output` (atomically)."""
    from quant import iter_quantize

    by_name = {t.name: t for t in source.tensors}
    specs = [TensorSpec(t.name, trim_dims(t.ne), t.output_type) for t in plan.tensors]
    total = sum(t.output_bytes for t in plan.tensors)
    done = 0
    status = f"quantizing to {plan.file_type}"
    progress(ProgressEvent(status, total=total, completed=0))
    with GGUFStreamWriter(output, plan.kv, specs, overwrite=overwrite) as w:
        for t in plan.tensors:
            src = by_name[t.name]
            if t.output_type == t.input_type:
                w.write_tensor(t.name, src.raw_chunks())
            else:
                rows = src.f32_rows(_chunk_rows(t.ne[0]))
                w.write_tensor(t.name, iter_quantize(rows, t.output_type, threads=threads,
                                                     name=t.name))
            src.release()
            done += t.output_bytes
            progress(ProgressEvent(status, total=total, completed=done))
    from ggtool.convert import sha256_file

    sha, size = sha256_file(output), output.stat().st_size
    progress(ProgressEvent("success"))
    return QuantizeResult(output, sha, size, plan.file_type, plan.summary()["tensor_types"])


def default_output_path(input_path: Path, file_type: str) -> Path:
    """`<input stem>-<TYPE>.gguf` beside the input (llama-quantize also writes beside it)."""
    stem = input_path.name.removesuffix(".gguf")
    for suffix in ("-F32", "-F16", "-BF16", "-f32", "-f16", "-bf16"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return input_path.with_name(f"{stem}-{file_type.upper()}.gguf")


def quantize_file(
    input_path: str | os.PathLike[str],
    file_type: str,
    output: str | os.PathLike[str] | None = None,
    *,
    options: QuantizeOptions | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: ProgressCallback = no_progress,
) -> QuantizeResult | QuantizePlan:
    """`ggtool quantize FILE TYPE`: returns the plan with dry_run, else the written result."""
    inp = Path(input_path)
    if not inp.exists():
        raise NotFoundError(f"{inp}: no such file")
    opts = options or QuantizeOptions(file_type)
    opts.file_type = file_type
    source = gguf_source(inp)
    try:
        plan = plan_quantization(source, opts)
        if dry_run:
            return plan
        out = Path(output) if output is not None else default_output_path(inp, plan.file_type)
        if out.resolve() == inp.resolve():
            raise UsageError("the output would overwrite the input", hint="choose another -o")
        if out.exists() and not overwrite:
            raise GgtoolError(f"{out} already exists", hint="pass --force to overwrite it")
        from ggtool.convert import check_free_space

        if not out.parent.is_dir():
            raise NotFoundError(f"{out.parent}: no such folder")
        check_free_space(out, plan.output_size)
        return write_quantized(source, plan, out, overwrite=overwrite, threads=opts.threads,
                               progress=progress)
    finally:
        source.close()
