#!/usr/bin/env bash
# End to end: the release binary under `cargo lambda watch`, driven by `cargo lambda invoke`
# with the sample events from events/, against the local emulator. Every check can fail;
# the script exits non-zero on the first failed check and prints a count at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
source "$ROOT/scripts/lib.sh"
WATCH_PORT="${E2E_WATCH_PORT:-9010}"

"$ROOT/scripts/localstack.sh" status >/dev/null || {
  echo "error: the emulator is not running at $AWS_ENDPOINT_URL; run scripts/localstack.sh start" >&2
  exit 1
}

WORK=$(mktemp -d)
trap 'stop_watch; rm -rf "$WORK"' EXIT
KEY_ID="mrk-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
NAMESPACE="KmsReplicaGuardE2E/$KEY_ID"
passed=0 failed=0

check() { # check NAME ACTUAL EXPECTED
  if [[ "$2" == "$3" ]]; then
    passed=$((passed + 1)); echo "  ok   $1"
  else
    failed=$((failed + 1)); echo "  FAIL $1: got [$2], want [$3]"
  fi
}

# The sample events, rewritten to name this run's fresh key.
for f in "$ROOT"/events/*.json; do
  sed "s/mrk-1234abcd12ab34cd56ef1234567890ab/$KEY_ID/g" "$f" >"$WORK/$(basename "$f")"
done

echo "==> keys: $KEY_ID (primary us-east-1, replicas us-west-2, eu-west-1)"
default_policy >"$WORK/default.json"
create_family "$KEY_ID" "$WORK/default.json" us-west-2 eu-west-1

function_env "$WORK/env" "$ROOT/baselines/example.json" "$NAMESPACE"

echo "==> cargo lambda watch --release"
start_watch "$WORK/env" "$WORK/watch.log"

action_of() { jq -r --arg k "$(key_arn "$1" "$KEY_ID")" '[.outcomes[] | select(.key_arn == $k) | .action] | join(",")' "$2"; }

echo "==> ReplicateKey: the new us-west-2 replica gets the baseline"
invoke "$WORK/replicate-key.json" >"$WORK/r1.json"
check "replicate-key remediates the replica" "$(action_of us-west-2 "$WORK/r1.json")" "remediated"

echo "==> PutKeyPolicy by hand on eu-west-1 (key id as ARN): healed"
put_policy eu-west-1 "$KEY_ID" '{"Version":"2012-10-17","Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},{"Sid":"Oops","Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*"}]}'
invoke "$WORK/put-key-policy-replica-arn.json" >"$WORK/r2.json"
check "put-key-policy on eu-west-1 remediates" "$(action_of eu-west-1 "$WORK/r2.json")" "remediated"
check "the diff names the rogue statement" "$(jq -r '.outcomes[0].diff | test("Oops")' "$WORK/r2.json")" "true"
check "eu-west-1 no longer grants kms:Decrypt to *" "$(get_policy eu-west-1 "$KEY_ID" | grep -c '"Oops"' || true)" "0"

echo "==> replays and no-ops"
invoke "$WORK/put-key-policy-replica-arn.json" >"$WORK/r3.json"
check "a replayed event finds the key in sync" "$(action_of eu-west-1 "$WORK/r3.json")" "in-sync"
for ev in put-key-policy-by-remediator put-key-policy-error read-only-describe-key unrelated-service create-key-single-region; do
  invoke "$WORK/$ev.json" >"$WORK/$ev.out.json"
  check "$ev is a no-op" "$(jq -c '.outcomes' "$WORK/$ev.out.json")" "[]"
done
invoke "$WORK/put-key-policy-primary.json" >"$WORK/r4.json"
check "a primary's event leaves it alone (file baseline)" "$(action_of us-east-1 "$WORK/r4.json")" "skipped"

echo "==> scheduled sweep over us-west-2 and eu-west-1"
invoke "$WORK/scheduled-sweep.json" >"$WORK/r5.json"
# In-sync replicas are counted in the summary, not listed (the response stays small).
check "sweep: nothing listed for this run's in-sync replicas" "$(action_of us-west-2 "$WORK/r5.json")$(action_of eu-west-1 "$WORK/r5.json")" ""
check "sweep: in-sync replicas counted" "$(jq '.summary["in-sync"] >= 2' "$WORK/r5.json")" "true"

echo "==> a malformed event fails the invocation with a non-retryable type"
echo '{"detail-type": "AWS API Call via CloudTrail", "source": "aws.kms", "detail": {"eventName": 7}}' >"$WORK/bad.json"
if invoke "$WORK/bad.json" >"$WORK/bad.out" 2>&1; then
  check "malformed event fails" "succeeded" "failed"
else
  check "malformed event names the field" "$(grep -c 'detail.eventName' "$WORK/bad.out" || true)" "1"
fi

echo "==> the auto-fix metric in CloudWatch"
sum=$(awsl cloudwatch get-metric-statistics --namespace "$NAMESPACE" --metric-name AutoFixApplied \
  --start-time "$(date -u -d '-10 min' +%FT%TZ)" --end-time "$(date -u -d '+10 min' +%FT%TZ)" \
  --period 60 --statistics Sum --query 'sum(Datapoints[].Sum)')
# The sweep also fixes drifted replicas other runs left in those Regions: the metric must
# equal every remediation this run reported, whichever keys they were.
reported=$(cat "$WORK"/r*.json "$WORK"/*.out.json | jq -s '[.[] | .outcomes[]? | select(.action == "remediated")] | length')
check "AutoFixApplied equals the remediations reported" "$sum" "$reported.0"
check "this run's two replicas were among them" "$(cat "$WORK"/r1.json "$WORK"/r2.json | jq -s '[.[].outcomes[] | select(.action == "remediated")] | length')" "2"

echo
echo "e2e: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
