"""Q4_0 Q4_1 Q5_0 Q5_1 Q8_0: ggml's `quantize_row_*_ref` in vectorized NumPy.

This is the readable specification the numba fast path is tested against. Each
`quantize_*` takes float32 blocks of shape (n, 32) and returns the encoded blocks as
uint8 of shape (n, type_size); each `dequantize_*` does the reverse. Operations are done
in float32, in the order the C code does them (layouts: reference §4.3-4.4).
"""

from __future__ import annotations

import numpy as np

from ._numeric import (
    F32,
    ONE,
    ZERO,
    f32,
    first_absmax,
    fp16_bits_to_fp32,
    fp32_to_fp16_bits,
    roundf,
    to_i8,
    to_u8,
)

QK = 32


def _u16_bytes(h: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(h, dtype="<u2").view(np.uint8).reshape(-1, 2)


def _inverse(d: np.ndarray) -> np.ndarray:
    """`id = d ? 1.0f/d : 0.0f`."""
    with np.errstate(divide="ignore", over="ignore"):
        return np.where(d != 0, ONE / np.where(d != 0, d, ONE), ZERO).astype(np.float32)


def _min_max(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`min=FLT_MAX, max=-FLT_MAX; if (v<min) min=v; if (v>max) max=v` (first occurrence wins)."""
    mn = np.full(x.shape[0], np.finfo(np.float32).max, dtype=np.float32)
    mx = -mn
    for j in range(x.shape[1]):
        v = x[:, j]
        mn = np.where(v < mn, v, mn)
        mx = np.where(v > mx, v, mx)
    return mn, mx


def _nibbles(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (lo & np.uint8(0x0F)) | ((hi & np.uint8(0x0F)) << np.uint8(4))


def _qh_bits(q: np.ndarray) -> np.ndarray:
    """Bit j of the little-endian u32 qh = bit 4 of q[j] (j < 32)."""
    bits = ((q >> np.uint8(4)) & np.uint8(1)).astype(np.uint32)
    qh = np.zeros(q.shape[0], dtype=np.uint32)
    for j in range(QK):
        qh |= bits[:, j] << np.uint32(j)
    return np.ascontiguousarray(qh, dtype="<u4").view(np.uint8).reshape(-1, 4)


def quantize_q4_0(x: np.ndarray) -> np.ndarray:
    x = f32(x)
    _, mx = first_absmax(x)
    d = (mx / F32(-8)).astype(np.float32)
    idv = _inverse(d)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        # MIN(15, (int8_t)(x*id + 8.5f)) stored in a uint8_t
        q = np.minimum(np.int8(15), to_i8(x * idv + F32(8.5))).astype(np.uint8)
    return np.concatenate(
        [_u16_bytes(fp32_to_fp16_bits(d)), _nibbles(q[:, :16], q[:, 16:])], axis=1
    )


def quantize_q4_1(x: np.ndarray) -> np.ndarray:
    x = f32(x)
    mn, mx = _min_max(x)
    d = ((mx - mn) / F32(15)).astype(np.float32)
    idv = _inverse(d)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.minimum(np.int8(15), to_i8((x - mn[:, None]) * idv + F32(0.5))).astype(np.uint8)
    return np.concatenate(
        [
            _u16_bytes(fp32_to_fp16_bits(d)),
            _u16_bytes(fp32_to_fp16_bits(mn)),
            _nibbles(q[:, :16], q[:, 16:]),
        ],
        axis=1,
    )


def quantize_q5_0(x: np.ndarray) -> np.ndarray:
    x = f32(x)
    _, mx = first_absmax(x)
    d = (mx / F32(-16)).astype(np.float32)
    idv = _inverse(d)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.minimum(np.int8(31), to_i8(x * idv + F32(16.5))).astype(np.uint8)
    return np.concatenate(
        [_u16_bytes(fp32_to_fp16_bits(d)), _qh_bits(q), _nibbles(q[:, :16], q[:, 16:])], axis=1
    )


def quantize_q5_1(x: np.ndarray) -> np.ndarray:
    x = f32(x)
    mn, mx = _min_max(x)
    d = ((mx - mn) / F32(31)).astype(np.float32)
    idv = _inverse(d)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        q = to_u8((x - mn[:, None]) * idv + F32(0.5))  # (uint8_t)(...): no MIN() here
    return np.concatenate(
        [
            _u16_bytes(fp32_to_fp16_bits(d)),
            _u16_bytes(fp32_to_fp16_bits(mn)),
            _qh_bits(q),
            _nibbles(q[:, :16], q[:, 16:]),
        ],
        axis=1,
    )


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    x = f32(x)
    amax = np.zeros(x.shape[0], dtype=np.float32)
    for j in range(QK):  # amax = MAX(amax, fabsf(v))
        a = np.abs(x[:, j])
        amax = np.where(amax > a, amax, a)
    d = (amax / F32(127)).astype(np.float32)
    idv = _inverse(d)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        q = to_i8(roundf(x * idv)).view(np.uint8)
    return np.concatenate([_u16_bytes(fp32_to_fp16_bits(d)), q], axis=1)


# ---------------------------------------------------------------- dequantize (dequantize_row_*)


def _f16_at(b: np.ndarray, off: int) -> np.ndarray:
    return fp16_bits_to_fp32(np.ascontiguousarray(b[:, off : off + 2]).view("<u2")[:, 0])[:, None]


def _unnibble(qs: np.ndarray) -> np.ndarray:
    return np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=1)


def _unqh(qh: np.ndarray) -> np.ndarray:
    u = np.ascontiguousarray(qh).view("<u4")[:, 0:1]
    return (((u >> np.arange(32, dtype=np.uint32)) & np.uint32(1)) << np.uint32(4)).astype(np.uint8)


def dequantize_q4_0(b: np.ndarray) -> np.ndarray:
    d = _f16_at(b, 0)
    q = _unnibble(b[:, 2:18]).astype(np.int32) - 8
    return q.astype(np.float32) * d


def dequantize_q4_1(b: np.ndarray) -> np.ndarray:
    d, m = _f16_at(b, 0), _f16_at(b, 2)
    q = _unnibble(b[:, 4:20]).astype(np.float32)
    return q * d + m


def dequantize_q5_0(b: np.ndarray) -> np.ndarray:
    d = _f16_at(b, 0)
    q = (_unnibble(b[:, 6:22]) | _unqh(b[:, 2:6])).astype(np.int32) - 16
    return q.astype(np.float32) * d


def dequantize_q5_1(b: np.ndarray) -> np.ndarray:
    d, m = _f16_at(b, 0), _f16_at(b, 2)
    q = (_unnibble(b[:, 8:24]) | _unqh(b[:, 4:8])).astype(np.float32)
    return q * d + m


def dequantize_q8_0(b: np.ndarray) -> np.ndarray:
    d = _f16_at(b, 0)
    return b[:, 2:34].view(np.int8).astype(np.float32) * d
