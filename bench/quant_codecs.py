"""Codec speed: quant's NumPy path, its numba fast path, and ggml (via ctypes), side by side.

    python bench/quant_codecs.py [--rows 4096] [--cols 4096] [--threads 2] [--numpy-rows 4096]

Input is a rows x cols float32 matrix of N(0, 0.02) values; every figure is MB of float32
input per second (best of --repeat runs), and every output is checked byte for byte against
ggml's. ggml runs `ggml_quantize_chunk` from llama-cpp-python's libggml-base, split over the
same number of Python threads (ctypes releases the GIL), as llama-quantize splits rows.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import quant
from quant import GGMLType, row_nbytes

# every type quant encodes except F32 (a plain copy), in ggml id order
TYPES = [t.name for t in sorted(quant.SUPPORTED_TYPES) if t != GGMLType.F32]


def load_ggml():
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None:
        return None
    lib = ctypes.CDLL(str(Path(spec.submodule_search_locations[0]) / "lib" / "libggml-base.so"))
    f = lib.ggml_quantize_chunk
    f.restype = ctypes.c_size_t
    f.argtypes = (
        [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int64] * 3 + [ctypes.c_void_p]
    )
    return f


def ggml_quantize(fn, x: np.ndarray, t: GGMLType, threads: int) -> bytes:
    rows, cols = x.shape
    rs = row_nbytes(t, cols)
    out = np.empty(rows * rs, np.uint8)
    bounds = [rows * k // threads for k in range(threads + 1)]

    def part(k: int) -> None:
        a, b = bounds[k], bounds[k + 1]
        fn(int(t), x[a:b].ctypes.data, out[a * rs :].ctypes.data, 0, b - a, cols, None)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(part, range(threads)))
    return out.tobytes()


def best(fn, repeat: int) -> tuple[float, bytes]:
    times, result = [], b""
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def best_interleaved(fns, repeat: int) -> list[tuple[float, bytes]]:
    """Best time of each function, runs alternating so that load changes hit all alike."""
    times = [[] for _ in fns]
    results = [b""] * len(fns)
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            results[k] = fn()
            times[k].append(time.perf_counter() - t0)
    return [(min(t), r) for t, r in zip(times, results, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--numpy-rows", type=int, default=None, help="rows for the (slow) NumPy path")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--types", default=",".join(TYPES))
    args = ap.parse_args()

    x = (np.random.default_rng(0).standard_normal((args.rows, args.cols)) * 0.02).astype(np.float32)
    mb = x.nbytes / 1e6
    ggml = load_ggml()
    t0 = time.perf_counter()
    for name in args.types.split(","):  # JIT compile or load from the on-disk cache
        quant.quantize(x[:1], name, threads=1)
    print(f"numba kernels ready in {time.perf_counter() - t0:.2f} s (compile, or load from cache)")
    print(
        f"{args.rows}x{args.cols} float32 = {mb:.0f} MB; MB/s of float32 input; threads={args.threads}"
    )
    head = f"{'type':6} {'numpy 1t':>9} {'numba 1t':>9} {'numba':>9} {'ggml 1t':>9} {'ggml':>9} {'speed÷ggml':>10}  same bytes"
    print(head)
    nrows = args.numpy_rows or args.rows
    for name in args.types.split(","):
        t = GGMLType[name]
        xs = x[:nrows]
        tn, spec = best(lambda xs=xs, t=t: quant.quantize(xs, t, backend="numpy"), 1)
        fns = [
            lambda t=t: quant.quantize(x, t, threads=1),
            lambda t=t: quant.quantize(x, t, threads=args.threads),
        ]
        if ggml is not None:
            fns += [
                lambda t=t: ggml_quantize(ggml, x, t, 1),
                lambda t=t: ggml_quantize(ggml, x, t, args.threads),
            ]
        timed = best_interleaved(fns, args.repeat)
        (tf1, _), (tf, fast) = timed[:2]
        row = [xs.nbytes / 1e6 / tn, mb / tf1, mb / tf]
        same = "n/a"
        if ggml is not None:
            (tg1, _), (tg, ref) = timed[2:]
            row += [mb / tg1, mb / tg]
            same = str(fast == ref and spec == ref[: len(spec)])
            ratio = f"{tg / tf:10.2f}"
        else:
            row += [float("nan")] * 2
            ratio = f"{'n/a':>10}"
        print(f"{name:6} " + " ".join(f"{v:9.0f}" for v in row) + f" {ratio}  {same}")


if __name__ == "__main__":
    main()
