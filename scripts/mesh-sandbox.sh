#!/usr/bin/env bash
# Start/stop NHS Digital's mesh-sandbox (MESH API) on a free 127.0.0.1 port.
#
#   bash scripts/mesh-sandbox.sh start STATE_DIR [extra uvicorn args, e.g. --ssl-certfile ...]
#       -> prints "PORT PID" on its last line (exit 0) once GET /health answers 200
#   bash scripts/mesh-sandbox.sh stop STATE_DIR
#
# Env: MESH_SANDBOX_VENV  venv made by scripts/mesh-sandbox-venv.sh
#                         (default <repo>/target/mesh-sandbox-venv)
# Sandbox config: STORE_MODE=memory AUTH_MODE=full SHARED_KEY=TestKey, --workers 1.
# STATE_DIR holds sandbox.pid, sandbox.port and sandbox.log.
# For humans and CI debugging; the Rust test harness starts uvicorn the same way itself.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
VENV=${MESH_SANDBOX_VENV:-$REPO_ROOT/target/mesh-sandbox-venv}

usage() { echo "usage: $0 start|stop STATE_DIR [uvicorn args...]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
CMD=$1; STATE_DIR=$2; shift 2
PIDFILE=$STATE_DIR/sandbox.pid
PORTFILE=$STATE_DIR/sandbox.port
LOG=$STATE_DIR/sandbox.log

alive() { kill -0 "$1" 2>/dev/null; }

stop_pid() {
  local pid=$1
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do alive "$pid" || return 0; sleep 0.1; done
}

case "$CMD" in
start)
  [[ -x "$VENV/bin/uvicorn" ]] || { echo "error: $VENV/bin/uvicorn missing; run scripts/mesh-sandbox-venv.sh" >&2; exit 1; }
  mkdir -p "$STATE_DIR"
  if [[ -f "$PIDFILE" ]] && alive "$(cat "$PIDFILE")"; then
    echo "error: sandbox already running (pid $(cat "$PIDFILE")); stop it first" >&2; exit 1
  fi
  rm -f "$PIDFILE" "$PORTFILE"
  PORT=$("$VENV/bin/python" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()')
  SCHEME=http
  for a in "$@"; do [[ "$a" == --ssl-certfile* ]] && SCHEME=https; done
  export STORE_MODE=memory AUTH_MODE=full SHARED_KEY=TestKey PYTHONWARNINGS=ignore
  # nohup on a line of its own so that $! is the uvicorn (python) process itself.
  nohup "$VENV/bin/uvicorn" mesh_sandbox.api:app --host 127.0.0.1 --port "$PORT" --workers 1 "$@" \
    > "$LOG" 2>&1 < /dev/null &
  PID=$!
  echo "$PID" > "$PIDFILE"
  echo "$PORT" > "$PORTFILE"
  for _ in $(seq 1 150); do   # ~15 s
    if ! alive "$PID"; then
      echo "error: sandbox exited during startup; log follows" >&2; tail -n 30 "$LOG" >&2
      rm -f "$PIDFILE" "$PORTFILE"; exit 1
    fi
    if curl -sfk -o /dev/null --max-time 1 "$SCHEME://127.0.0.1:$PORT/health"; then
      echo "$PORT $PID"; exit 0
    fi
    sleep 0.1
  done
  echo "error: sandbox did not answer /health within 15 s; log follows" >&2; tail -n 30 "$LOG" >&2
  stop_pid "$PID"; rm -f "$PIDFILE" "$PORTFILE"; exit 1
  ;;
stop)
  if [[ ! -f "$PIDFILE" ]]; then echo "no $PIDFILE; nothing to stop" >&2; exit 0; fi
  PID=$(cat "$PIDFILE")
  stop_pid "$PID"
  if alive "$PID"; then echo "error: pid $PID still alive" >&2; exit 1; fi
  rm -f "$PIDFILE" "$PORTFILE"
  echo "stopped $PID" >&2
  ;;
*) usage ;;
esac
