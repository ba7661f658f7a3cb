# ruff: noqa: E741  (`l` etc. mirror the variable names of ggml-quants.c)
"""Q2_K Q3_K Q4_K Q5_K Q6_K: ggml's no-imatrix `quantize_row_*_ref` in vectorized NumPy.

The readable specification of the K-quants (the numba port in `_fast.py` must give the same
bytes). Work is vectorized across (sub-)blocks only: inside a block every sum is a
sequential float32 sum in C's order, every product is a separate float32 op (no fused
multiply-add), and comparisons that pick a winning candidate use exactly C's operands.
`quantize_*` takes float32 super-blocks (n, 256) and returns uint8 (n, type_size).
"""

from __future__ import annotations

import numpy as np

from ._numeric import (
    F32,
    GROUP_MAX_EPS,
    ONE,
    ZERO,
    f32,
    first_absmax,
    fp16_bits_to_fp32,
    nearest_int,
    pack_2bit,
    round_fp16,
    running_max_pos,
    unpack_2bit,
)

QK_K = 256


def _u16_bytes(h: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(h, dtype="<u2").view(np.uint8).reshape(-1, 2)


def _err_terms(scale, L, mn, x, w, use_mad: bool) -> np.ndarray:
    """w * f(scale*L + min - x), f = |.| or square; per element (summed by the caller in order)."""
    diff = (scale[:, None] * L + mn[:, None]) - x
    diff = np.abs(diff) if use_mad else diff * diff
    return w * diff


def _seq(terms: np.ndarray) -> np.ndarray:
    s = np.zeros(terms.shape[0], dtype=np.float32)
    for i in range(terms.shape[1]):
        s = s + terms[:, i]
    return s


def make_qkx2_quants(
    x: np.ndarray, w: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int, use_mad: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ggml `make_qkx2_quants` for G groups at once: x, w (G, n) -> (scale (G,), the_min (G,), L (G, n) uint8)."""
    n = x.shape[1]
    mn = x[:, 0].copy()
    mx = x[:, 0].copy()
    sum_w = w[:, 0].copy()
    sum_x = sum_w * x[:, 0]
    for i in range(1, n):
        xi = x[:, i]
        mn = np.where(xi < mn, xi, mn)
        mx = np.where(xi > mx, xi, mx)
        sum_w = sum_w + w[:, i]
        sum_x = sum_x + w[:, i] * xi
    mn = np.where(mn > ZERO, ZERO, mn)
    flat = mx == mn  # these groups return scale 0, L = 0, the_min = -min
    fnmax = F32(nmax)

    iscale = fnmax / (mx - mn)
    scale = ONE / iscale
    L = np.clip(nearest_int(iscale[:, None] * (x - mn[:, None])), 0, nmax).astype(np.float32)
    best = _seq(_err_terms(scale, L, mn, x, w, use_mad))

    for step in range(nstep + 1):
        iscale = ((F32(rmin) + F32(rdelta) * F32(step)) + fnmax) / (mx - mn)
        la = np.clip(nearest_int(iscale[:, None] * (x - mn[:, None])), 0, nmax).astype(np.float32)
        wl = w * la
        sum_l = _seq(wl)
        sum_l2 = _seq(wl * la)
        sum_xl = _seq(wl * x)
        D = sum_w * sum_l2 - sum_l * sum_l
        ok = D > ZERO
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
        pos = this_min > ZERO
        this_min = np.where(pos, ZERO, this_min)
        this_scale = np.where(pos, sum_xl / sum_l2, this_scale)
        cur = _seq(_err_terms(this_scale, la, this_min, x, w, use_mad))
        win = ok & (cur < best) & ~flat
        L = np.where(win[:, None], la, L)
        best = np.where(win, cur, best)
        scale = np.where(win, this_scale, scale)
        mn = np.where(win, this_min, mn)

    scale = np.where(flat, ZERO, scale)
    L = np.where(flat[:, None], ZERO, L)
    return scale.astype(np.float32), (-mn).astype(np.float32), L.astype(np.uint8)


def make_qx_quants_rmse1(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """ggml `make_qx_quants(n, nmax, x, L, rmse_type=1, qw=NULL)` for G groups: -> (scale, L uint8)."""
    amax, mx = first_absmax(x)
    zero = amax < GROUP_MAX_EPS
    w = x * x
    wx = w * x
    fnmax = F32(nmax)

    def attempt(iscale):
        l = np.clip(nearest_int(iscale[:, None] * x), -nmax, nmax - 1).astype(np.float32)
        return l, _seq(wx * l), _seq(w * l * l)

    iscale = F32(-nmax) / mx
    l, sumlx, suml2 = attempt(iscale)
    L = l + fnmax
    scale = np.where(suml2 != 0, sumlx / suml2, ZERO)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = -(fnmax + F32(0.1) * F32(step)) / mx
        l, sumlx, suml2 = attempt(iscale)
        win = (suml2 > ZERO) & (sumlx * sumlx > best * suml2)
        L = np.where(win[:, None], l + fnmax, L)
        scale = np.where(win, sumlx / suml2, scale)
        best = np.where(win, scale * sumlx, best)
    scale = np.where(zero, ZERO, scale)
    L = np.where(zero[:, None], ZERO, L)
    return scale.astype(np.float32), L.astype(np.uint8)


def make_q3_quants(x: np.ndarray, nmax: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """ggml `make_q3_quants(n, nmax, x, L, do_rmse=true)` for G groups: -> (scale, L int8)."""
    amax, mx = first_absmax(x)
    zero = amax < GROUP_MAX_EPS
    iscale = F32(-nmax) / mx
    L = np.clip(nearest_int(iscale[:, None] * x), -nmax, nmax - 1).astype(np.float32)
    w = x * x
    wx = w * x
    sumlx = _seq(wx * L)
    suml2 = _seq(w * L * L)
    # The C loop stops early when a pass changes nothing; such a pass is idempotent, so
    # running all 5 passes for every group gives the same result.
    for _ in range(5):
        for i in range(x.shape[1]):
            wi, wxi, xi, li = w[:, i], wx[:, i], x[:, i], L[:, i]
            slx = sumlx - wxi * li
            has = slx > ZERO
            sl2 = suml2 - wi * li * li
            new_l = np.clip(nearest_int(xi * sl2 / slx), -nmax, nmax - 1).astype(np.float32)
            changed = has & (new_l != li)
            slx = slx + wxi * new_l
            sl2 = sl2 + wi * new_l * new_l
            acc = changed & (sl2 > ZERO) & (slx * slx * suml2 > sumlx * sumlx * sl2)
            L[:, i] = np.where(acc, new_l, li)
            sumlx = np.where(acc, slx, sumlx)
            suml2 = np.where(acc, sl2, suml2)
    scale = np.where(suml2 > ZERO, sumlx / suml2, ZERO)
    L = L + F32(nmax)
    scale = np.where(zero, ZERO, scale)
    L = np.where(zero[:, None], ZERO, L)
    return scale.astype(np.float32), L.astype(np.int8)


def _requantize(L, x, dd, dm, lo: int, hi: int, offset: int = 0):
    """Final pass with the stored (fp16-rounded) scales: where dd != 0, L = clamp(nearest_int((x+dm)/dd)) + offset."""
    num = x if dm is None else x + dm[:, :, None]
    q = np.clip(nearest_int(num / dd[:, :, None]), lo, hi) + offset
    return np.where((dd != ZERO)[:, :, None], q, L)


def _k_scales(
    scales: np.ndarray, mins: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Q4_K/Q5_K: 6-bit sub-block scales and mins, packed into 12 bytes, and the fp16 d/dmin."""
    max_scale = running_max_pos(scales)
    max_min = running_max_pos(mins)
    with np.errstate(divide="ignore"):
        inv_scale = np.where(max_scale > ZERO, F32(63) / max_scale, ZERO)
        inv_min = np.where(max_min > ZERO, F32(63) / max_min, ZERO)
    # uint8_t ls = nearest_int(...); ls = MIN(63, ls)
    ls = np.minimum(63, nearest_int(inv_scale[:, None] * scales) & 0xFF).astype(np.uint8)
    lm = np.minimum(63, nearest_int(inv_min[:, None] * mins) & 0xFF).astype(np.uint8)
    packed = np.zeros((scales.shape[0], 12), dtype=np.uint8)
    packed[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    packed[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    packed[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    d_bits, d = round_fp16(max_scale / F32(63))
    dmin_bits, dmin = round_fp16(max_min / F32(63))
    return packed, ls, lm, np.stack([d_bits, dmin_bits], axis=1), np.stack([d, dmin], axis=1)


def _qkx_block(x: np.ndarray, nmax: int, rmin: float, nstep: int):
    """Shared Q4_K/Q5_K body up to the final L: returns (packed scales, d/dmin bits, L (n, 256))."""
    nb = x.shape[0]
    xg = x.reshape(nb * 8, 32)
    sum_x2 = _seq(xg * xg)
    av_x = np.sqrt(sum_x2 / F32(32))
    w = av_x[:, None] + np.abs(xg)
    scales, mins, L = make_qkx2_quants(xg, w, nmax, rmin, 0.1, nstep, False)
    packed, ls, lm, dbits, dvals = _k_scales(scales.reshape(nb, 8), mins.reshape(nb, 8))
    dd = dvals[:, 0:1] * ls.astype(np.float32)
    dm = dvals[:, 1:2] * lm.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        L = _requantize(
            L.reshape(nb, 8, 32).astype(np.int32), x.reshape(nb, 8, 32), dd, dm, 0, nmax
        )
    return packed, dbits, L.reshape(nb, 256).astype(np.uint8)


def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    x = f32(x)
    with np.errstate(all="ignore"):
        packed, dbits, L = _qkx_block(x, 15, -1.0, 20)
    Lr = L.reshape(-1, 4, 2, 32)
    qs = (Lr[:, :, 0] | (Lr[:, :, 1] << 4)).reshape(-1, 128)
    return np.concatenate([_u16_bytes(dbits[:, 0]), _u16_bytes(dbits[:, 1]), packed, qs], axis=1)


def quantize_q5_k(x: np.ndarray) -> np.ndarray:
    x = f32(x)
    with np.errstate(all="ignore"):
        packed, dbits, L = _qkx_block(x, 31, -0.5, 15)
    Lr = L.reshape(-1, 4, 2, 32)  # [n, k, half, l] -> value L[64k + 32*half + l]
    lo, hi = Lr[:, :, 0], Lr[:, :, 1]
    qs = ((lo & 15) | ((hi & 15) << 4)).reshape(-1, 128)
    qh = np.zeros((x.shape[0], 32), dtype=np.uint8)
    for k in range(4):
        qh |= ((lo[:, k] > 15).astype(np.uint8) << (2 * k)) | (
            (hi[:, k] > 15).astype(np.uint8) << (2 * k + 1)
        )
    return np.concatenate(
        [_u16_bytes(dbits[:, 0]), _u16_bytes(dbits[:, 1]), packed, qh, qs], axis=1
    )


def quantize_q2_k(x: np.ndarray) -> np.ndarray:
    x = f32(x)
    nb = x.shape[0]
    with np.errstate(all="ignore"):
        xg = x.reshape(nb * 16, 16)
        scales, mins, L = make_qkx2_quants(xg, np.abs(xg), 3, -0.5, 0.1, 15, True)
        scales, mins = scales.reshape(nb, 16), mins.reshape(nb, 16)
        max_scale = running_max_pos(scales)
        max_min = running_max_pos(mins)
        has_s, has_m = max_scale > ZERO, max_min > ZERO
        iscale = np.where(has_s, F32(15) / max_scale, ZERO)
        imin = np.where(has_m, F32(15) / max_min, ZERO)
        sc = np.where(has_s[:, None], nearest_int(iscale[:, None] * scales) & 0xFF, 0)
        sc = sc | np.where(has_m[:, None], (nearest_int(imin[:, None] * mins) << 4) & 0xFF, 0)
        sc = (sc & 0xFF).astype(np.uint8)
        d_bits, d = round_fp16(np.where(has_s, max_scale / F32(15), ZERO))
        m_bits, dmin = round_fp16(np.where(has_m, max_min / F32(15), ZERO))
        dd = d[:, None] * (sc & 0xF).astype(np.float32)
        dm = dmin[:, None] * (sc >> 4).astype(np.float32)
        L = _requantize(L.reshape(nb, 16, 16).astype(np.int32), x.reshape(nb, 16, 16), dd, dm, 0, 3)
    qs = pack_2bit(L.reshape(nb, 256))
    return np.concatenate([sc, qs, _u16_bytes(d_bits), _u16_bytes(m_bits)], axis=1)


def quantize_q3_k(x: np.ndarray) -> np.ndarray:
    x = f32(x)
    nb = x.shape[0]
    with np.errstate(all="ignore"):
        scales, L = make_q3_quants(x.reshape(nb * 16, 16), 4)
        scales = scales.reshape(nb, 16)
        _, max_scale = first_absmax(scales)
        has = max_scale != ZERO  # `if (max_scale)`: NaN counts as true
        iscale = (F32(-32) / max_scale).astype(np.float32)
        l = nearest_int(iscale[:, None] * scales).astype(np.int8)  # int8_t l = nearest_int(...)
        l = (np.clip(l, -32, 31) + 32).astype(np.uint8)
        l = np.where(has[:, None], l, np.uint8(0))  # else: scale bytes stay 0
        packed = np.zeros((nb, 12), dtype=np.uint8)
        packed[:, 0:8] = (l[:, 0:8] & 0xF) | ((l[:, 8:16] & 0xF) << 4)
        hi = l >> 4
        packed[:, 8:12] = hi[:, 0:4] | (hi[:, 4:8] << 2) | (hi[:, 8:12] << 4) | (hi[:, 12:16] << 6)
        d_bits, d = round_fp16(np.where(has, ONE / iscale, ZERO))
        sc = l.astype(np.int32) - 32  # the 6-bit value read back from the packed bytes
        dd = d[:, None] * sc.astype(np.float32)
        L = _requantize(
            L.reshape(nb, 16, 16).astype(np.int32), x.reshape(nb, 16, 16), dd, None, -4, 3, 4
        )
    L = L.reshape(nb, 256)
    high = L > 3
    hmask = np.zeros((nb, 32), dtype=np.uint8)
    for b in range(8):  # bit b of hmask[m] is the high bit of L[32*b + m]
        hmask |= high[:, 32 * b : 32 * (b + 1)].astype(np.uint8) << b
    L = np.where(high, L - 4, L)
    qs = pack_2bit(L)
    return np.concatenate([hmask, qs, packed, _u16_bytes(d_bits)], axis=1)


def quantize_q6_k(x: np.ndarray) -> np.ndarray:
    x = f32(x)
    nb = x.shape[0]
    with np.errstate(all="ignore"):
        scales, L = make_qx_quants_rmse1(x.reshape(nb * 16, 16), 32)
        scales = scales.reshape(nb, 16)
        max_abs, max_scale = first_absmax(scales)
        empty = max_abs < GROUP_MAX_EPS  # whole super-block stored as zeros
        iscale = (F32(-128) / max_scale).astype(np.float32)
        d_bits, d = round_fp16(ONE / iscale)
        sc = np.minimum(127, nearest_int(iscale[:, None] * scales)).astype(np.int8)
        dd = d[:, None] * sc.astype(np.float32)
        L = _requantize(
            L.reshape(nb, 16, 16).astype(np.int32), x.reshape(nb, 16, 16), dd, None, -32, 31, 32
        )
    L = L.reshape(nb, 2, 4, 32).astype(np.uint8)  # [n, half, quarter, l] -> L[128h + 32q + l]
    ql = np.concatenate(
        [
            (L[:, :, 0] & 15) | ((L[:, :, 2] & 15) << 4),
            (L[:, :, 1] & 15) | ((L[:, :, 3] & 15) << 4),
        ],
        axis=2,
    ).reshape(nb, 128)
    qh = (
        (L[:, :, 0] >> 4)
        | ((L[:, :, 1] >> 4) << 2)
        | ((L[:, :, 2] >> 4) << 4)
        | ((L[:, :, 3] >> 4) << 6)
    ).reshape(nb, 64)
    out = np.concatenate([ql, qh, sc.view(np.uint8), _u16_bytes(d_bits)], axis=1)
    out[empty] = 0
    return out


# ---------------------------------------------------------------- dequantize (dequantize_row_*)


def _f16(b: np.ndarray, off: int) -> np.ndarray:
    return fp16_bits_to_fp32(np.ascontiguousarray(b[:, off : off + 2]).view("<u2")[:, 0])


def _scale_min_k4(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`get_scale_min_k4` for j = 0..7: (n, 12) -> sc (n, 8), m (n, 8) as float32."""
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    m = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    return sc.astype(np.float32), m.astype(np.float32)


def dequantize_q2_k(b: np.ndarray) -> np.ndarray:
    sc = b[:, 0:16]
    q = unpack_2bit(b[:, 16:80]).astype(np.float32).reshape(-1, 16, 16)
    d, dmin = _f16(b, 80)[:, None], _f16(b, 82)[:, None]
    dl = d * (sc & 0xF).astype(np.float32)
    ml = dmin * (sc >> 4).astype(np.float32)
    return (dl[:, :, None] * q - ml[:, :, None]).reshape(-1, 256)


def dequantize_q3_k(b: np.ndarray) -> np.ndarray:
    hmask, qs, s = b[:, 0:32], b[:, 32:96], b[:, 96:108]
    d = _f16(b, 108)[:, None]
    lo = np.concatenate([s[:, 0:8] & 0xF, s[:, 0:8] >> 4], axis=1)
    hi = s[:, 8:12]
    hib = np.concatenate(
        [(hi >> (2 * k)) & 3 for k in range(4)], axis=1
    )  # j -> byte 8 + j%4, shift 2*(j/4)
    sc = (lo | (hib << 4)).astype(np.int32) - 32
    q = unpack_2bit(qs).astype(np.int32)
    high = np.concatenate([(hmask >> k) & 1 for k in range(8)], axis=1).astype(np.int32)
    q = q - np.where(high == 1, 0, 4)
    dl = d * sc.astype(np.float32)
    return (dl[:, :, None] * q.reshape(-1, 16, 16).astype(np.float32)).reshape(-1, 256)


def dequantize_q4_k(b: np.ndarray) -> np.ndarray:
    d, dmin = _f16(b, 0)[:, None], _f16(b, 2)[:, None]
    sc, m = _scale_min_k4(b[:, 4:16])
    qs = b[:, 16:144].reshape(-1, 4, 32)
    q = np.stack([qs & 0xF, qs >> 4], axis=2).reshape(-1, 8, 32).astype(np.float32)
    return ((d * sc)[:, :, None] * q - (dmin * m)[:, :, None]).reshape(-1, 256)


def dequantize_q5_k(b: np.ndarray) -> np.ndarray:
    d, dmin = _f16(b, 0)[:, None], _f16(b, 2)[:, None]
    sc, m = _scale_min_k4(b[:, 4:16])
    qh = b[:, 16:48]
    qs = b[:, 48:176].reshape(-1, 4, 32)
    lo = np.stack([qs & 0xF, qs >> 4], axis=2)  # (n, 4, 2, 32)
    hbit = np.stack(
        [np.stack([(qh >> (2 * k)) & 1, (qh >> (2 * k + 1)) & 1], axis=1) for k in range(4)], axis=1
    )
    q = (lo | (hbit << 4)).reshape(-1, 8, 32).astype(np.float32)
    return ((d * sc)[:, :, None] * q - (dmin * m)[:, :, None]).reshape(-1, 256)


def dequantize_q6_k(b: np.ndarray) -> np.ndarray:
    ql = b[:, 0:128].reshape(-1, 2, 64)
    qh = b[:, 128:192].reshape(-1, 2, 32)
    sc = b[:, 192:208].view(np.int8).astype(np.float32)
    d = _f16(b, 208)[:, None]
    q1 = (ql[:, :, 0:32] & 0xF) | (((qh >> 0) & 3) << 4)
    q2 = (ql[:, :, 32:64] & 0xF) | (((qh >> 2) & 3) << 4)
    q3 = (ql[:, :, 0:32] >> 4) | (((qh >> 4) & 3) << 4)
    q4 = (ql[:, :, 32:64] >> 4) | (((qh >> 6) & 3) << 4)
    q = np.stack([q1, q2, q3, q4], axis=2).astype(np.int32) - 32  # (n, 2, 4, 32)
    q = q.reshape(-1, 16, 16).astype(np.float32)
    return ((d * sc)[:, :, None] * q).reshape(-1, 256)
