#!/usr/bin/env bash
# One-time machine setup: the C toolchain rdkafka's bundled librdkafka needs (cmake, libcurl),
# jq (the demos read `switchyard status --json` with it) and the wasm32-wasip2 Rust target.
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
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
