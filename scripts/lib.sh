# Shared shell helpers for the demo and the end-to-end test: the emulator's AWS CLI, key
# families with fixed ids, and the function under `cargo lambda watch`.
# Source it; it expects ROOT to be the repo root.

: "${ROOT:?ROOT must be the repository root}"
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:${LOCALSTACK_PORT:-4566}}"
# LocalStack derives the account from a 12-digit access key id: the sample events' account.
export AWS_ACCESS_KEY_ID=111122223333 AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
export PATH="$ROOT/.venv/bin:$PATH"
ACCOUNT=111122223333
REMEDIATOR_ROLE_ARN="arn:aws:iam::${ACCOUNT}:role/kms-replica-guard-remediator"
WATCH_PORT="${WATCH_PORT:-9000}"
WATCH_PID=""

awsl() { aws --endpoint-url "$AWS_ENDPOINT_URL" --output json "$@"; }

key_arn() { echo "arn:aws:kms:$1:${ACCOUNT}:key/$2"; }

# create_family KEY_ID POLICY_FILE REGION... : primary in us-east-1 (id KEY_ID, policy from
# POLICY_FILE) and replicas in REGION...; an existing family is reused.
create_family() {
  local id=$1 policy=$2; shift 2
  if ! awsl kms describe-key --region us-east-1 --key-id "$id" >/dev/null 2>&1; then
    awsl kms create-key --region us-east-1 --multi-region --description "kms-replica-guard demo key" \
      --policy "file://$policy" --tags "TagKey=_custom_id_,TagValue=$id" >/dev/null
  fi
  local r
  for r in "$@"; do
    if ! awsl kms describe-key --region "$r" --key-id "$id" >/dev/null 2>&1; then
      awsl kms replicate-key --region us-east-1 --key-id "$id" --replica-region "$r" >/dev/null
    fi
  done
}

put_policy() { awsl kms put-key-policy --region "$1" --key-id "$2" --policy-name default --policy "$3"; }
get_policy() { awsl kms get-key-policy --region "$1" --key-id "$2" --policy-name default --query Policy --output text; }

# The default key policy, as KMS gives a replica created without a policy.
default_policy() {
  cat <<JSON
{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::${ACCOUNT}:root"},"Action":"kms:*","Resource":"*"}]}
JSON
}

# function_env FILE BASELINE_FILE NAMESPACE: the function's environment for local runs.
function_env() {
  cat >"$1" <<ENV
AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
AWS_REGION=us-east-1
AWS_LAMBDA_LOG_FORMAT=JSON
REMEDIATION_MODE=enforce
BASELINE_SOURCE=file:$2
REMEDIATOR_ROLE_ARN=$REMEDIATOR_ROLE_ARN
METRICS_NAMESPACE=$3
SWEEP_REGIONS=us-west-2,eu-west-1
ENV
}

# start_watch ENV_FILE LOG: builds the release binary (visibly, failing fast), then runs it
# under cargo lambda watch on 127.0.0.1:$WATCH_PORT and waits until the port accepts.
start_watch() {
  local env_file=$1 log=$2
  echo "    cargo build --release --bin bootstrap"
  (cd "$ROOT" && cargo build --release --bin bootstrap --quiet)
  (cd "$ROOT" && exec cargo lambda watch --release --ignore-changes -A 127.0.0.1 -P "$WATCH_PORT" \
      --env-file "$env_file") >"$log" 2>&1 &
  WATCH_PID=$!
  local i
  for i in $(seq 1 240); do
    if ! kill -0 "$WATCH_PID" 2>/dev/null; then
      echo "error: cargo lambda watch exited; last lines of $log:" >&2
      tail -n 30 "$log" >&2
      return 1
    fi
    # A TCP connect only: an HTTP request to the server would be taken as an invocation.
    if (exec 3<>"/dev/tcp/127.0.0.1/${WATCH_PORT}") 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  echo "error: cargo lambda watch did not listen on 127.0.0.1:${WATCH_PORT} within 2 min; see $log" >&2
  return 1
}

stop_watch() {
  if [[ -n "$WATCH_PID" ]] && kill -0 "$WATCH_PID" 2>/dev/null; then
    kill "$WATCH_PID" 2>/dev/null || true
    wait "$WATCH_PID" 2>/dev/null || true
  fi
  # The function process is a child of the watcher; make sure nothing keeps the port.
  pkill -f "/release/bootstrap" 2>/dev/null || true
  WATCH_PID=""
}

# invoke EVENT_FILE: the function's response (or error) as JSON on stdout.
invoke() {
  cargo lambda invoke bootstrap -A 127.0.0.1 -P "$WATCH_PORT" --data-file "$1" --output-format json
}
