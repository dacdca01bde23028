#!/usr/bin/env bash
# The main job end to end on the local emulator: a primary key with the baseline policy,
# one replica with the default policy (as ReplicateKey leaves it) and one hand-drifted
# replica; the function (release build under cargo lambda watch) heals both from the
# sample CloudTrail events; before/after, outcomes and the CloudWatch metric are shown.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/scripts/lib.sh"
cd "$ROOT"

KEY_ID=mrk-1234abcd12ab34cd56ef1234567890ab   # the id the sample events name
NAMESPACE=KmsReplicaGuardDemo
BASELINE="$ROOT/baselines/example.json"
WORK=$(mktemp -d)
trap 'stop_watch; rm -rf "$WORK"' EXIT
START=$(date -u -d '-1 min' +%FT%TZ)

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
sids() { get_policy "$1" "$KEY_ID" | jq -c '[.Statement[] | .Sid // "(no Sid)"]'; }

bold "1. Emulator"
scripts/localstack.sh start

bold "2. Keys: primary us-east-1 with the baseline; replicas us-west-2 and eu-west-1"
sed -e "s/{{Partition}}/aws/g; s/{{AccountId}}/$ACCOUNT/g; s/{{Region}}/us-east-1/g" "$BASELINE" >"$WORK/primary.json"
create_family "$KEY_ID" "$WORK/primary.json" us-west-2 eu-west-1
put_policy us-east-1 "$KEY_ID" "$(cat "$WORK/primary.json")"
# us-west-2: the default policy ReplicateKey gives a replica created without one.
put_policy us-west-2 "$KEY_ID" "$(default_policy)"
# eu-west-1: someone "temporarily" opened it up by hand.
put_policy eu-west-1 "$KEY_ID" "$(jq -c '.Statement += [{"Sid":"TemporaryDebugAccess","Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:Decrypt","Resource":"*"}]' "$WORK/primary.json" | sed 's/us-east-1/eu-west-1/g')"
echo "before:"
for r in us-east-1 us-west-2 eu-west-1; do printf '  %-10s %s\n' "$r" "$(sids "$r")"; done

bold "3. The function: cargo lambda watch --release (REMEDIATION_MODE=enforce, BASELINE_SOURCE=file:baselines/example.json)"
function_env "$WORK/env" "$BASELINE" "$NAMESPACE"
start_watch "$WORK/env" "$WORK/watch.log"
echo "listening on 127.0.0.1:$WATCH_PORT (log: function output below is from $WORK/watch.log)"

for ev in replicate-key put-key-policy-replica-arn put-key-policy-by-remediator scheduled-sweep; do
  bold "4. cargo lambda invoke --data-file events/$ev.json"
  # Other keys in the emulator (from tests) show up in the sweep: list the demo key's
  # outcomes and count the rest.
  invoke "events/$ev.json" | tee "$WORK/$ev.out.json" | jq --arg id "$KEY_ID" '{
      outcomes: [.outcomes[] | select(.key_arn | endswith($id)) | {key_arn, action, reason}],
      other_keys: ([.outcomes[] | select(.key_arn | endswith($id) | not) | .action] | group_by(.) | map({(.[0]): length}) | add),
      metrics}'
done
bold "   the drift diff reported for eu-west-1"
jq -r '.outcomes[0].diff' "$WORK/put-key-policy-replica-arn.out.json"

bold "5. After"
for r in us-east-1 us-west-2 eu-west-1; do printf '  %-10s %s\n' "$r" "$(sids "$r")"; done

bold "6. CloudWatch: $NAMESPACE AutoFixApplied (Sum since the demo started)"
awsl cloudwatch get-metric-statistics --namespace "$NAMESPACE" --metric-name AutoFixApplied \
  --start-time "$START" --end-time "$(date -u -d '+5 min' +%FT%TZ)" --period 60 --statistics Sum \
  --query '{AutoFixApplied: sum(Datapoints[].Sum)}'

bold "7. The function's per-key log lines (JSON)"
grep '"key reconciled"' "$WORK/watch.log" | head -n 4 | cut -c1-400
