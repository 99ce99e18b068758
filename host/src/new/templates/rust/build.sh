#!/usr/bin/env bash
# Builds {{name}}.wasm, a component of contract switchyard:handler@0.2.0, lean: for
# wasm32-unknown-unknown, linked by rustc's own wasm-component-ld, so it imports only what the
# handler calls (no WASI preview 1 adapter for the host to instantiate on every event).
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-unknown-unknown ||
  rustup target add wasm32-unknown-unknown
linker="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/wasm-component-ld"
[ -x "$linker" ] || { echo "error: $linker is missing: update Rust (rustup update stable)" >&2; exit 1; }
cargo build --release --target wasm32-unknown-unknown \
  --config "target.wasm32-unknown-unknown.linker=\"$linker\""
cp -f "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/{{crate}}.wasm" {{name}}.wasm
echo "built $(pwd)/{{name}}.wasm"
