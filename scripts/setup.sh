#!/usr/bin/env bash
# One-time machine setup: the C toolchain rdkafka's bundled librdkafka needs (cmake, libcurl),
# jq (the demos read `switchyard status --json` with it) and the Rust wasm targets:
# wasm32-unknown-unknown (lean handlers) and wasm32-wasip2 (handlers using std's WASI).
# Safe to run again.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v jq >/dev/null || need+=(jq)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need+=(libcurl4-openssl-dev)
if ((${#need[@]})); then
  echo "installing ${need[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}"
fi
for target in wasm32-unknown-unknown wasm32-wasip2; do
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done
