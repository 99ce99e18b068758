#!/usr/bin/env bash
# Builds {{name}}.wasm from app.py with componentize-py 0.25 (world `handler`, wit/world.wit).
# componentize-py: on PATH, or $COMPONENTIZE_PY (a Switchyard checkout's
# scripts/handler-tools.sh installs it and prints where).
set -euo pipefail
cd "$(dirname "$0")"
"${COMPONENTIZE_PY:-componentize-py}" -d wit -w handler componentize app -o {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
