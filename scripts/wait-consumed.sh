#!/usr/bin/env bash
# Waits until every service of a config has no open row (pending + published = 0), reading
# `switchyard status --json`, and returns as soon as that holds. Exit 0 when done, 1 after the
# timeout (the last status is printed), 2 when neither jq nor python3 is there to parse JSON.
#   scripts/wait-consumed.sh BIN CONFIG [TIMEOUT_SECONDS (default 30)]
# Parses with jq when installed (scripts/setup.sh installs it on Debian), else python3.
set -euo pipefail
bin="$1" config="$2" timeout="${3:-30}"

if command -v jq >/dev/null; then
  open_rows() { jq -e '[.services[] | .counts.pending + .counts.published] | add // 0'; }
elif command -v python3 >/dev/null; then
  open_rows() {
    python3 -c 'import json, sys; print(sum(s["counts"]["pending"] + s["counts"]["published"] for s in json.load(sys.stdin)["services"]))'
  }
else
  echo "wait-consumed.sh needs jq or python3 to read \`switchyard status --json\`:" \
       "run scripts/setup.sh (installs jq) or apt-get install jq" >&2
  exit 2
fi

deadline=$((SECONDS + timeout))
while :; do
  # A status that fails (the host still opening the database) counts as "not yet".
  if open=$("$bin" status -c "$config" --json 2>/dev/null | open_rows) && [ "$open" = 0 ]; then
    exit 0
  fi
  if ((SECONDS >= deadline)); then
    echo "rows still open after ${timeout}s:" >&2
    "$bin" status -c "$config" >&2 || true
    exit 1
  fi
  sleep 0.1
done
