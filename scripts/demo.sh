#!/usr/bin/env bash
# Sets everything up and runs ggtool's main job on the bundled fixture model:
# SmolLM2-135M-Instruct rebuilt as a Hugging Face folder, then inspected.
# (Later steps: convert -> quantize -> create -> serve -> one answer.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV="${GGTOOL_VENV:-.venv}"
GG="$VENV/bin/ggtool"
work="${GGTOOL_DEMO_DIR:-$(mktemp -d)}"
hf_dir="$("$VENV/bin/python" scripts/fixtures.py smollm2 | tail -1)"
echo "== SmolLM2 Hugging Face folder: $hf_dir"
ls -l "$hf_dir"
src_gguf="$("$VENV/bin/python" -c 'from fixtures.smollm2 import smollm2_source_gguf; print(smollm2_source_gguf())')"
echo "== ggtool inspect $src_gguf"
"$GG" inspect "$src_gguf" | head -20
echo "== demo outputs in $work"
