#!/usr/bin/env bash
# make bench-coldstart: cold start and peak RSS of the release `bootstrap` beside a hello-world
# lambda_runtime binary built with the same release profile (examples/hello_lambda.rs; and, for
# a like-for-like init figure, the same on tokio's current-thread runtime, as the function
# runs), served by a local Runtime API (bench/coldstart.py). Builds both, starts a fresh emulator on
# COLDSTART_PORT (default 4581), seeds a small fleet (all replicas in sync), runs
# COLDSTART_INIT_RUNS (default 200) init-only starts per binary, then COLDSTART_RUNS (default 20)
# cold starts per binary and scenario, stops the emulator.
# Extra arguments go to bench/coldstart.py (e.g. --scenarios in-sync --check-budgets).
# Host build (x86_64 here): the deployed arm64 binary cannot run on this machine.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PORT=${COLDSTART_PORT:-4581}
RUNS=${COLDSTART_RUNS:-20}
INIT_RUNS=${COLDSTART_INIT_RUNS:-200}
OUT=bench/.out/coldstart
mkdir -p "$OUT"
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_ACCESS_KEY_ID=111122223333 AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

echo "==> cargo build --release --bin bootstrap --example hello_lambda --example hello_lambda_current_thread"
cargo build --release --bin bootstrap --example hello_lambda --example hello_lambda_current_thread
TARGET=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
BOOTSTRAP=$TARGET/release/bootstrap
HELLO=$TARGET/release/examples/hello_lambda
HELLO_CT=$TARGET/release/examples/hello_lambda_current_thread
ls -l "$BOOTSTRAP" "$HELLO" "$HELLO_CT"

echo "==> fresh emulator on 127.0.0.1:$PORT"
trap 'LOCALSTACK_PORT=$PORT scripts/localstack.sh stop >/dev/null 2>&1 || true' EXIT
LOCALSTACK_PORT=$PORT scripts/localstack.sh fresh

echo "==> seeding 10 multi-Region keys (replicas in us-west-2 and eu-west-1, in sync) + 20 single-Region keys"
.venv/bin/python bench/seed.py --primaries 10 --single-region-factor 2 --mix 1:0:0:0 \
  --manifest "$OUT/manifest.json" >"$OUT/seed.json"

echo "==> bench/coldstart.py --runs $RUNS"
.venv/bin/python bench/coldstart.py --manifest "$OUT/manifest.json" --bootstrap "$BOOTSTRAP" --hello "$HELLO" \
  --hello-current-thread "$HELLO_CT" --init-runs "$INIT_RUNS" --runs "$RUNS" --out-dir "$OUT" --json "$OUT/result.json" "$@"
