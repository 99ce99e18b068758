#!/usr/bin/env bash
# Builds {{name}}.wasm from app.js with ComponentizeJS 0.23 (world `handler`, wit/world.wit).
# `-d http fetch-event`: without them the component imports wasi:http, which the host does not
# link (outbound HTTP goes through the contract's `outbound-http` import instead).
# componentize-js: on PATH, or $COMPONENTIZE_JS (a Switchyard checkout's
# scripts/handler-tools.sh installs it and prints where).
set -euo pipefail
cd "$(dirname "$0")"
"${COMPONENTIZE_JS:-componentize-js}" app.js --wit wit -n handler -d http fetch-event \
  -o {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
