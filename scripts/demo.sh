#!/usr/bin/env bash
# The main job on the embedded default (SQLite file, in-process queue): migrate, publish the
# sample events, run the host until every row is final, and show each hop.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
scripts/build-components.sh >/dev/null
cargo build --quiet --bin switchyard
bin="${CARGO_TARGET_DIR:-$root/target}/debug/switchyard"
config=examples/switchyard.toml
rm -f examples/demo.db examples/demo.db-wal examples/demo.db-shm

echo "== migrate"; "$bin" migrate -c "$config"
# The task component's `tasks` table (SmartFlow's DDL; Switchyard's migrations are outbox-only).
python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).executescript(open(sys.argv[2]).read())' \
  examples/demo.db examples/smartflow/schema/sqlite.sql
echo "== publish"
"$bin" publish -c "$config" --type task.record.requested --key user-3 --payload-file examples/events/task.record.requested.json
"$bin" publish -c "$config" --type task.urgency.promote.requested --key user-3 --payload-file examples/events/task.urgency.promote.requested.json
"$bin" publish -c "$config" --type task.urgency.promote.requested --key user-0 --payload '{"user_id": 0, "task_ids": [1]}'
echo "== status before the host runs"; "$bin" status -c "$config"

echo "== run (each hop is logged: published by the relay, then handled by the component)"
RUST_LOG="${RUST_LOG:-info,switchyard=debug}" "$bin" run -c "$config" &
host=$!
# Returns as soon as every row is final (status --json, parsed by jq or python3).
scripts/wait-consumed.sh "$bin" "$config" 30 || echo "(continuing: see the status above)"
echo "== status while the host runs (routes from its admin endpoint)"; "$bin" status -c "$config"
kill -TERM "$host"; wait "$host"
echo "== status after"; "$bin" status -c "$config"
