#!/usr/bin/env bash
# Builds every guest component (plugins/ and tests/components/) and copies the .wasm files to
# build/components/, where configs and tests find them.
#
# Handlers built lean: for wasm32-unknown-unknown, linked by rustc's own wasm-component-ld into a
# component that imports only what it calls (no WASI preview 1 adapter, an extra core instance
# every event's fresh instance would pay for; docs/writing-handlers.md "Building"). The two test
# components that use std's WASI (stdio, files, env, sleep) build for wasm32-wasip2.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
for target in wasm32-unknown-unknown wasm32-wasip2; do
  if ! rustup target list --installed | grep -qx "$target"; then
    echo "installing the $target target" >&2
    rustup target add "$target"
  fi
done
host_triple="$(rustc -vV | sed -n 's/^host: //p')"
component_ld="$(rustc --print sysroot)/lib/rustlib/$host_triple/bin/wasm-component-ld"
if [ ! -x "$component_ld" ]; then
  echo "error: $component_ld is missing. rustc ships it from 1.82 on;" \
    "update the toolchain (rustup update stable)." >&2
  exit 1
fi
target_dir="${SWITCHYARD_GUEST_TARGET_DIR:-$root/plugins/target}"
manifest="$root/plugins/Cargo.toml"
wasip2_crates=(hostile not-a-handler)
lean_build() {
  cargo build --manifest-path "$manifest" --release --quiet --target wasm32-unknown-unknown \
    --config "target.wasm32-unknown-unknown.linker=\"$component_ld\"" "$@"
}
lean_build --target-dir "$target_dir" --workspace "${wasip2_crates[@]/#/--exclude=}"
cargo build --manifest-path "$manifest" --release --quiet --target wasm32-wasip2 \
  --target-dir "$target_dir" "${wasip2_crates[@]/#/-p=}"
mkdir -p "$root/build/components"
cp -f "$target_dir"/wasm32-unknown-unknown/release/*.wasm "$root/build/components/"
for crate in "${wasip2_crates[@]}"; do
  cp -f "$target_dir/wasm32-wasip2/release/$crate.wasm" "$root/build/components/"
done
# A second build of the probe whose effects differ (its build tag), for the hot-reload tests.
PROBE_BUILD_TAG=b lean_build --target-dir "$target_dir/probe-b" -p probe
cp -f "$target_dir/probe-b/wasm32-unknown-unknown/release/probe.wasm" \
  "$root/build/components/probe-b.wasm"
ls "$root/build/components"
