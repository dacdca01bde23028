#!/usr/bin/env bash
# Every offline check of infra/, one result line per check; exits 1 when any check fails.
# Offline and credential-free: dummy credentials, no AWS calls except to the local emulator.
#   infra/scripts/infra-test.sh          (or: make infra-test)
# Logs of each check: infra/.build/logs/<check>.log
set -uo pipefail
cd "$(dirname "$0")/../.."

VENV_PY=${VENV_PY:-.venv/bin/python}
INFRA_BIN=.venv-infra/bin
BUILD=infra/.build
LOGS=$BUILD/logs
CDK_SYNTH_CONTEXT=${CDK_SYNTH_CONTEXT:--c account=111122223333 -c hubRegion=us-east-1 -c spokeRegions=us-west-2,eu-west-1 -c memberStack=true -c guardrails=true -c bundle=false -c remediationMode=enforce -c securityHub=on -c configRule=account}

export SAM_CLI_TELEMETRY=0
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN

mkdir -p "$LOGS"
passed=0
failed=0
failures=()
start_all=$EPOCHREALTIME

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# check NAME COMMAND... : runs COMMAND with its output in $LOGS/NAME.log and prints one line.
check() {
  local name=$1
  shift
  local log="$LOGS/$name.log" t0 secs
  t0=$EPOCHREALTIME
  if "$@" >"$log" 2>&1; then
    secs=$(elapsed "$t0")
    printf 'PASS  %-22s %6ss  %s\n' "$name" "$secs" "$(summary "$name" "$log")"
    passed=$((passed + 1))
  else
    secs=$(elapsed "$t0")
    printf 'FAIL  %-22s %6ss  (log: %s)\n' "$name" "$secs" "$log"
    tail -n 40 "$log" | sed 's/^/      | /'
    failed=$((failed + 1))
    failures+=("$name")
  fi
}

# A short detail for the result line, taken from the check's log.
summary() {
  local name=$1 log=$2
  case $name in
    checkov-guardrails) grep -m1 -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$log" || echo "no checkov check applies to AWS::Organizations::Policy" ;;
    checkov-*) grep -m1 -o 'Passed checks: [0-9]*, Failed checks: [0-9]*, Skipped checks: [0-9]*' "$log" ;;
    cfn-lint) echo "$(templates | wc -w) templates, 0 errors/warnings" ;;
    cdk-jest) grep -m1 -E '^Tests:' "$log" | tr -s ' ' ;;
    event-pattern) echo "$(grep -m1 -E '^Ran [0-9]+ tests' "$log"): KMS rules x events/*.json, guard event rules (exposure, write refused, exemption) x infra/tests/fixtures/*.json (+ their SNS messages), guard change rule (and the us-east-1 spoke forwarding its IAM branch to another Region) x infra/tests/fixtures/guard-changes/*.json on the emulator" ;;
    alarms) echo "$(grep -m1 -E '^Ran [0-9]+ tests' "$log"): $(grep -c '^FIRE' "$BUILD/alarms/report.txt") alarms fired and reached the subscriber, $(grep -c '^QUIET' "$BUILD/alarms/report.txt") stayed OK" ;;
    templates) echo "$(grep -m1 -E '^Ran [0-9]+ tests' "$log"): skips justified, each hub stack's own wiring" ;;
    guardrails) echo "$(grep -m1 -E '^Ran [0-9]+ tests' "$log"): JSON = CloudFormation (which CDK includes), tag keys, roles and actions = the stacks' and the function's" ;;
    permissions) echo "$(grep -m1 -E '^Ran [0-9]+ tests' "$log"): the roles' actions = the AWS calls in the code (+ what Lambda needs)" ;;
    contract) echo "$(grep -m1 -E '^Ran [0-9]+ tests' "$log"): the stacks = infra/contract.json (SAM: parameters, alarms, dashboard, rules, functions, the function roles, the bucket, topic and key policies, the resources by type, the backups bucket; both: outputs)" ;;
    cdk-synth) echo "$(ls infra/cdk/cdk.out/*.template.json | wc -l) templates in infra/cdk/cdk.out" ;;
    sam-validate*) echo "$(ls infra/sam/*.yaml | wc -l) templates" ;;
    sam-translate) echo "$(ls "$BUILD"/sam/*.cfn.json | wc -l) templates -> $BUILD/sam" ;;
    setup) echo ".venv-infra and infra/cdk/node_modules up to date" ;;
    *) : ;;
  esac
}

