#!/usr/bin/env bash
# The test command: set up the machine, build the components, start what the tests need, and
# run every test. Under CI=true a missing server is a failure, never a skip.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh
scripts/build-components.sh >/dev/null
scripts/databases.sh   # MariaDB and PostgreSQL up (started if down), or a loud failure
cargo test --workspace "$@"
