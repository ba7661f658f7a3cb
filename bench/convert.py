"""Convert benchmark: ggtool vs llama.cpp's convert_hf_to_gguf.py, side by side in one run.

    .venv/bin/python bench/convert.py [--model DIR] [--outtype f16] [--repeat 1] [--json]

Default model: the SmolLM2-135M-Instruct fixture folder (bf16 SafeTensors, built on first use).
Each tool runs as its own process; wall time and peak RSS come from that process's own
rusage (os.wait4). The input files are read once first so both start with a warm page cache.
Target (issue 3): ggtool <= 0.5x llama.cpp's wall time and <= 0.5x its peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from bench._measure import run_measured  # noqa: E402


def warm(folder: Path) -> int:
    n = 0
    for p in folder.iterdir():
        if p.is_file():
            with open(p, "rb") as f:
                while block := f.read(1 << 22):
                    n += len(block)
    return n


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", type=Path, help="Hugging Face folder (default: the SmolLM2 fixture)")
    ap.add_argument("--outtype", default="f16")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool (best wall, max RSS)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from fixtures.llama_cpp_source import converter_env, llama_cpp_source

    if args.model is None:
        from fixtures.smollm2 import smollm2_folder

        args.model = smollm2_folder()
    src = llama_cpp_source()
    moved = warm(args.model)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-convert-", dir="/var/tmp") as tmp:
        out = Path(tmp)
        ggtool = Path(sys.executable).with_name("ggtool")
        tools = {
            "llama.cpp convert_hf_to_gguf.py": (
                [
                    sys.executable,
                    str(src.converter),
                    str(args.model),
                    "--outfile",
                    str(out / "ref.gguf"),
                    "--outtype",
                    args.outtype,
                ],
                converter_env(src),
                out / "ref.gguf",
            ),
            "ggtool convert": (
                [
                    str(ggtool),
                    "-q",
                    "convert",
                    str(args.model),
                    "-o",
                    str(out / "ours.gguf"),
                    "--outtype",
                    args.outtype,
                ],
                None,
                out / "ours.gguf",
            ),
        }
        for name, (cmd, env, target) in tools.items():
            walls, peaks = [], []
            for _ in range(args.repeat):
                target.unlink(missing_ok=True)
                wall, peak = run_measured(cmd, env=env, cwd=out)
                walls.append(wall)
                peaks.append(peak)
            results[name] = {"wall_s": min(walls), "peak_rss_mb": max(peaks) / 1e6}
        same = (out / "ref.gguf").exists() and (out / "ref.gguf").read_bytes() == (
            out / "ours.gguf"
        ).read_bytes()
    ref, ours = results["llama.cpp convert_hf_to_gguf.py"], results["ggtool convert"]
    summary = {
        "model": str(args.model),
        "outtype": args.outtype,
        "input_mb": moved / 1e6,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "results": results,
        "ratio_wall": ours["wall_s"] / ref["wall_s"],
        "ratio_peak_rss": ours["peak_rss_mb"] / ref["peak_rss_mb"],
        "byte_identical": same,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"model {args.model} ({moved / 1e6:.0f} MB in), --outtype {args.outtype}, {summary['machine']}"
    )
    print(f"{'tool':34} {'wall s':>8} {'peak RSS MB':>12}")
    for name, r in results.items():
        print(f"{name:34} {r['wall_s']:8.2f} {r['peak_rss_mb']:12.0f}")
    print(
        f"{'ratio ggtool / llama.cpp':34} {summary['ratio_wall']:8.2f} {summary['ratio_peak_rss']:12.2f}"
    )
    print(f"outputs byte-identical: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
