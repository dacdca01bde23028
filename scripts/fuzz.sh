#!/usr/bin/env bash
# Fuzzes the event parser and the key policy canonicaliser with cargo-fuzz (libFuzzer),
# each for a bounded time. Exits non-zero when a target crashes, and prints the input and
# the command that reproduces it.
#
#   scripts/fuzz.sh                      every target, FUZZ_SECONDS (default 60) each
#   scripts/fuzz.sh policy               one target
#   scripts/fuzz.sh repro TARGET INPUT   run one input through a target (a crash artifact,
#                                        a file under fuzz/regressions/, ...)
#
# Environment: FUZZ_SECONDS (time per target), FUZZ_SANITIZER (default below).
# Targets live in fuzz/fuzz_targets/; the corpus each run grows is fuzz/corpus/TARGET,
# crashes land in fuzz/artifacts/TARGET; inputs that once failed are kept in
# fuzz/regressions/TARGET and replayed first on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CARGO_FUZZ_VERSION=0.13.2
TARGETS=(event policy)
SECONDS_PER_TARGET=${FUZZ_SECONDS:-60}
# Sanitizer: none, by measurement on this crate (2 cores, shared with other builds; cold
# build of the whole instrumented dependency tree, then 60 s per target from the same seeds
# with -seed=1):
#   address: build 1447 s; event 10,813 exec/s (peak RSS 503 MB); policy 191 exec/s (510 MB)
#   none:    build 1231 s; event 60,172 exec/s (peak RSS 33 MB);  policy 1,121 exec/s (54 MB)
# AddressSanitizer costs 5.6-5.9x the executions. The crate has no unsafe code, so all it
# could add is memory errors in dependencies' unsafe code; what these targets look for
# (panics, failed invariants, integer overflow with -a, timeouts) is caught without it.
# FUZZ_SANITIZER=address runs the slower, wider check.
SANITIZER=${FUZZ_SANITIZER:-none}
# Inputs up to 64 KiB: twice KMS's 32 KiB policy limit, so oversize policies are covered,
# and more than any EventBridge event (256 KiB is the bus limit, CloudTrail KMS records are
# a few KiB).
MAX_LEN=65536
RSS_LIMIT_MB=2048
# Per-input time limit: a single input taking this long is reported like a crash.
INPUT_TIMEOUT_S=10

# cargo-fuzz passes nightly-only flags (-Zsanitizer, sanitizer coverage); RUSTC_BOOTSTRAP
# lets the stable toolchain accept them, so no nightly is needed.
export RUSTUP_TOOLCHAIN=stable
export RUSTC_BOOTSTRAP=1
export PATH="$ROOT/.tools/bin:$PATH"
# cargo-fuzz's own target dir (fuzz/target): its builds use different flags from the main
# crate's, so they must never share a target dir with it.
unset CARGO_TARGET_DIR
export CARGO_TERM_COLOR=never

BUILD_FLAGS=(--sanitizer "$SANITIZER" --debug-assertions)