# The SAM templates, their offline translation (checks sam_to_cfn.py's fidelity) and the CDK output.
templates() { echo infra/sam/*.yaml "$BUILD"/sam/*.cfn.json infra/guardrails/*.yaml infra/cdk/cdk.out/*.template.json; }

cdk_synth() {
  rm -rf infra/cdk/cdk.out
  # shellcheck disable=SC2086 # the context is a list of -c flags
  (cd infra/cdk && npx --no-install cdk synth --no-notices -q $CDK_SYNTH_CONTEXT)
}

sam_validate() {
  local t rc=0
  for t in infra/sam/*.yaml; do
    "$INFRA_BIN/sam" validate --region us-east-1 "$@" -t "$t" || rc=1
  done
  return $rc
}

checkov_scan() {
  # checkov passes an empty or missing directory: make sure there is something to scan.
  if ! compgen -G "$1/*.json" >/dev/null; then
    echo "no templates in $1" >&2
    return 1
  fi
  "$INFRA_BIN/checkov" -d "$1" --framework cloudformation --compact --skip-download
}

cdk_jest() { (cd infra/cdk && npx --no-install jest --ci --verbose); }

event_pattern() {
  cargo xtask emulator start || return 1
  "$VENV_PY" -m unittest discover -s infra/tests -p 'test_*_pattern.py' -v
}

# The stacks' own alarms on the emulator, driven by the function (cargo lambda watch, dev build).
alarms() {
  cargo xtask emulator start || return 1
  "$VENV_PY" -m unittest discover -s infra/tests -p 'test_alarms.py' -v
}

template_checks() { "$VENV_PY" -m unittest discover -s infra/tests -p 'test_templates.py' -v; }

guardrails() { "$VENV_PY" -m unittest discover -s infra/tests -p 'test_guardrails.py' -v; }
permissions() { "$VENV_PY" -m unittest discover -s infra/tests -p 'test_permissions.py' -v; }
contract() { "$VENV_PY" -m unittest discover -s infra/tests -p 'test_contract.py' -v; }

# checkov exits 0 with no output when no check applies; a failed check still fails this.
checkov_guardrails() { "$INFRA_BIN/checkov" -f infra/guardrails/guardrails.yaml --framework cloudformation --compact --skip-download; }

check setup infra/scripts/setup.sh
if ((failed)); then
  echo "infra-test: setup failed, nothing else can run" >&2
  exit 1
fi
check cdk-synth cdk_synth
check sam-translate "$INFRA_BIN/python" infra/scripts/sam_to_cfn.py "$BUILD/sam" infra/sam/*.yaml

# The alarms check needs both stacks' templates and then mostly waits: an alarm returns to OK only
# once its data has left the alarm's 5-minute window, which is minutes of idle time. It runs beside
# the other checks (it creates its own uniquely named resources on the emulator); its result line
# comes last, and it fails this script like any other check.
alarms_pid=
if ((failed == 0)); then
  (
    check alarms alarms
    exit "$failed"
  ) >"$LOGS/alarms.result" 2>&1 &
  alarms_pid=$!
fi
check cfn-lint "$INFRA_BIN/cfn-lint" $(templates)
check sam-validate sam_validate
check sam-validate-lint sam_validate --lint
check checkov-sam checkov_scan "$BUILD/sam"
check checkov-cdk checkov_scan infra/cdk/cdk.out
check checkov-guardrails checkov_guardrails
check cdk-jest cdk_jest
check templates template_checks
check guardrails guardrails
check permissions permissions
check contract contract
check event-pattern event_pattern
if [[ -n $alarms_pid ]]; then
  if wait "$alarms_pid"; then passed=$((passed + 1)); else
    failed=$((failed + 1))
    failures+=(alarms)
  fi
  cat "$LOGS/alarms.result"
else
  echo "SKIP  alarms: the templates it reads did not build (see the failures above)"
  failed=$((failed + 1))
  failures+=(alarms)
fi

total=$(elapsed "$start_all")
if ((failed)); then
  echo "infra-test: $failed FAILED (${failures[*]}), $passed passed in ${total}s"
  exit 1
fi
echo "infra-test: all $passed checks passed in ${total}s"
