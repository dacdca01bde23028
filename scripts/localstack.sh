#!/usr/bin/env bash
# Starts / stops the local AWS emulator (LocalStack community, host mode, loopback only).
#   scripts/localstack.sh start   # idempotent; waits until KMS, CloudWatch, ... are running
#   scripts/localstack.sh stop
#   scripts/localstack.sh fresh   # stop, forget all state, start (benchmarks)
#   scripts/localstack.sh status
# Port: LOCALSTACK_PORT (default 4566). State and logs live in .localstack/.
# If AWS_ENDPOINT_URL points at an emulator that already answers, nothing is started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PORT=${LOCALSTACK_PORT:-4566}
ENDPOINT="http://127.0.0.1:${PORT}"
# One state dir per port, so a second emulator (the sweep benchmark) can run beside the first.
STATE_DIR="$ROOT/.localstack/$PORT"
PIDFILE="$STATE_DIR/localstack.pid"
LOG="$STATE_DIR/localstack.log"
SERVICES_WANTED="kms,cloudwatch,events,sqs,s3,ssm,sts"

healthy() {
  local url=$1
  curl -fsS --max-time 2 "$url/_localstack/health" 2>/dev/null \
    | python3 -c 'import json,sys
s = json.load(sys.stdin).get("services", {})
need = ["kms", "cloudwatch", "events", "sts"]
sys.exit(0 if all(s.get(n) in ("running", "available") for n in need) else 1)' 2>/dev/null
}

start() {
  if [[ -n "${AWS_ENDPOINT_URL:-}" && "${AWS_ENDPOINT_URL}" != "$ENDPOINT" ]]; then
    if healthy "$AWS_ENDPOINT_URL"; then
      echo "using the emulator already running at $AWS_ENDPOINT_URL"
      return 0
    fi
    echo "error: AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL does not answer as LocalStack." >&2
    echo "       Start it, or unset AWS_ENDPOINT_URL to let this script start one on $ENDPOINT." >&2
    return 1
  fi
  if healthy "$ENDPOINT"; then
    echo "LocalStack already running at $ENDPOINT"
    return 0
  fi
  scripts/setup-venv.sh
  mkdir -p "$STATE_DIR/fs"
  echo "==> starting LocalStack on $ENDPOINT (log: $LOG)"
  OVERRIDE_IN_DOCKER=0 \
  FILESYSTEM_ROOT="$STATE_DIR/fs" \
  GATEWAY_SERVER=hypercorn \
  GATEWAY_LISTEN="127.0.0.1:${PORT}" \
  DNS_ADDRESS=0 \
  DISABLE_EVENTS=1 \
  SKIP_SSL_CERT_DOWNLOAD=1 \
  SERVICES="$SERVICES_WANTED" \
  EAGER_SERVICE_LOADING=1 \
  LOCALSTACK_HOST="127.0.0.1:${PORT}" \
    nohup .venv/bin/python -m localstack.runtime.main >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 120); do
    if healthy "$ENDPOINT"; then
      echo "LocalStack ready at $ENDPOINT"
      return 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "error: LocalStack exited during start-up; last lines of $LOG:" >&2
      tail -n 30 "$LOG" >&2
      return 1
    fi
    sleep 0.5
  done
  echo "error: LocalStack did not become healthy within 60 s; last lines of $LOG:" >&2
  tail -n 30 "$LOG" >&2
  return 1
}

stop() {
  if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    local pid
    pid=$(cat "$PIDFILE")
    kill "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    echo "LocalStack stopped"
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  fresh) stop >/dev/null 2>&1 || true; rm -rf "$STATE_DIR"; unset AWS_ENDPOINT_URL; start ;;
  status) if healthy "${AWS_ENDPOINT_URL:-$ENDPOINT}"; then echo "running at ${AWS_ENDPOINT_URL:-$ENDPOINT}"; else echo "not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|fresh|status" >&2; exit 2 ;;
esac
