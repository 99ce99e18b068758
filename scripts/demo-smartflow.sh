#!/usr/bin/env bash
# SmartFlow's whole chain on the embedded default (SQLite file, in-process queues), with a local
# webhook sink standing in for Feishu on 127.0.0.1:8099:
#   task.upsert.requested (task) → active_schedule.triggered (active-scheduler) → preview →
#   notification.feishu.requested (notification) → webhook received by the sink;
#   chat.history.persist.requested (agent, role user) → memory.extract.requested (memory).
# Every other sample event is published too, plus two invalid ones that end dead with a reason.
# The handlers write SmartFlow's own business tables (examples/smartflow/schema/sqlite.sql,
# applied here as a user would); their rows are printed at the end.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
scripts/build-components.sh >/dev/null
cargo build --quiet --bin switchyard --example webhook_sink
target="${CARGO_TARGET_DIR:-$root/target}/debug"
bin="$target/switchyard"
config="$root/examples/smartflow.toml"  # absolute: every path in it resolves the same from anywhere
ev=examples/events
rm -f examples/smartflow-demo.db examples/smartflow-demo.db-wal examples/smartflow-demo.db-shm examples/smartflow-demo.db.host-lock

"$target/examples/webhook_sink" 127.0.0.1:8099 &
sink=$!
trap 'kill "$sink" 2>/dev/null || true' EXIT

db=examples/smartflow-demo.db
echo "== migrate (Switchyard's outbox tables)"; "$bin" migrate -c "$config"
echo "== apply SmartFlow's business tables (examples/smartflow/schema/sqlite.sql)"
python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).executescript(open(sys.argv[2]).read())' \
  "$db" examples/smartflow/schema/sqlite.sql
echo "== publish (the chain starts from the task and the chat message)"
pub() { "$bin" publish -c "$config" "$@"; }
pub --type task.upsert.requested --key user-3 --payload-file "$ev/task.upsert.requested.json"
# SmartFlow's phase-1 smoke event: task 1 (priority 2, threshold passed) is promoted to 1.
pub --type task.record.requested --key user-3 --payload-file "$ev/task.record.requested.json"
pub --type task.urgency.promote.requested --key user-3 --payload-file "$ev/task.urgency.promote.requested.json"
pub --type chat.history.persist.requested --key user-3 --payload-file "$ev/chat.history.persist.requested.json"
pub --type chat.token.usage.adjust.requested --key user-3 --payload-file "$ev/chat.token.usage.adjust.requested.json"
pub --type agent.state.snapshot.persist --key user-3 --payload-file "$ev/agent.state.snapshot.persist.json"
pub --type agent.timeline.persist.requested --key user-3 --payload-file "$ev/agent.timeline.persist.requested.json"
pub --type memory.extract.requested --key user-3 --payload-file "$ev/memory.extract.requested.json"
pub --type active_schedule.triggered --version 1 --key user-3 --payload-file "$ev/active_schedule.triggered.json"
echo "== publish two invalid events (they end dead, with the reason in last_error)"
pub --type active_schedule.triggered --version v1 --key user-3 --payload-file "$ev/active_schedule.triggered.json"
pub --type notification.feishu.requested --version 1 --key user-3 \
  --payload '{"user_id": 3, "trigger_id": "x", "preview_id": "p", "dedupe_key": "d", "target_url": "https://evil.example/assistant/c", "requested_at": "2026-11-29T10:00:00Z", "summary_text": "s"}'
echo "== status before the host runs"; "$bin" status -c "$config"

echo "== run (each hop is logged: relayed from its table, handled by its service's component)"
RUST_LOG="${RUST_LOG:-info,switchyard=debug}" "$bin" run -c "$config" &
host=$!
# Returns as soon as every row is final (status --json, parsed by jq or python3).
scripts/wait-consumed.sh "$bin" "$config" 30 || echo "(continuing: see the status above)"
kill -TERM "$host"; wait "$host"
echo "== status after (every row consumed except the two invalid ones, dead)"; "$bin" status -c "$config"

echo "== SmartFlow's business tables, as the handlers left them"
python3 - "$db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for table in ["tasks", "chat_histories", "agent_chats", "agent_state_snapshot_records",
              "agent_timeline_events", "memory_jobs", "active_schedule_triggers",
              "active_schedule_previews", "notification_records", "notification_channels"]:
    cur = db.execute(f"SELECT * FROM {table} ORDER BY 1")
    rows = cur.fetchall()
    print(f"-- {table}: {len(rows)} row(s)")
    columns = [c[0] for c in cur.description]
    for row in rows:
        shown = []
        for name, value in zip(columns, row):
            text = str(value).replace("\n", "\\n")
            shown.append(f"{name}={text[:60] + '...' if len(text) > 60 else text}")
        print("   " + " ".join(shown))
PY
