#!/usr/bin/env bash
# Builds every guest component (plugins/ and tests/components/) for wasm32-wasip2 and copies
# the .wasm files to build/components/, where configs and tests find them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "installing the wasm32-wasip2 target" >&2
  rustup target add wasm32-wasip2
fi
target_dir="${SWITCHYARD_GUEST_TARGET_DIR:-$root/plugins/target}"
cargo build --manifest-path "$root/plugins/Cargo.toml" --release --target wasm32-wasip2 \
  --target-dir "$target_dir" --quiet
mkdir -p "$root/build/components"
for wasm in "$target_dir"/wasm32-wasip2/release/*.wasm; do
  cp -f "$wasm" "$root/build/components/"
done
# A second build of the probe whose effects differ (its build tag), for the hot-reload tests.
PROBE_BUILD_TAG=b cargo build --manifest-path "$root/plugins/Cargo.toml" --release \
  --target wasm32-wasip2 --target-dir "$target_dir/probe-b" --quiet -p probe
cp -f "$target_dir/probe-b/wasm32-wasip2/release/probe.wasm" "$root/build/components/probe-b.wasm"
ls "$root/build/components"
