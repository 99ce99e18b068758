#!/usr/bin/env bash
# Builds the Python and JavaScript example handlers (examples/handlers/) into
# build/components/python_handler.wasm and js_handler.wasm, with the tools
# scripts/handler-tools.sh installs. Each build is kept under ~/.cache/switchyard/handlers/
# (SWITCHYARD_HANDLER_CACHE), named by a hash of the handler's sources, the WIT and the tools'
# versions: a handler with none of them changed is copied, not rebuilt, so CI (a clean clone,
# ~/.cache kept) pays the Python (~20-80 s) and JavaScript (~10-180 s on a busy machine)
# builds only when something changed.
#
#   scripts/build-handlers.sh            # both
#   scripts/build-handlers.sh python     # one (python | js)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
eval "$("$root/scripts/handler-tools.sh")"
out="$root/build/components"
# Built handlers by content hash, outside the clone: CI's clean clone reuses them.
cache="${SWITCHYARD_HANDLER_CACHE:-$HOME/.cache/switchyard/handlers}"
mkdir -p "$out" "$cache"

# The handlers' world (examples/handlers/wit/world.wit) with the contract as its dependency.
wit="$root/build/handler-wit"
rm -rf "$wit"
mkdir -p "$wit/deps/handler"
cp "$root/examples/handlers/wit/world.wit" "$wit/"
cp "$root/wit/handler.wit" "$root/wit/outbound-http.wit" "$wit/deps/handler/"

# Hash of everything that goes into a handler: its sources, the WIT and the tools' versions.
stamp_of() { # lang, tool versions
  (
    cd "$root"
    printf '%s\n' "$2"
    find "examples/handlers/$1" examples/handlers/wit wit/handler.wit wit/outbound-http.wit \
      -type f ! -name '*.pyc' ! -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum
  ) | sha256sum | cut -d' ' -f1
}

build() { # lang, tool versions, build function
  local lang="$1" versions="$2" build_fn="$3"
  local wasm="$out/${lang}_handler.wasm" stamp
  stamp="$(stamp_of "$lang" "$versions")"
  local cached="$cache/${lang}_handler-$stamp.wasm"
  if [ -f "$cached" ]; then
    cp -f "$cached" "$wasm"
    echo "build-handlers: $lang handler unchanged (cached $cached)" >&2
    return
  fi
  local started=$SECONDS
  "$build_fn" "$cached.tmp"
  rm -f "$cache/${lang}_handler-"*.wasm # older builds of this handler
  mv -f "$cached.tmp" "$cached"
  cp -f "$cached" "$wasm"
  echo "build-handlers: built $wasm ($(stat -c %s "$wasm") bytes) in $((SECONDS - started)) s" >&2
}

python_build() { # output
  local work="$root/build/handler-work/python"
  rm -rf "$work"
  mkdir -p "$work"
  "$COMPONENTIZE_PY" -d "$wit" -w handler bindings "$work" >/dev/null
  "$COMPONENTIZE_PY" -d "$wit" -w handler componentize \
    -p "$root/examples/handlers/python" -p "$work" app -o "$1" >/dev/null
}

js_build() { # output
  # No outbound HTTP (the route grants none): without `-d http fetch-event` the component
  # imports wasi:http, which the host does not link.
  "$COMPONENTIZE_JS" "$root/examples/handlers/js/handler.js" --wit "$wit" -n handler \
    -d http fetch-event -o "$1" >/dev/null
}

langs=("$@")
[ $# -gt 0 ] || langs=(python js)
for lang in "${langs[@]}"; do
  case "$lang" in
  python) build python "componentize-py $COMPONENTIZE_PY_VERSION" python_build ;;
  js) build js "componentize-js $COMPONENTIZE_JS_VERSION" js_build ;;
  *)
    echo "build-handlers: unknown handler $lang (python | js)" >&2
    exit 2
    ;;
  esac
done
