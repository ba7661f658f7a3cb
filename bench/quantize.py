"""Quantize benchmark: ggtool vs llama.cpp's llama-quantize, side by side in one run.

    .venv/bin/python bench/quantize.py [--types Q4_K_M,Q6_K,Q2_K] [--threads 2] [--repeat 3] [--json]

Models (F16 GGUF inputs, built on first use into the fixtures cache):
- SmolLM2-135M-Instruct converted by ggtool (n_embd 576 is not a multiple of 256, so most
  tensors take the Q5_0/Q8_0 fallbacks);
- a generated 256-aligned Llama of ~110M parameters (hidden 1024), where nearly every tensor
  is a K-quant.
Both tools run as their own processes on the same thread count; wall time and peak RSS come
from /usr/bin/time. ggtool's first run with an empty numba cache (JIT compile) is reported
separately from the warm runs. Every output pair is checked byte-identical.
Target (issue 4): ggtool <= 2x llama.cpp's wall time for Q4_K_M on both, byte-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._measure import run_measured  # noqa: E402


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def inputs(work: Path) -> dict[str, Path]:
    from fixtures.cache import cache_root
    from fixtures.smollm2 import smollm2_folder
    from fixtures.synthetic_gguf import TinyLlama

    cache = cache_root() / "bench-quantize-v1"
    cache.mkdir(parents=True, exist_ok=True)
    smol = cache / "smollm2-F16.gguf"
    if not smol.exists():
        from ggtool.convert import convert

        convert(smollm2_folder(), smol, outtype="f16", force=True)
    aligned = cache / "llama110m-F16.gguf"
    if not aligned.exists():
        TinyLlama("llama110m", n_layer=6, n_embd=1024, n_ff=2816, n_head=16, n_head_kv=8,
                  n_vocab=16384).write(aligned)
    return {"smollm2-135m (fallbacks)": smol, "llama-110m (256-aligned)": aligned}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default="Q4_K_M,Q6_K,Q2_K")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="warm runs per tool (best wall, max RSS)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from fixtures.llama_tools import llama_tool

    llama_quantize = llama_tool("llama-quantize")
    ggtool = Path(sys.executable).with_name("ggtool")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as d:
        work = Path(d)
        models = inputs(work)
        cold_cache = work / "numba-cold"
        for label, src in models.items():
            for ft in args.types.split(","):
                ours, ref = work / "ours.gguf", work / "ref.gguf"
                g_cmd = [str(ggtool), "-q", "quantize", str(src), ft, "-o", str(ours), "--force",
                         "--threads", str(args.threads)]
                l_cmd = [str(llama_quantize), str(src), str(ref), ft, str(args.threads)]
                shutil.rmtree(cold_cache, ignore_errors=True)
                cold_env = {**os.environ, "NUMBA_CACHE_DIR": str(cold_cache)}
                cold_wall, _ = run_measured(g_cmd, env=cold_env)
                g = [run_measured(g_cmd) for _ in range(args.repeat)]
                lq = [run_measured(l_cmd) for _ in range(args.repeat)]
                same = sha256(ours) == sha256(ref)
                row = {
                    "model": label, "type": ft,
                    "ggtool_s": min(w for w, _ in g), "llama_s": min(w for w, _ in lq),
                    "ggtool_cold_s": cold_wall,
                    "ggtool_rss_mb": max(r for _, r in g) / 1e6, "llama_rss_mb": max(r for _, r in lq) / 1e6,
                    "identical": same,
                }
                row["ratio"] = row["ggtool_s"] / row["llama_s"]
                rows.append(row)
                if not args.json:
                    print(f"{label:<26} {ft:<7} ggtool {row['ggtool_s']:6.2f}s (cold {cold_wall:5.1f}s) "
                          f"{row['ggtool_rss_mb']:6.0f} MB | llama-quantize {row['llama_s']:6.2f}s "
                          f"{row['llama_rss_mb']:6.0f} MB | ratio {row['ratio']:.2f}x | "
                          f"{'identical' if same else 'DIFFERENT'}", flush=True)
    info = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs", "threads": args.threads,
            "load": os.getloadavg(), "rows": rows}
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(f"load average {info['load'][0]:.1f}; threads {args.threads}; warm = best of {args.repeat}")
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
