#!/usr/bin/env bash
# Makes sure the MariaDB and PostgreSQL servers the tests use are up (127.0.0.1:3306 as root
# without password, 127.0.0.1:5432 as postgres with trust auth, each with a database `test`):
# checks with a real connection, starts a server that is down, waits until it accepts
# connections, and exits non-zero, saying which one and why, if either cannot be reached.
set -euo pipefail

wait_for() { # command... : retries it for up to 30 s
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  return 1
}

mariadb_up() { mysql -uroot -h127.0.0.1 -P3306 -e 'SELECT 1' test; }
postgres_up() { psql -h127.0.0.1 -p5432 -Upostgres -d test -tAc 'SELECT 1'; }

fail=0
if ! mariadb_up >/dev/null 2>&1; then
  echo "MariaDB is down: starting it" >&2
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  if ! wait_for mariadb_up; then
    echo "ERROR: MariaDB does not accept connections at 127.0.0.1:3306 (root, database test)." >&2
    echo "       Start it with: start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd" >&2
    fail=1
  fi
fi
if ! postgres_up >/dev/null 2>&1; then
  echo "PostgreSQL is down: starting it" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  if ! wait_for postgres_up; then
    echo "ERROR: PostgreSQL does not accept connections at 127.0.0.1:5432 (postgres, database test)." >&2
    echo "       Start it with: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
    fail=1
  fi
fi
if [ "$fail" -ne 0 ]; then exit 1; fi
echo "databases up: MariaDB $(mysql -uroot -h127.0.0.1 -N -e 'SELECT VERSION()' test)," \
  "PostgreSQL $(psql -h127.0.0.1 -Upostgres -d test -tAc 'SHOW server_version')" >&2
