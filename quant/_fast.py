# ruff: noqa: E741  (`l` etc. mirror the variable names of ggml-quants.c)
"""numba port of ggml's reference quantizers: the same scalar loops as ggml-quants.c.

Why numba: the K-quant searches (16-21 candidate scales per sub-block, each a sequential
float32 sum) are branchy scalar code that NumPy can only vectorize across blocks, at 12-30x
C's time. Compiled scalar loops reach C's speed and stay bit-exact as long as every
operation is a float32 IEEE op in source order: `fastmath=False` (no reassociation, no
fused multiply-add), every constant and int->float conversion spelled as `np.float32`
(numba would otherwise widen to float64). The NumPy modules `legacy`/`kquants` are the
specification; tests check this file against them and against ggml itself.

Kernels take a flat float32 array of whole blocks and a flat uint8 output; `quantize_blocks`
splits the blocks over threads (`nogil=True`), which cannot change the bytes since blocks
are independent.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._cache import configure_numba_cache
from .formats import GGMLType, traits

configure_numba_cache()

from llvmlite import ir  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

F = np.float32
Z = F(0.0)
ONE = F(1.0)
EPS = F(1e-15)
MAGIC = F(12582912.0)
TO_INF = F(2.0**112)
TO_ZERO = F(2.0**-110)
TWO_M24 = F(2.0**-24)
F8_5 = F(8.5)
F16_5 = F(16.5)
HALF = F(0.5)
TENTH = F(0.1)
_JIT = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}
_INLINE = {**_JIT, "inline": "always"}  # helpers: no call, no refcounting of array args


@intrinsic
def _bits(typingctx, x):
    """float32 -> its int32 bit pattern (a register move)."""
    if not (isinstance(x, types.Float) and x.bitwidth == 32):
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _from_bits(typingctx, i):
    """low 32 bits of an integer -> float32."""
    if not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        v = args[0]
        if i.bitwidth > 32:
            v = builder.trunc(v, ir.IntType(32))
        elif i.bitwidth < 32:
            v = builder.zext(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())

    return types.float32(i), codegen


# ------------------------------------------------------------------ primitives


@njit(**_JIT)
def nearest_int(f):
    return (np.int64(_bits(f + MAGIC)) & 0x7FFFFF) - 0x400000


@njit(**_JIT)
def fp16_bits(f):
    """ggml_compute_fp32_to_fp16, bit for bit."""
    base = (abs(f) * TO_INF) * TO_ZERO
    w = np.int64(_bits(f)) & 0xFFFFFFFF
    shl1_w = (w + w) & 0xFFFFFFFF
    sign = w & 0x80000000
    bias = shl1_w & 0xFF000000
    if bias < 0x71000000:
        bias = 0x71000000
    base = _from_bits((bias >> 1) + 0x07800000) + base
    bits = np.int64(_bits(base)) & 0xFFFFFFFF
    nonsign = ((bits >> 13) & 0x7C00) + (bits & 0x0FFF)
    if shl1_w > 0xFF000000:
        nonsign = 0x7E00
    return (sign >> 16) | nonsign


@njit(**_JIT)
def fp16_value(h):
    """GGML_FP16_TO_FP32 (exact)."""
    s = (h >> 15) & 1
    e = (h >> 10) & 0x1F
    m = h & 0x3FF
    if e == 0:
        v = F(m) * TWO_M24
        return -v if s else v
    if e == 31:
        return _from_bits((s << 31) | 0x7F800000 | (m << 13))
    return _from_bits((s << 31) | ((e + 112) << 23) | (m << 13))


@njit(**_JIT)
def cvtt_i32(v):
    """C float->int on x86-64 (cvttss2si): truncate; INT_MIN when NaN or out of range."""
    if v >= -2147483648.0 and v < 2147483648.0:
        return np.int64(int(v))
    return np.int64(-2147483648)


@njit(**_JIT)
def to_i8(v):
    r = cvtt_i32(v) & 0xFF
    return r - 256 if r >= 128 else r


@njit(**_JIT)
def roundf(v):
    """C roundf (half away from zero)."""
    a = abs(v)
    if not (a < F(8388608.0)):  # already integral, or inf/NaN
        return v
    t = F(int(a))
    if a - t >= HALF:
        t = t + ONE
    return -t if v < Z else t


@njit(**_JIT)
def put_f16(out, o, h):
    out[o] = h & 0xFF
    out[o + 1] = (h >> 8) & 0xFF


# ------------------------------------------------------------------ 32-value block types


@njit(**_JIT)
def q4_0(x, out):
    for i in range(x.size // 32):
        xb = i * 32
        ob = i * 18
        amax = Z
        mx = Z
        for j in range(32):
            v = x[xb + j]
            if amax < abs(v):
                amax = abs(v)
                mx = v
        d = mx / F(-8.0)
        idv = ONE / d if d != Z else Z
        put_f16(out, ob, fp16_bits(d))
        for j in range(16):
            xi0 = min(15, to_i8(x[xb + j] * idv + F8_5)) & 0xFF
            xi1 = min(15, to_i8(x[xb + 16 + j] * idv + F8_5)) & 0xFF
            out[ob + 2 + j] = (xi0 | (xi1 << 4)) & 0xFF


@njit(**_JIT)
def q4_1(x, out):
    for i in range(x.size // 32):
        xb = i * 32
        ob = i * 20
        mn = F(3.4028234663852886e38)
        mx = -mn
        for j in range(32):
            v = x[xb + j]
            if v < mn:
                mn = v
            if v > mx:
                mx = v
        d = (mx - mn) / F(15.0)
        idv = ONE / d if d != Z else Z
        put_f16(out, ob, fp16_bits(d))
        put_f16(out, ob + 2, fp16_bits(mn))
        for j in range(16):
            xi0 = min(15, to_i8((x[xb + j] - mn) * idv + HALF)) & 0xFF
            xi1 = min(15, to_i8((x[xb + 16 + j] - mn) * idv + HALF)) & 0xFF
            out[ob + 4 + j] = (xi0 | (xi1 << 4)) & 0xFF


@njit(**_JIT)
def q5_0(x, out):
    for i in range(x.size // 32):
        xb = i * 32
        ob = i * 22
        amax = Z
        mx = Z
        for j in range(32):
            v = x[xb + j]
            if amax < abs(v):
                amax = abs(v)
                mx = v
        d = mx / F(-16.0)
        idv = ONE / d if d != Z else Z
        put_f16(out, ob, fp16_bits(d))
        qh = 0
        for j in range(16):
            xi0 = min(31, to_i8(x[xb + j] * idv + F16_5)) & 0xFF
            xi1 = min(31, to_i8(x[xb + 16 + j] * idv + F16_5)) & 0xFF
            out[ob + 6 + j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4)
            qh |= ((xi0 & 0x10) >> 4) << j
            qh |= ((xi1 & 0x10) >> 4) << (j + 16)
        for k in range(4):
            out[ob + 2 + k] = (qh >> (8 * k)) & 0xFF


@njit(**_JIT)
def q5_1(x, out):
    for i in range(x.size // 32):
        xb = i * 32
        ob = i * 24
        mn = F(3.4028234663852886e38)
        mx = -mn
        for j in range(32):
            v = x[xb + j]
            if v < mn:
                mn = v
            if v > mx:
                mx = v
        d = (mx - mn) / F(31.0)
        idv = ONE / d if d != Z else Z
        put_f16(out, ob, fp16_bits(d))
        put_f16(out, ob + 2, fp16_bits(mn))
        qh = 0
        for j in range(16):
            xi0 = cvtt_i32((x[xb + j] - mn) * idv + HALF) & 0xFF
            xi1 = cvtt_i32((x[xb + 16 + j] - mn) * idv + HALF) & 0xFF
            out[ob + 8 + j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4)
            qh |= ((xi0 & 0x10) >> 4) << j
            qh |= ((xi1 & 0x10) >> 4) << (j + 16)
        for k in range(4):
            out[ob + 4 + k] = (qh >> (8 * k)) & 0xFF


@njit(**_JIT)
def q8_0(x, out):
    for i in range(x.size // 32):
        xb = i * 32
        ob = i * 34
        amax = Z
        for j in range(32):
            a = abs(x[xb + j])
            amax = amax if amax > a else a
        d = amax / F(127.0)
        idv = ONE / d if d != Z else Z
        put_f16(out, ob, fp16_bits(d))
        for j in range(32):
            out[ob + 2 + j] = to_i8(roundf(x[xb + j] * idv)) & 0xFF


# ------------------------------------------------------------------ K-quant helpers


# The candidate searches are split into an element-wise loop (levels and the products to be
# summed, which LLVM vectorizes: each lane is still one IEEE float32 op, as in C) and a
# sequential loop that adds the products in C's order. Same operands, same order of the
# sums, so the same bits; about twice as fast as one fused scalar loop.


@njit(**_JIT)
def scratch():
    """Work arrays of one kernel call: xs, w, fbest, fa, pa, pb, pc, pe (32 float32 each)."""
    return (
        np.zeros(32, np.float32),
        np.zeros(32, np.float32),
        np.zeros(32, np.float32),
        np.zeros(32, np.float32),
        np.zeros(32, np.float32),
        np.zeros(32, np.float32),
        np.zeros(32, np.float32),
        np.zeros(32, np.float32),
    )


@njit(**_INLINE)
def _qkx2_levels_n(n, nmax, xs, w, mn, iscale, fa, pa, pb, pc):
    for i in range(n):
        fl = F(max(0, min(nmax, nearest_int(iscale * (xs[i] - mn)))))
        fa[i] = fl
        a = w[i] * fl  # w*l
        pa[i] = a
        pb[i] = a * fl  # w*l*l
        pc[i] = a * xs[i]  # w*l*x


@njit(**_INLINE)
def _qkx2_levels(n, nmax, xs, w, mn, iscale, fa, pa, pb, pc):
    # constant trip counts for the two sizes used (16: Q2_K, 32: Q4_K/Q5_K) let LLVM
    # vectorize without remainder loops
    if n == 16:
        _qkx2_levels_n(16, nmax, xs, w, mn, iscale, fa, pa, pb, pc)
    elif n == 32:
        _qkx2_levels_n(32, nmax, xs, w, mn, iscale, fa, pa, pb, pc)
    else:
        _qkx2_levels_n(n, nmax, xs, w, mn, iscale, fa, pa, pb, pc)


@njit(**_INLINE)
def _qkx2_error_n(n, xs, w, fl, scale, mn, use_mad, pe):
    for i in range(n):
        diff = scale * fl[i] + mn - xs[i]
        pe[i] = w[i] * (abs(diff) if use_mad else diff * diff)
    err = Z
    for i in range(n):
        err += pe[i]
    return err


@njit(**_INLINE)
def _qkx2_error(n, xs, w, fl, scale, mn, use_mad, pe):
    """sum_i w * f(scale*L + min - x), f = |.| (use_mad) or square, summed in order."""
    if n == 16:
        return _qkx2_error_n(16, xs, w, fl, scale, mn, use_mad, pe)
    if n == 32:
        return _qkx2_error_n(32, xs, w, fl, scale, mn, use_mad, pe)
    return _qkx2_error_n(n, xs, w, fl, scale, mn, use_mad, pe)


@njit(**_INLINE)
def _make_qkx2_fused(n, nmax, x, xo, w, L, lo, fa, rmin, rdelta, nstep, use_mad):
    """make_qkx2_quants as one scalar loop per candidate: faster than the split form for
    n = 16 (Q2_K), where the vector loops are too short to pay for their stores."""
    mn = x[xo]
    mx = x[xo]
    sum_w = w[0]
    sum_x = sum_w * x[xo]
    for i in range(1, n):
        xi = x[xo + i]
        if xi < mn:
            mn = xi
        if xi > mx:
            mx = xi
        wi = w[i]
        sum_w += wi
        sum_x += wi * xi
    if mn > Z:
        mn = Z
    if mx == mn:
        for i in range(n):
            L[lo + i] = 0
        return Z, -mn
    fnmax = F(nmax)
    iscale = fnmax / (mx - mn)
    scale = ONE / iscale
    best = Z
    for i in range(n):
        li = max(0, min(nmax, nearest_int(iscale * (x[xo + i] - mn))))
        L[lo + i] = li
        diff = scale * F(li) + mn - x[xo + i]
        diff = abs(diff) if use_mad else diff * diff
        best += w[i] * diff
    for step in range(nstep + 1):
        iscale = (rmin + rdelta * F(step) + fnmax) / (mx - mn)
        sum_l = Z
        sum_l2 = Z
        sum_xl = Z
        for i in range(n):
            fl = F(max(0, min(nmax, nearest_int(iscale * (x[xo + i] - mn)))))
            fa[i] = fl
            wi = w[i]
            sum_l += wi * fl
            sum_l2 += wi * fl * fl
            sum_xl += wi * fl * x[xo + i]
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > Z:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > Z:
                this_min = Z
                this_scale = sum_xl / sum_l2
            cur = Z
            for i in range(n):
                diff = this_scale * fa[i] + this_min - x[xo + i]
                diff = abs(diff) if use_mad else diff * diff
                cur += w[i] * diff
            if cur < best:
                for i in range(n):
                    L[lo + i] = np.int64(fa[i])
                best = cur
                scale = this_scale
                mn = this_min
    return scale, -mn


@njit(**_INLINE)
def make_qkx2(n, nmax, x, xo, w, L, lo, S, rmin, rdelta, nstep, use_mad):
    """make_qkx2_quants over x[xo:xo+n], weights w[:n]; writes L[lo:lo+n]; -> (scale, the_min)."""
    xs, _, fbest, fa, pa, pb, pc, pe = S
    if n == 16:
        return _make_qkx2_fused(16, nmax, x, xo, w, L, lo, fa, rmin, rdelta, nstep, use_mad)
    for i in range(n):
        xs[i] = x[xo + i]
    mn = xs[0]
    mx = xs[0]
    sum_w = w[0]
    sum_x = sum_w * xs[0]
    for i in range(1, n):
        xi = xs[i]
        if xi < mn:
            mn = xi
        if xi > mx:
            mx = xi
        wi = w[i]
        sum_w += wi
        sum_x += wi * xi
    if mn > Z:
        mn = Z
    if mx == mn:
        for i in range(n):
            L[lo + i] = 0
        return Z, -mn
    fnmax = F(nmax)
    iscale = fnmax / (mx - mn)
    scale = ONE / iscale
    _qkx2_levels(n, nmax, xs, w, mn, iscale, fbest, pa, pb, pc)
    best = _qkx2_error(n, xs, w, fbest, scale, mn, use_mad, pe)
    for step in range(nstep + 1):
        iscale = (rmin + rdelta * F(step) + fnmax) / (mx - mn)  # uses the current min
        _qkx2_levels(n, nmax, xs, w, mn, iscale, fa, pa, pb, pc)
        sum_l = Z
        sum_l2 = Z
        sum_xl = Z
        for i in range(n):
            sum_l += pa[i]
            sum_l2 += pb[i]
            sum_xl += pc[i]
        D = sum_w * sum_l2 - sum_l * sum_l
        if D > Z:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            if this_min > Z:
                this_min = Z
                this_scale = sum_xl / sum_l2
            cur = _qkx2_error(n, xs, w, fa, this_scale, this_min, use_mad, pe)
            if cur < best:
                for i in range(n):
                    fbest[i] = fa[i]
                best = cur
                scale = this_scale
                mn = this_min
    for i in range(n):
        L[lo + i] = np.int64(fbest[i])
    return scale, -mn


@njit(**_INLINE)
def _qx_levels(xs, iscale, w, wx, fl, p1, p2):
    for i in range(16):
        v = F(max(-32, min(31, nearest_int(iscale * xs[i]))))
        fl[i] = v
        p1[i] = wx[i] * v  # w*x*l
        p2[i] = w[i] * v * v  # w*l*l


@njit(**_INLINE)
def make_qx_rmse1(x, xo, L, lo, S):
    """make_qx_quants(16, 32, x, L, rmse_type=1, NULL); writes L[lo:lo+16] (0..63)."""
    xs, w, wx, fl, p1, p2, _, _ = S
    for i in range(16):
        xs[i] = x[xo + i]
    amax = Z
    mx = Z
    for i in range(16):
        ax = abs(xs[i])
        if ax > amax:
            amax = ax
            mx = xs[i]
    if amax < EPS:
        for i in range(16):
            L[lo + i] = 0
        return Z
    for i in range(16):
        w[i] = xs[i] * xs[i]
        wx[i] = w[i] * xs[i]
    iscale = F(-32.0) / mx
    _qx_levels(xs, iscale, w, wx, fl, p1, p2)
    sumlx = Z
    suml2 = Z
    for i in range(16):
        sumlx += p1[i]
        suml2 += p2[i]
    for i in range(16):
        L[lo + i] = np.int64(fl[i]) + 32
    scale = sumlx / suml2 if suml2 != Z else Z
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        iscale = -(F(32.0) + TENTH * F(step)) / mx
        _qx_levels(xs, iscale, w, wx, fl, p1, p2)
        sumlx = Z
        suml2 = Z
        for i in range(16):
            sumlx += p1[i]
            suml2 += p2[i]
        if suml2 > Z and sumlx * sumlx > best * suml2:
            for i in range(16):
                L[lo + i] = np.int64(fl[i]) + 32
            scale = sumlx / suml2
            best = scale * sumlx
    return scale


@njit(**_INLINE)
def make_q3(x, xo, L, lo):
    """make_q3_quants(16, 4, x, L, do_rmse=true); writes L[lo:lo+16] (0..7, or all 0)."""
    amax = Z
    mx = Z
    for i in range(16):
        ax = abs(x[xo + i])
        if ax > amax:
            amax = ax
            mx = x[xo + i]
    if amax < EPS:
        for i in range(16):
            L[lo + i] = 0
        return Z
    iscale = F(-4.0) / mx
    sumlx = Z
    suml2 = Z
    for i in range(16):
        xi = x[xo + i]
        li = max(-4, min(3, nearest_int(iscale * xi)))
        L[lo + i] = li
        w = xi * xi
        fl = F(li)
        sumlx += w * xi * fl
        suml2 += w * fl * fl
    for _ in range(5):
        n_changed = 0
        for i in range(16):
            xi = x[xo + i]
            w = xi * xi
            fli = F(L[lo + i])
            slx = sumlx - w * xi * fli
            if slx > Z:
                sl2 = suml2 - w * fli * fli
                new_l = max(-4, min(3, nearest_int(xi * sl2 / slx)))
                if new_l != L[lo + i]:
                    fn = F(new_l)
                    slx += w * xi * fn
                    sl2 += w * fn * fn
                    if sl2 > Z and slx * slx * suml2 > sumlx * sumlx * sl2:
                        L[lo + i] = new_l
                        sumlx = slx
                        suml2 = sl2
                        n_changed += 1
        if n_changed == 0:
            break
    for i in range(16):
        L[lo + i] += 4
    return sumlx / suml2 if suml2 > Z else Z


# ------------------------------------------------------------------ K-quants


@njit(**_JIT)
def _qkx_k(x, xb, nmax, rmin, nstep, L, S, scales, mins, ls, lm):
    """Shared Q4_K/Q5_K body: fills L (final levels), ls/lm (6-bit scales); -> (d bits, dmin bits)."""
    max_scale = Z
    max_min = Z
    for j in range(8):
        sum_x2 = Z
        for l in range(32):
            v = x[xb + 32 * j + l]
            sum_x2 += v * v
        av_x = np.sqrt(sum_x2 / F(32.0))
        w = S[1]
        for l in range(32):
            w[l] = av_x + abs(x[xb + 32 * j + l])
        s, m = make_qkx2(32, nmax, x, xb + 32 * j, w, L, 32 * j, S, rmin, TENTH, nstep, False)
        scales[j] = s
        mins[j] = m
        if s > max_scale:
            max_scale = s
        if m > max_min:
            max_min = m
    inv_scale = F(63.0) / max_scale if max_scale > Z else Z
    inv_min = F(63.0) / max_min if max_min > Z else Z
    for j in range(8):
        ls[j] = min(63, nearest_int(inv_scale * scales[j]) & 0xFF)
        lm[j] = min(63, nearest_int(inv_min * mins[j]) & 0xFF)
    dh = fp16_bits(max_scale / F(63.0))
    mh = fp16_bits(max_min / F(63.0))
    d = fp16_value(dh)
    dmin = fp16_value(mh)
    for j in range(8):
        dd = d * F(ls[j])
        if dd == Z:
            continue
        dm = dmin * F(lm[j])
        for ii in range(32):
            L[32 * j + ii] = max(0, min(nmax, nearest_int((x[xb + 32 * j + ii] + dm) / dd)))
    return dh, mh


@njit(**_JIT)
def _put_k_scales(out, o, ls, lm):
    for j in range(4):
        out[o + j] = (ls[j] | ((ls[j + 4] >> 4) << 6)) & 0xFF
        out[o + 4 + j] = (lm[j] | ((lm[j + 4] >> 4) << 6)) & 0xFF
        out[o + 8 + j] = ((ls[j + 4] & 0xF) | ((lm[j + 4] & 0xF) << 4)) & 0xFF


@njit(**_JIT)
def q4_k(x, out):
    L = np.zeros(256, np.int64)
    S = scratch()
    scales = np.zeros(8, np.float32)
    mins = np.zeros(8, np.float32)
    ls = np.zeros(8, np.int64)
    lm = np.zeros(8, np.int64)
    for i in range(x.size // 256):
        ob = i * 144
        dh, mh = _qkx_k(x, i * 256, 15, F(-1.0), 20, L, S, scales, mins, ls, lm)
        put_f16(out, ob, dh)
        put_f16(out, ob + 2, mh)
        _put_k_scales(out, ob + 4, ls, lm)
        for k in range(4):
            for l in range(32):
                out[ob + 16 + 32 * k + l] = (L[64 * k + l] | (L[64 * k + 32 + l] << 4)) & 0xFF


@njit(**_JIT)
def q5_k(x, out):
    L = np.zeros(256, np.int64)
    S = scratch()
    scales = np.zeros(8, np.float32)
    mins = np.zeros(8, np.float32)
    ls = np.zeros(8, np.int64)
    lm = np.zeros(8, np.int64)
    for i in range(x.size // 256):
        ob = i * 176
        dh, mh = _qkx_k(x, i * 256, 31, F(-0.5), 15, L, S, scales, mins, ls, lm)
        put_f16(out, ob, dh)
        put_f16(out, ob + 2, mh)
        _put_k_scales(out, ob + 4, ls, lm)
        for j in range(32):
            out[ob + 16 + j] = 0
        for k in range(4):
            m1 = 1 << (2 * k)
            m2 = 2 << (2 * k)
            for j in range(32):
                l1 = L[64 * k + j]
                if l1 > 15:
                    l1 -= 16
                    out[ob + 16 + j] |= m1
                l2 = L[64 * k + 32 + j]
                if l2 > 15:
                    l2 -= 16
                    out[ob + 16 + j] |= m2
                out[ob + 48 + 32 * k + j] = (l1 | (l2 << 4)) & 0xFF


@njit(**_JIT)
def _put_2bit(out, o, L):
    for h in range(2):
        for l in range(32):
            j = 128 * h + l
            out[o + 32 * h + l] = (
                L[j] | (L[j + 32] << 2) | (L[j + 64] << 4) | (L[j + 96] << 6)
            ) & 0xFF


@njit(**_JIT)
def q2_k(x, out):
    L = np.zeros(256, np.int64)
    S = scratch()
    w = S[1]
    scales = np.zeros(16, np.float32)
    mins = np.zeros(16, np.float32)
    sc = np.zeros(16, np.int64)
    for i in range(x.size // 256):
        xb = i * 256
        ob = i * 84
        max_scale = Z
        max_min = Z
        for j in range(16):
            for l in range(16):
                w[l] = abs(x[xb + 16 * j + l])
            s, m = make_qkx2(16, 3, x, xb + 16 * j, w, L, 16 * j, S, F(-0.5), TENTH, 15, True)
            scales[j] = s
            mins[j] = m
            if s > max_scale:
                max_scale = s
            if m > max_min:
                max_min = m
        if max_scale > Z:
            iscale = F(15.0) / max_scale
            for j in range(16):
                sc[j] = nearest_int(iscale * scales[j]) & 0xFF
            dh = fp16_bits(max_scale / F(15.0))
        else:
            for j in range(16):
                sc[j] = 0
            dh = fp16_bits(Z)
        if max_min > Z:
            imin = F(15.0) / max_min
            for j in range(16):
                sc[j] = (sc[j] | (nearest_int(imin * mins[j]) << 4)) & 0xFF
            mh = fp16_bits(max_min / F(15.0))
        else:
            mh = fp16_bits(Z)
        d = fp16_value(dh)
        dmin = fp16_value(mh)
        for j in range(16):
            dd = d * F(sc[j] & 0xF)
            if dd == Z:
                continue
            dm = dmin * F(sc[j] >> 4)
            for ii in range(16):
                L[16 * j + ii] = max(0, min(3, nearest_int((x[xb + 16 * j + ii] + dm) / dd)))
        for j in range(16):
            out[ob + j] = sc[j]
        _put_2bit(out, ob + 16, L)
        put_f16(out, ob + 80, dh)
        put_f16(out, ob + 82, mh)


@njit(**_JIT)
def q3_k(x, out):
    L = np.zeros(256, np.int64)
    scales = np.zeros(16, np.float32)
    sb = np.zeros(12, np.int64)
    for i in range(x.size // 256):
        xb = i * 256
        ob = i * 110
        amax = Z
        max_scale = Z
        for j in range(16):
            s = make_q3(x, xb + 16 * j, L, 16 * j)
            scales[j] = s
            if abs(s) > amax:
                amax = abs(s)
                max_scale = s
        for k in range(12):
            sb[k] = 0
        if max_scale != Z:
            iscale = F(-32.0) / max_scale
            for j in range(16):
                l = nearest_int(iscale * scales[j]) & 0xFF  # int8_t l = nearest_int(...)
                if l >= 128:
                    l -= 256
                l = max(-32, min(31, l)) + 32
                if j < 8:
                    sb[j] = l & 0xF
                else:
                    sb[j - 8] |= (l & 0xF) << 4
                sb[8 + j % 4] |= (l >> 4) << (2 * (j // 4))
            dh = fp16_bits(ONE / iscale)
        else:
            dh = fp16_bits(Z)
        d = fp16_value(dh)
        for j in range(16):
            s6 = sb[j] & 0xF if j < 8 else sb[j - 8] >> 4
            s6 = (s6 | (((sb[8 + j % 4] >> (2 * (j // 4))) & 3) << 4)) - 32
            dd = d * F(s6)
            if dd == Z:
                continue
            for ii in range(16):
                L[16 * j + ii] = max(-4, min(3, nearest_int(x[xb + 16 * j + ii] / dd))) + 4
        for m in range(32):
            hm = 0
            for b in range(8):
                if L[32 * b + m] > 3:
                    hm |= 1 << b
                    L[32 * b + m] -= 4
            out[ob + m] = hm
        _put_2bit(out, ob + 32, L)
        for k in range(12):
            out[ob + 96 + k] = sb[k] & 0xFF
        put_f16(out, ob + 108, dh)


@njit(**_JIT)
def q6_k(x, out):
    L = np.zeros(256, np.int64)
    S = scratch()
    scales = np.zeros(16, np.float32)
    sc = np.zeros(16, np.int64)
    for i in range(x.size // 256):
        xb = i * 256
        ob = i * 210
        max_scale = Z
        max_abs = Z
        for ib in range(16):
            s = make_qx_rmse1(x, xb + 16 * ib, L, 16 * ib, S)
            scales[ib] = s
            if abs(s) > max_abs:
                max_abs = abs(s)
                max_scale = s
        if max_abs < EPS:
            for k in range(210):
                out[ob + k] = 0
            continue
        iscale = F(-128.0) / max_scale
        dh = fp16_bits(ONE / iscale)
        for ib in range(16):
            v = min(127, nearest_int(iscale * scales[ib])) & 0xFF  # stored as int8_t
            sc[ib] = v - 256 if v >= 128 else v
        d = fp16_value(dh)
        for j in range(16):
            dd = d * F(sc[j])
            if dd == Z:
                continue
            for ii in range(16):
                L[16 * j + ii] = max(-32, min(31, nearest_int(x[xb + 16 * j + ii] / dd))) + 32
        for h in range(2):
            for l in range(32):
                j = 128 * h + l
                q1 = L[j] & 0xF
                q2 = L[j + 32] & 0xF
                q3 = L[j + 64] & 0xF
                q4 = L[j + 96] & 0xF
                out[ob + 64 * h + l] = q1 | (q3 << 4)
                out[ob + 64 * h + 32 + l] = q2 | (q4 << 4)
                out[ob + 128 + 32 * h + l] = (
                    (L[j] >> 4)
                    | ((L[j + 32] >> 4) << 2)
                    | ((L[j + 64] >> 4) << 4)
                    | ((L[j + 96] >> 4) << 6)
                ) & 0xFF
        for ib in range(16):
            out[ob + 192 + ib] = sc[ib] & 0xFF
        put_f16(out, ob + 208, dh)


# ------------------------------------------------------------------ F16 / BF16


@njit(**_JIT)
def f16(x, out):
    """ggml_fp32_to_fp16_row; `out` is a (native, little-endian) uint16 view."""
    for i in range(x.size):
        out[i] = fp16_bits(x[i])


@njit(**_JIT)
def bf16(x, out):
    """ggml_fp32_to_bf16_row_ref: round to nearest even, NaN -> quiet NaN; `out` is uint16."""
    for i in range(x.size):
        u = np.int64(_bits(x[i])) & 0xFFFFFFFF
        if (u & 0x7FFFFFFF) > 0x7F800000:
            h = (u >> 16) | 64
        else:
            h = ((u + (0x7FFF + ((u >> 16) & 1))) & 0xFFFFFFFF) >> 16
        out[i] = h


KERNELS = {
    GGMLType.Q4_0: q4_0,
    GGMLType.Q4_1: q4_1,
    GGMLType.Q5_0: q5_0,
    GGMLType.Q5_1: q5_1,
    GGMLType.Q8_0: q8_0,
    GGMLType.Q2_K: q2_k,
    GGMLType.Q3_K: q3_k,
    GGMLType.Q4_K: q4_k,
    GGMLType.Q5_K: q5_k,
    GGMLType.Q6_K: q6_k,
    GGMLType.F16: f16,
    GGMLType.BF16: bf16,
}

# ------------------------------------------------------------------ threading

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_MIN_BLOCKS_PER_THREAD = 64


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="quant"
            )
        return _pool


def quantize_blocks(flat: np.ndarray, qtype: GGMLType, threads: int) -> np.ndarray:
    """Encode a flat C-contiguous float32 array of whole blocks; -> uint8 array."""
    tr = traits(qtype)
    kernel = KERNELS[qtype]
    nblocks = flat.size // tr.block_size
    out = np.empty(nblocks * tr.type_size, dtype=np.uint8)
    wide = qtype in (GGMLType.F16, GGMLType.BF16)  # kernels that store whole uint16 values
    parts = max(1, min(threads, nblocks // _MIN_BLOCKS_PER_THREAD))
    if parts == 1:
        kernel(flat, out.view(np.uint16) if wide else out)
        return out
    bounds = [nblocks * k // parts for k in range(parts + 1)]
    bs, ts = tr.block_size, tr.type_size

    def run(k: int) -> None:
        a, b = bounds[k], bounds[k + 1]
        dst = out[a * ts : b * ts]
        kernel(flat[a * bs : b * bs], dst.view(np.uint16) if wide else dst)

    for fut in [_executor().submit(run, k) for k in range(parts)]:
        fut.result()
    return out