install_cargo_fuzz() {
  local have
  have=$("$ROOT/.tools/bin/cargo-fuzz" --version 2>/dev/null || true)
  if [[ $have != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    echo "==> cargo install --locked --version $CARGO_FUZZ_VERSION --root .tools cargo-fuzz"
    cargo install --locked --version "$CARGO_FUZZ_VERSION" --root "$ROOT/.tools" cargo-fuzz
  fi
}

repro_command() {
  echo "scripts/fuzz.sh repro $1 $2"
}

raw_repro_command() {
  echo "RUSTUP_TOOLCHAIN=stable RUSTC_BOOTSTRAP=1 PATH=\"\$PWD/.tools/bin:\$PATH\" cargo fuzz run ${BUILD_FLAGS[*]} $1 $2"
}

# Seeds, rebuilt on every run from the repository's own files (never committed).
seed_dir() {
  local target=$1 dir=fuzz/target/seeds/$1
  rm -rf "$dir"
  mkdir -p "$dir"
  case $target in
    event)
      cp events/*.json tests/hostile/events/* "$dir"/
      ;;
    policy)
      local f name
      for f in baselines/*.json tests/hostile/baselines/*.json; do
        name=$(basename "$(dirname "$f")")-$(basename "$f")
        cp "$f" "$dir/$name"
        # The same template rendered, as the policy a key actually carries.
        sed -e 's/{{Partition}}/aws/g' -e 's/{{AccountId}}/111122223333/g' \
          -e 's/{{Region}}/us-west-2/g' "$f" >"$dir/rendered-$name"
      done
      # Pairs (NUL-separated) for the live-versus-desired comparison.
      for f in "$dir"/rendered-*; do
        { cat "$dir/rendered-baselines-example.json"; printf '\0'; cat "$f"; } \
          >"$dir/pair-$(basename "$f")"
      done
      ;;
  esac
  echo "$dir"
}

summary() {
  local target=$1 log=$2 seconds=$3 status=$4
  awk -v t="$target" -v s="$seconds" -v st="$status" '
    /^#[0-9]+/ && / cov: / { for (i = 1; i <= NF; i++) {
        if ($i == "cov:") cov = $(i + 1); if ($i == "ft:") ft = $(i + 1);
        if ($i == "corp:") corp = $(i + 1) } }
    /^stat::number_of_executed_units:/ { runs = $2 }
    /^stat::average_exec_per_sec:/ { eps = $2 }
    /^stat::peak_rss_mb:/ { rss = $2 }
    END { printf "fuzz %-7s %s: %s runs in %s s, %s exec/s, cov %s, ft %s, corpus %s, peak rss %s MB\n",
      t, st, runs, s, eps, cov, ft, corp, rss }' "$log"
}

run_target() {
  local target=$1 seeds log start status=0 elapsed artifact
  seeds=$(seed_dir "$target")
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  local corpora=("fuzz/corpus/$target" "$seeds")
  [[ -d fuzz/regressions/$target ]] && corpora+=("fuzz/regressions/$target")
  log=fuzz/target/fuzz-$target.log
  echo "==> cargo fuzz run ${BUILD_FLAGS[*]} $target (${SECONDS_PER_TARGET} s)"
  start=$(date +%s)
  cargo fuzz run "${BUILD_FLAGS[@]}" "$target" "${corpora[@]}" -- \
    -max_total_time="$SECONDS_PER_TARGET" -max_len="$MAX_LEN" -rss_limit_mb="$RSS_LIMIT_MB" \
    -timeout="$INPUT_TIMEOUT_S" -dict="$ROOT/fuzz/json.dict" -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  elapsed=$(($(date +%s) - start))
  if ((status == 0)); then
    summary "$target" "$log" "$elapsed" ok
    return 0
  fi
  tail -n 60 "$log" >&2
  summary "$target" "$log" "$elapsed" FAILED
  artifact=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -n1 | sed 's/^Test unit written to //' || true)
  if [[ -n $artifact ]]; then
    artifact=${artifact#./}
    artifact=${artifact#"$ROOT"/}
    echo "error: fuzz target $target failed; input: $artifact (full log: $log)" >&2
    echo "reproduce: $(repro_command "$target" "$artifact")" >&2
    echo "       or: $(raw_repro_command "$target" "$artifact")" >&2
    echo "minimise:  RUSTUP_TOOLCHAIN=stable RUSTC_BOOTSTRAP=1 PATH=\"\$PWD/.tools/bin:\$PATH\" cargo fuzz tmin ${BUILD_FLAGS[*]} $target $artifact" >&2
  else
    echo "error: fuzz target $target failed (exit $status) without writing an input; see $log" >&2
  fi
  return 1
}

install_cargo_fuzz

if [[ ${1:-} == repro ]]; then
  [[ $# == 3 ]] || { echo "usage: scripts/fuzz.sh repro TARGET INPUT" >&2; exit 2; }
  exec cargo fuzz run "${BUILD_FLAGS[@]}" "$2" "$3"
fi
if (($#)); then
  TARGETS=("$@")
fi

echo "==> cargo fuzz build ${BUILD_FLAGS[*]} (stable toolchain, RUSTC_BOOTSTRAP=1)"
start=$(date +%s)
for target in "${TARGETS[@]}"; do
  cargo fuzz build "${BUILD_FLAGS[@]}" "$target"
done
echo "build: $(($(date +%s) - start)) s"

failed=()
for target in "${TARGETS[@]}"; do
  run_target "$target" || failed+=("$target")
done
if ((${#failed[@]})); then
  echo "error: fuzzing found failures in: ${failed[*]}" >&2
  exit 1
fi
