#!/usr/bin/env bash
# make bench-sweep: seeds a fresh emulator with a fleet of keys and measures the sweep.
#   BENCH_PRIMARIES (default 1000) multi-Region primaries, each with replicas in us-west-2 and
#   eu-west-1 (40% in sync, 30% reformatted-equivalent, 25% drifted, 5% drifted+excluded),
#   plus 9x as many single-Region keys. Then the release CLI sweeps the three Regions, first
#   as a dry-run and then with --apply, and the emulator's own ceiling is measured.
# Prints keys/s, KMS calls per replica by operation, and the ceiling; checks that the sweep
# found exactly the drifted replicas. Uses its own emulator on BENCH_PORT (default 4599).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PRIMARIES=${BENCH_PRIMARIES:-1000}
PORT=${BENCH_PORT:-4599}
OUT=bench/.out
mkdir -p "$OUT"
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_ACCESS_KEY_ID=111122223333 AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
REGIONS=us-east-1,us-west-2,eu-west-1

echo "==> fresh emulator on 127.0.0.1:$PORT"
trap 'LOCALSTACK_PORT=$PORT scripts/localstack.sh stop >/dev/null 2>&1 || true' EXIT
LOCALSTACK_PORT=$PORT scripts/localstack.sh fresh

echo "==> cargo build --release --bin kms-replica-guard"
cargo build --release --quiet --bin kms-replica-guard
CLI=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/release/kms-replica-guard

echo "==> seeding $PRIMARIES primaries (+ replicas and $((PRIMARIES * 9)) single-Region keys)"
.venv/bin/python bench/seed.py --primaries "$PRIMARIES" --manifest "$OUT/manifest.json" >"$OUT/seed.json"
jq -c '{elapsed_s, calls_per_s}' "$OUT/seed.json" 2>/dev/null || cat "$OUT/seed.json"

sweep() { # sweep NAME [--apply]
  local name=$1; shift
  local code=0
  /usr/bin/time -f %M -o "$OUT/$name.rss-kb" \
    "$CLI" --baseline file:baselines/example.json sweep --regions "$REGIONS" --output json "$@" >"$OUT/$name.json" 2>"$OUT/$name.log" || code=$?
  echo "    exit code $code, peak RSS $(tail -n 1 "$OUT/$name.rss-kb") KiB"
}

echo "==> sweep (dry-run)"
sweep dry-run
echo "==> sweep --apply"
sweep apply --apply

echo "==> emulator ceiling: the same Rust SDK client, same concurrency, no rate limit (10 s per operation)"
CEILING_KEY=$(jq -r '.replicas[0].arn' "$OUT/manifest.json")
cargo run --release --quiet --example emulator_ceiling -- "$CEILING_KEY" 16 10 >"$OUT/ceiling.json"
cat "$OUT/ceiling.json"

.venv/bin/python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
m = json.load(open(f"{out}/manifest.json"))
exp = m["expected"]
ceiling = {op: v["rps"] for op, v in json.load(open(f"{out}/ceiling.json")).items()}
ok = True
report = {"primaries": len(m["primaries"]), "replicas": len(m["replicas"]),
          "single_region_keys": sum(len(v) for v in m["single_region_keys"].values()), "emulator_ceiling_rps": ceiling}
for name, want_action in (("dry-run", "drift-detected"), ("apply", "remediated")):
    r = json.load(open(f"{out}/{name}.json"))
    swept = sum(r["summary"].values())
    got = {o["key_arn"] for o in r["outcomes"] if o["action"] == want_action}
    skipped = {o["key_arn"] for o in r["outcomes"] if o["action"] == "skipped"}
    exact = got == set(exp["remediate"]) and skipped == set(exp["skip_excluded"])
    ok &= exact
    calls = r["kms_calls"]
    total = sum(calls.values())
    secs = r["elapsed_seconds"]
    report[name] = {
        "replicas_swept": swept, "seconds": round(secs, 2), "replicas_per_s": round(swept / secs, 1),
        "summary": r["summary"], "found_exactly_the_drifted": exact,
        "peak_rss_mib": round(int(open(f"{out}/{name}.rss-kb").read().split()[-1]) / 1024, 1),
        "kms_calls": calls, "kms_calls_per_replica": {k: round(v / swept, 3) for k, v in calls.items() if v},
        "kms_calls_per_s": round(total / secs, 1),
        "fraction_of_emulator_ceiling": round(total / secs / ceiling["GetKeyPolicy"], 2),
    }
json.dump(report, open(f"{out}/sweep-report.json", "w"), indent=2)
print(json.dumps(report, indent=2))
sys.exit(0 if ok else 1)
PY
echo "report: $OUT/sweep-report.json"
