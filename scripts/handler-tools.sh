#!/usr/bin/env bash
# Installs the tools that build Python and JavaScript handlers, idempotently, under
# ~/.cache/switchyard/handler-tools/ (override with SWITCHYARD_TOOLS_DIR):
#   python/   a venv with componentize-py (PyPI)                -> python/bin/componentize-py
#   node/     @bytecodealliance/componentize-js + jco (npm)     -> node/node_modules/.bin/componentize-js
#             (the JavaScript build) and node/node_modules/.bin/jco (`jco wit x.wasm` shows what a
#             component imports)
# A tool already at its pinned version is not looked up again, so after the first run this
# works offline. Prints the tools' paths as shell assignments (`eval "$(scripts/handler-tools.sh)"`).
# Needs python3 (with venv) and node/npm >= 18; under CI=true a missing one is an error naming
# the command that installs it.
set -euo pipefail
COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0
JCO_VERSION=1.35.0
tools="${SWITCHYARD_TOOLS_DIR:-$HOME/.cache/switchyard/handler-tools}"

need() { # command, the command that installs it
  command -v "$1" >/dev/null && return 0
  echo "handler-tools: $1 is missing; install it with: $2" >&2
  exit 1
}
need python3 "apt-get install -y python3 python3-venv"
need npm "apt-get install -y nodejs npm"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 18 ]; then
  echo "handler-tools: node $(node --version) is too old (ComponentizeJS needs >= 18)" >&2
  exit 1
fi

# Python: componentize-py in its own venv.
py="$tools/python"
if [ "$("$py/bin/componentize-py" --version 2>/dev/null | awk '{print $2}')" != "$COMPONENTIZE_PY_VERSION" ]; then
  echo "handler-tools: installing componentize-py $COMPONENTIZE_PY_VERSION into $py" >&2
  rm -rf "$py"
  python3 -m venv "$py" || {
    echo "handler-tools: python3 cannot make a venv; install it with: apt-get install -y python3-venv" >&2
    exit 1
  }
  "$py/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
fi

# JavaScript: ComponentizeJS and jco, pinned in a private npm project.
js="$tools/node"
stamp="componentize-js@$COMPONENTIZE_JS_VERSION jco@$JCO_VERSION"
if [ "$(cat "$js/.installed" 2>/dev/null)" != "$stamp" ] || [ ! -x "$js/node_modules/.bin/jco" ]; then
  echo "handler-tools: installing $stamp into $js" >&2
  rm -rf "$js"
  mkdir -p "$js"
  printf '{ "name": "switchyard-handler-tools", "private": true }\n' >"$js/package.json"
  npm install --prefix "$js" --no-audit --no-fund --loglevel=error --save-exact \
    "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" \
    "@bytecodealliance/jco@$JCO_VERSION" >&2
  echo "$stamp" >"$js/.installed"
fi

echo "COMPONENTIZE_PY=$py/bin/componentize-py"
echo "COMPONENTIZE_PY_VERSION=$COMPONENTIZE_PY_VERSION"
echo "COMPONENTIZE_JS=$js/node_modules/.bin/componentize-js"
echo "JCO=$js/node_modules/.bin/jco"
echo "COMPONENTIZE_JS_VERSION=$COMPONENTIZE_JS_VERSION"
echo "JCO_VERSION=$JCO_VERSION"
