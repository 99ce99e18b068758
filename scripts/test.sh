#!/usr/bin/env bash
# The test command: set up the machine, build the components, start what the tests need, and
# run every test. Under CI=true a missing server is a failure, never a skip.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
scripts/build-components.sh >/dev/null
# The Python and JavaScript example handlers: installs componentize-py and ComponentizeJS under
# ~/.cache/switchyard/handler-tools on first use; an unchanged handler is copied from its cache.
scripts/build-handlers.sh
scripts/databases.sh   # MariaDB and PostgreSQL up (started if down), or a loud failure
scripts/kafka.sh start  # the tansu broker on 127.0.0.1:9092 (a no-op if one runs), or a loud failure
cargo test --workspace "$@"
# The SmartFlow components' pure logic (payload rules, the promotion rule, the scheduler's
# decision and payload_mismatch, the 30-minute window, the kit's row accessor), unit-tested
# natively; the engine suite above runs the same crates as components.
cargo test --quiet --manifest-path plugins/Cargo.toml -p smartflow-kit -p task -p agent -p memory \
  -p active-scheduler -p notification
