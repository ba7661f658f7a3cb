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
stamp="$VENV/.ggtool-deps-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  log "installing ggtool[dev] (the first llama-cpp-python build takes ~10 minutes on 2 cores)"
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$PY" -m pip install -q -e ".[dev]"
  rm -f "$VENV"/.ggtool-deps-*
  touch "$stamp"
fi

# 3. Fixture models (cached outside the repository; see fixtures/).
if [ -f scripts/fixtures.py ]; then
  log "building fixture models (cached)"
  "$PY" scripts/fixtures.py all >&2
fi
log "ready: $VENV"
