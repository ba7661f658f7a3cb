#!/usr/bin/env bash
# Sets up everything ggtool's demo and tests need, idempotently:
# system packages (the OCI registry server and skopeo for the registry tests), a virtual
# environment with ggtool and its dev extra (torch CPU, transformers, llama-cpp-python built
# from source once and then reused from pip's wheel cache), and the cached fixture models.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${GGTOOL_VENV:-.venv}"
PY="$VENV/bin/python"

log() { printf '[setup] %s\n' "$*" >&2; }

# 1. System packages (Debian). CI runs as root; elsewhere sudo is used when available.
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
if ((${#missing[@]})); then
  log "installing system packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Python environment.
if [ ! -x "$PY" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
fi

# llama-cpp-python compiles llama.cpp. Build it once per flag set into a machine-local
# wheelhouse (pip's own wheel cache ignores CMAKE_ARGS): a portable x86-64 build (AVX2/FMA,
# not -march=native: a native build on a CPU that advertises AMX crashes with an illegal
# instruction where the sandbox does not grant AMX tile state).
LLAMA_VERSION=0.3.36
LLAMA_CMAKE_ARGS=""
if [ "$(uname -m)" = x86_64 ]; then
  LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
fi
flags_id="$(printf '%s %s' "$LLAMA_VERSION" "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)"
WHEELS="${GGTOOL_WHEELHOUSE:-/var/tmp/ggtool-wheels}/$flags_id"
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  log "building llama-cpp-python $LLAMA_VERSION (compiles llama.cpp: ~10 minutes on 2 cores, once)"
  tmp="$WHEELS.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$PY" -m pip wheel -q --no-deps --no-cache-dir "llama-cpp-python==$LLAMA_VERSION" -w "$tmp"
  mkdir -p "$(dirname "$WHEELS")"
  rm -rf "$WHEELS"
  mv "$tmp" "$WHEELS"
fi

stamp="$VENV/.ggtool-deps-$( (cat pyproject.toml; echo "$flags_id") | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  log "installing ggtool[dev] into $VENV"
  "$PY" -m pip install -q --find-links "$WHEELS" --force-reinstall --no-deps "llama-cpp-python==$LLAMA_VERSION"
  "$PY" -m pip install -q --find-links "$WHEELS" -e ".[dev]"
  rm -f "$VENV"/.ggtool-deps-*
  touch "$stamp"
fi

# 3. Fixture models (cached outside the repository; see fixtures/).
if [ -f scripts/fixtures.py ]; then
  log "building fixture models (cached)"
  "$PY" scripts/fixtures.py all >&2
fi
log "ready: $VENV"
