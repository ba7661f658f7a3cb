#!/usr/bin/env python3
"""Build ggtool's test fixtures into the fixtures cache and print where they are.

    python scripts/fixtures.py              # smollm2 (the default)
    python scripts/fixtures.py tiny         # every tiny checkpoint
    python scripts/fixtures.py qwen2 llama-bpe
    python scripts/fixtures.py all --tools  # everything, plus llama-quantize/-server/-tokenize
    python scripts/fixtures.py --list       # what can be built, nothing is built

Output: one `name<TAB>path` line per fixture on stdout (progress on stderr). The cache is
$GGTOOL_FIXTURES_CACHE (default /var/tmp/ggtool-fixtures); built fixtures are reused.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures.cache import cache_root  # noqa: E402
from fixtures.llama_tools import TOOLS  # noqa: E402
from fixtures.tiny_models import SPECS, TINY_MODEL_KINDS  # noqa: E402

GROUPS = {"smollm2": ["smollm2"], "tiny": TINY_MODEL_KINDS,
          "all": ["smollm2", "smollm2-gguf", "llama-cpp-source", *TINY_MODEL_KINDS]}


def _build(name: str) -> Path:
    if name == "smollm2":
        from fixtures.smollm2 import smollm2_folder

        return smollm2_folder()
    if name == "smollm2-gguf":
        from fixtures.smollm2 import smollm2_gguf

        return smollm2_gguf()
    if name == "llama-cpp-source":
        from fixtures.llama_cpp_source import llama_cpp_source

        return llama_cpp_source().llama_cpp
    if name in TOOLS:
        from fixtures.llama_tools import llama_tool

        return llama_tool(name)
    from fixtures.tiny_models import tiny_model

    return tiny_model(name)


def _names(targets: list[str], tools: bool) -> list[str]:
    out: list[str] = []
    for t in targets or ["smollm2"]:
        for n in GROUPS.get(t, [t]):
            if n not in out:
                out.append(n)
    if tools:
        out += [t for t in TOOLS if t not in out]
    return out


def main(argv: list[str] | None = None) -> int:
    known = sorted({*GROUPS, "smollm2-gguf", "llama-cpp-source", *TINY_MODEL_KINDS, *TOOLS})
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="*", metavar="TARGET",
                    help=f"smollm2 (default), tiny, all, or names: {', '.join(known)}")
    ap.add_argument("--tools", action="store_true",
                    help="also build llama.cpp's llama-quantize, llama-server, llama-tokenize")
    ap.add_argument("--list", action="store_true", help="list buildable fixtures and exit")
    args = ap.parse_args(argv)
    if args.list:
        print(f"cache\t{cache_root()}")
        for kind in TINY_MODEL_KINDS:
            print(f"{kind}\t{SPECS[kind].architecture}: {SPECS[kind].notes}")
        for name in ("smollm2", "smollm2-gguf", "llama-cpp-source", *TOOLS):
            print(name)
        return 0
    names = _names(args.targets, args.tools)
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"error: unknown fixture {', '.join(unknown)}; known: {', '.join(known)}",
              file=sys.stderr)
        return 2
    for name in names:
        t0 = time.monotonic()
        print(f"building {name} …", file=sys.stderr, flush=True)
        path = _build(name)
        print(f"  done in {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
        print(f"{name}\t{path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
