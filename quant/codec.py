"""quantize / dequantize: input checks, row chunking, and the choice of implementation.

Rows are processed in chunks of at most `CHUNK_VALUES` values, so the temporaries of a
call stay bounded whatever the tensor size; `iter_quantize` streams a row-chunk iterator
into bytes pieces so not even the output has to be in memory at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal

import numpy as np

from . import kquants, legacy
from ._numeric import bf16_bits_to_fp32, fp16_bits_to_fp32, fp32_to_bf16_bits, fp32_to_fp16_bits
from .errors import InvalidDataError, NonFiniteError, QuantError, ShapeError
from .formats import GGMLType, TypeTraits, as_type, require_supported, traits

Backend = Literal["auto", "numba", "numpy"]

# Values per work unit: 16 MiB of float32 input, split over the threads by the numba path.
CHUNK_VALUES = 1 << 22
NUMPY_CHUNK_VALUES = 1 << 20  # the NumPy K-quants keep ~20 temporaries of the piece's size

_Q = GGMLType
NUMPY_QUANTIZE: dict[GGMLType, Callable[[np.ndarray], np.ndarray]] = {
    _Q.Q4_0: legacy.quantize_q4_0,
    _Q.Q4_1: legacy.quantize_q4_1,
    _Q.Q5_0: legacy.quantize_q5_0,
    _Q.Q5_1: legacy.quantize_q5_1,
    _Q.Q8_0: legacy.quantize_q8_0,
    _Q.Q2_K: kquants.quantize_q2_k,
    _Q.Q3_K: kquants.quantize_q3_k,
    _Q.Q4_K: kquants.quantize_q4_k,
    _Q.Q5_K: kquants.quantize_q5_k,
    _Q.Q6_K: kquants.quantize_q6_k,
}
NUMPY_DEQUANTIZE: dict[GGMLType, Callable[[np.ndarray], np.ndarray]] = {
    _Q.Q4_0: legacy.dequantize_q4_0,
    _Q.Q4_1: legacy.dequantize_q4_1,
    _Q.Q5_0: legacy.dequantize_q5_0,
    _Q.Q5_1: legacy.dequantize_q5_1,
    _Q.Q8_0: legacy.dequantize_q8_0,
    _Q.Q2_K: kquants.dequantize_q2_k,
    _Q.Q3_K: kquants.dequantize_q3_k,
    _Q.Q4_K: kquants.dequantize_q4_k,
    _Q.Q5_K: kquants.dequantize_q5_k,
    _Q.Q6_K: kquants.dequantize_q6_k,
}
# byte offsets of the fp16 scale fields ggml_validate_row_data checks, per block
_SCALE_FIELDS: dict[GGMLType, tuple[int, ...]] = {
    _Q.Q4_0: (0,),
    _Q.Q4_1: (0, 2),
    _Q.Q5_0: (0,),
    _Q.Q5_1: (0, 2),
    _Q.Q8_0: (0,),
    _Q.Q2_K: (80, 82),
    _Q.Q3_K: (108,),
    _Q.Q4_K: (0, 2),
    _Q.Q5_K: (0, 2),
    _Q.Q6_K: (208,),
}


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


_fast_state: dict[str, object] = {}


def fast_available() -> bool:
    """Whether the numba kernels import (numba installed and working)."""
    if "mod" not in _fast_state:
        try:
            from . import _fast

            _fast_state["mod"] = _fast
        except ImportError as e:  # pragma: no cover - numba is a dependency
            _fast_state["mod"] = None
            _fast_state["error"] = e
    return _fast_state["mod"] is not None


def _resolve_backend(backend: Backend) -> str:
    if backend == "numpy":
        return "numpy"
    if fast_available():
        return "numba"
    if backend == "numba":
        raise QuantError(f"the numba fast path is unavailable: {_fast_state.get('error')}")
    return "numpy"


def _as_rows(array: np.ndarray, tr: TypeTraits) -> np.ndarray:
    """Any array whose last axis is the row -> 2-D (rows, ne0), dtype unchanged (converted
    to float32 piece by piece later, so a float16 tensor never exists whole as float32)."""
    a = np.asarray(array)
    if a.ndim == 0:
        raise ShapeError("cannot quantize a 0-d array: give rows (last axis = row)")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise QuantError(f"cannot quantize an array of dtype {a.dtype}")
    ne0 = a.shape[-1]
    if ne0 % tr.block_size:
        raise ShapeError(
            f"row length {ne0} is not a multiple of the {tr.type.name} block size {tr.block_size}"
        )
    if ne0 == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return a.reshape(-1, ne0)


def _check_finite(x: np.ndarray, name: str | None) -> None:
    ok = np.isfinite(x)
    if not ok.all():
        raise NonFiniteError(name, int(x.size - np.count_nonzero(ok)))


def _encode(x: np.ndarray, t: GGMLType, threads: int, backend: str) -> bytes:
    """Encode a 2-D float32 chunk of rows."""
    if t == GGMLType.F32:
        return x.tobytes()
    if backend == "numba" and (sys.byteorder == "little" or t not in (GGMLType.F16, GGMLType.BF16)):
        from . import _fast

        return _fast.quantize_blocks(x.reshape(-1), t, threads).tobytes()
    if t == GGMLType.F16:
        return fp32_to_fp16_bits(x).astype("<u2", copy=False).tobytes()
    if t == GGMLType.BF16:
        return fp32_to_bf16_bits(x).astype("<u2", copy=False).tobytes()
    tr = traits(t)
    blocks = x.reshape(-1, tr.block_size)
    return NUMPY_QUANTIZE[t](blocks).tobytes()


def _row_pieces(x: np.ndarray, values: int) -> Iterator[np.ndarray]:
    """C-contiguous little-endian float32 pieces of at most `values` values (>= 1 row)."""
    rows_per_piece = max(1, values // max(1, x.shape[1]))
    for r in range(0, x.shape[0], rows_per_piece):
        yield np.ascontiguousarray(x[r : r + rows_per_piece], dtype="<f4")


def iter_quantize(
    chunks: Iterable[np.ndarray],
    qtype: GGMLType | int | str,
    *,
    threads: int | None = None,
    name: str | None = None,
    check_finite: bool = True,
    backend: Backend = "auto",
) -> Iterator[bytes]:
    """Quantize a stream of row chunks (each 2-D, or N-D with the row as last axis).

    Yields the encoded bytes piece by piece, in order; their concatenation is the tensor's
    data exactly as ggml_quantize_chunk writes it. Raises NonFiniteError (with `name`)
    before encoding a chunk that holds NaN/Inf, unless check_finite is False.
    """
    t = require_supported(qtype)
    tr = traits(t)
    n_threads = default_threads() if threads is None else max(1, int(threads))
    impl = _resolve_backend(backend)
    for chunk in chunks:
        x = _as_rows(chunk, tr)
        for piece in _row_pieces(x, CHUNK_VALUES if impl == "numba" else NUMPY_CHUNK_VALUES):
            if check_finite:
                _check_finite(piece, name)
            yield _encode(piece, t, n_threads, impl)


def quantize(
    array: np.ndarray,
    qtype: GGMLType | int | str,
    *,
    threads: int | None = None,
    name: str | None = None,
    check_finite: bool = True,
    backend: Backend = "auto",
) -> bytes:
    """Encode `array` (last axis = row, ggml's ne0) as `qtype`; bytes equal to ggml's.

    `threads` defaults to the CPUs this process may use; it never changes the output.
    """
    return b"".join(
        iter_quantize(
            [array], qtype, threads=threads, name=name, check_finite=check_finite, backend=backend
        )
    )


def dequantize(
    data: bytes | bytearray | memoryview | np.ndarray,
    qtype: GGMLType | int | str,
    shape: Sequence[int],
) -> np.ndarray:
    """Decode ggml-encoded `data` into a float32 array of numpy `shape` (last axis = row)."""
    t = require_supported(qtype)
    tr = traits(t)
    shape = tuple(int(s) for s in shape)
    ne0 = shape[-1] if shape else 1
    if ne0 % tr.block_size:
        raise ShapeError(
            f"row length {ne0} is not a multiple of the {t.name} block size {tr.block_size}"
        )
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    raw = (
        np.frombuffer(data, dtype=np.uint8)
        if not isinstance(data, np.ndarray)
        else data.reshape(-1).view(np.uint8)
    )
    expected = n // tr.block_size * tr.type_size
    if raw.size != expected:
        raise ShapeError(
            f"{t.name} data for shape {shape} must be {expected} bytes, got {raw.size}"
        )
    if t == GGMLType.F32:
        out = raw.view("<f4").astype(np.float32)
    elif t == GGMLType.F16:
        out = fp16_bits_to_fp32(raw.view("<u2"))
    elif t == GGMLType.BF16:
        out = bf16_bits_to_fp32(raw.view("<u2"))
    else:
        blocks = raw.reshape(-1, tr.type_size)
        pieces = []
        step = max(1, CHUNK_VALUES // tr.block_size)
        for b in range(0, blocks.shape[0], step):
            pieces.append(NUMPY_DEQUANTIZE[t](blocks[b : b + step]).reshape(-1))
        out = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return out.astype(np.float32, copy=False).reshape(shape)


def validate(
    data: bytes | bytearray | memoryview | np.ndarray,
    qtype: GGMLType | int | str,
    *,
    name: str | None = None,
) -> None:
    """Raise InvalidDataError where ggml_validate_row_data would fail (NaN/Inf values or fp16 scales)."""
    t = as_type(qtype)
    raw = (
        np.frombuffer(data, dtype=np.uint8)
        if not isinstance(data, np.ndarray)
        else data.reshape(-1).view(np.uint8)
    )
    tr = traits(t)
    if raw.size % tr.type_size:
        raise InvalidDataError(f"{raw.size} bytes is not a whole number of {t.name} blocks")
    what = f"tensor '{name}'" if name else "data"
    if t in (GGMLType.F32, GGMLType.F16, GGMLType.F64):
        vals = raw.view({GGMLType.F32: "<f4", GGMLType.F16: "<f2", GGMLType.F64: "<f8"}[t])
        bad = int(vals.size - np.count_nonzero(np.isfinite(vals)))
    elif t == GGMLType.BF16:
        bad = int(np.count_nonzero((raw.view("<u2") & 0x7FFF) >= 0x7F80))
    elif t in _SCALE_FIELDS:
        blocks = raw.reshape(-1, tr.type_size)
        bad = 0
        for off in _SCALE_FIELDS[t]:
            h = np.ascontiguousarray(blocks[:, off : off + 2]).view("<u2")[:, 0]
            bad += int(np.count_nonzero((h & 0x7C00) == 0x7C00))
    else:
        return
    if bad:
        raise InvalidDataError(
            f"{what} has {bad} NaN/Inf value(s) or scale(s) after encoding as {t.name}"
        )
