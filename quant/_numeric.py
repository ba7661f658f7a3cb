"""Bit-exact NumPy versions of ggml's scalar primitives (ggml-impl.h, ggml-quants.c).

Everything here works on float32 arrays and returns what the C code computes on x86-64,
including its behaviour on NaN/Inf intermediates (which huge finite inputs can produce).
"""

from __future__ import annotations

import numpy as np

F32 = np.float32
ZERO = F32(0.0)
ONE = F32(1.0)
GROUP_MAX_EPS = F32(1e-15)
_MAGIC = F32(12582912.0)  # 1.5 * 2**23, the nearest_int trick
_INT_MIN = np.int32(-(2**31))


def f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def nearest_int(f: np.ndarray) -> np.ndarray:
    """ggml `nearest_int`: bits of (f + 12582912.f), low 23 bits, minus 2**22 (int32).

    Round-half-even for |f| <= 4194303; beyond that the same "garbage" as C (the assert
    is compiled out), which callers then clamp.
    """
    v = (f32(f) + _MAGIC).astype(np.float32, copy=False)
    return (v.view(np.int32) & np.int32(0x007FFFFF)) - np.int32(0x00400000)


def cvtt_i32(v: np.ndarray) -> np.ndarray:
    """C float -> int conversion as x86-64 does it (cvttss2si): truncation, INT_MIN if out of range/NaN."""
    v = f32(v)
    with np.errstate(invalid="ignore"):
        ok = (v >= F32(-2147483648.0)) & (v < F32(2147483648.0))
        r = np.where(ok, v, ZERO).astype(np.int32)
    return np.where(ok, r, _INT_MIN)


def to_i8(v: np.ndarray) -> np.ndarray:
    """`(int8_t)(float)`: gcc converts to a 32-bit int and keeps the low byte."""
    return cvtt_i32(v).astype(np.int8)


def to_u8(v: np.ndarray) -> np.ndarray:
    """`(uint8_t)(float)`, same as `to_i8` but unsigned."""
    return cvtt_i32(v).astype(np.uint8)


def roundf(v: np.ndarray) -> np.ndarray:
    """C `roundf`: half away from zero, exact for every float32 (no `floor(x + 0.5)` error)."""
    v = f32(v)
    a = np.abs(v)
    fl = np.floor(a)
    r = fl + (a - fl >= F32(0.5)).astype(np.float32)
    return np.copysign(r, v)


def fp32_to_fp16_bits(x: np.ndarray) -> np.ndarray:
    """`ggml_compute_fp32_to_fp16` as uint16: RNE incl. subnormals, overflow -> inf, NaN -> sign|0x7E00."""
    x = f32(x)
    with np.errstate(over="ignore", invalid="ignore"):
        h = x.astype(np.float16).view(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        h = h.copy()
        sign = (x.view(np.uint32)[nan] >> np.uint32(16)).astype(np.uint16) & np.uint16(0x8000)
        h[nan] = sign | np.uint16(0x7E00)
    return h


def fp16_bits_to_fp32(h: np.ndarray) -> np.ndarray:
    """`GGML_FP16_TO_FP32` (exact)."""
    return np.asarray(h, dtype=np.uint16).view(np.float16).astype(np.float32)


def round_fp16(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fp16 bits, the float32 value read back from them) — the quantizers re-read stored scales."""
    h = fp32_to_fp16_bits(x)
    return h, fp16_bits_to_fp32(h)


def fp32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """`ggml_compute_fp32_to_bf16`: round to nearest even; NaN -> quiet NaN keeping the top bits."""
    u = f32(x).view(np.uint32)
    # uint32 wrap-around as in C; it only happens for negative NaNs, which are replaced below
    r = ((u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)).astype(
        np.uint16
    )
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    if nan.any():
        r[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(64)).astype(np.uint16)
    return r


def bf16_bits_to_fp32(h: np.ndarray) -> np.ndarray:
    return (np.asarray(h, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def first_absmax(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: `amax=0,max=0; for v: if (|v| > amax) {amax=|v|; max=v}` — the first maximum,
    and +0.0 (not -0.0) for an all-zero row. Returns (amax, max) as float32 vectors."""
    amax = np.zeros(x.shape[0], dtype=np.float32)
    mx = np.zeros(x.shape[0], dtype=np.float32)
    ax = np.abs(x)
    for j in range(x.shape[1]):
        upd = ax[:, j] > amax
        amax = np.where(upd, ax[:, j], amax)
        mx = np.where(upd, x[:, j], mx)
    return amax, mx


def running_max_pos(v: np.ndarray) -> np.ndarray:
    """Per row: `m = 0; for s: if (s > m) m = s` (starts at +0.0, strict)."""
    m = np.zeros(v.shape[0], dtype=np.float32)
    for j in range(v.shape[1]):
        m = np.where(v[:, j] > m, v[:, j], m)
    return m


def seq_sum(terms: np.ndarray) -> np.ndarray:
    """Left-to-right float32 sum along the last axis (C's `s += t`), never pairwise."""
    s = np.zeros(terms.shape[:-1], dtype=np.float32)
    for j in range(terms.shape[-1]):
        s = s + terms[..., j]
    return s


def pack_2bit(L: np.ndarray) -> np.ndarray:
    """(n, 256) values 0..3 -> (n, 64): `qs[j/4+l] = L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6`."""
    L = L.astype(np.uint8).reshape(-1, 2, 4, 32)
    q = L[:, :, 0] | (L[:, :, 1] << 2) | (L[:, :, 2] << 4) | (L[:, :, 3] << 6)
    return q.reshape(-1, 64)


def unpack_2bit(q: np.ndarray) -> np.ndarray:
    """Inverse of `pack_2bit`: (n, 64) -> (n, 256) values 0..3."""
    q = q.reshape(-1, 2, 1, 32)
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    return ((q >> shifts) & 3).reshape(-1, 256)
