#!/usr/bin/env bash
# Builds {{name}}.wasm, a component for wasm32-wasip2 (contract switchyard:handler@0.2.0).
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2
cp -f "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate}}.wasm" {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
