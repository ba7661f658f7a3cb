#!/usr/bin/env bash
# Sets everything up, then runs the test suite. Extra arguments go to pytest, e.g.
#   scripts/test.sh -m "not slow"     # the fast tier
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV="${GGTOOL_VENV:-.venv}"
"$VENV/bin/ruff" check ggtool converters quant tests bench fixtures scripts
exec "$VENV/bin/python" -m pytest "$@"
