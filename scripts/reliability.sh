#!/usr/bin/env bash
#
# Runs gdprd's heavy reliability loops, the ones too long for CI (scripts/test.sh runs their
# quick versions in tests/reliability.rs):
#
#   1. kills      a batch of requests while a `gdprd worker` is SIGKILLed again and again with
#                 jobs in hand; every request must complete, every job exactly once
#   2. outages    `gdprd serve` under load while its database (a throwaway cluster, never the
#                 server of DATABASE_URL) stops at once and comes back, several times
#   3. instances  several `gdprd serve --no-worker` and `gdprd worker` processes on one database
#   4. fuzz       the cargo-fuzz targets in fuzz/, when cargo-fuzz and a nightly toolchain are
#                 installed (`cargo install cargo-fuzz`, `rustup toolchain install nightly`)
#
# Each step is bounded in time and prints its figures (requests, kills, outages, losses); the
# script fails when a step fails.
#
#   scripts/reliability.sh                      all steps
#   scripts/reliability.sh kills outages        some of them
#
# Variables (default):
#   GDPRD_RELIABILITY_REQUESTS     requests per batch (150)
#   GDPRD_RELIABILITY_KILLS        SIGKILLs of a worker holding jobs (10)
#   GDPRD_RELIABILITY_OUTAGES      database outages (3)
#   GDPRD_RELIABILITY_OUTAGE_SECS  length of each outage, seconds (15)
#   GDPRD_RELIABILITY_INSTANCES    API processes, and as many workers (4)
#   GDPRD_RELIABILITY_FUZZ_SECS    fuzzing time per target, seconds (60)
#   GDPRD_RELIABILITY_STEP_SECS    bound of each step, seconds (900)
#
# PostgreSQL is found as scripts/test.sh finds it (scripts/pg-env.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

steps=("$@")
if ((${#steps[@]} == 0)); then
  steps=(kills outages instances fuzz)
fi

export GDPRD_RELIABILITY_REQUESTS=${GDPRD_RELIABILITY_REQUESTS:-150}
export GDPRD_RELIABILITY_KILLS=${GDPRD_RELIABILITY_KILLS:-10}
export GDPRD_RELIABILITY_OUTAGES=${GDPRD_RELIABILITY_OUTAGES:-3}
export GDPRD_RELIABILITY_OUTAGE_SECS=${GDPRD_RELIABILITY_OUTAGE_SECS:-15}
export GDPRD_RELIABILITY_INSTANCES=${GDPRD_RELIABILITY_INSTANCES:-4}
fuzz_secs=${GDPRD_RELIABILITY_FUZZ_SECS:-60}
step_secs=${GDPRD_RELIABILITY_STEP_SECS:-900}

# shellcheck source=scripts/pg-env.sh
source scripts/pg-env.sh
pg_env_database postgres
export DATABASE_URL
echo "==> PostgreSQL at $(pg_env_describe) ($PG_ENV_SOURCE)"

cargo build --locked --test reliability --bin gdprd

failed=()
summary=()

# Runs one ignored test of tests/reliability.rs, alone, within the step bound; keeps its figures.
run_test() {
  local step=$1 test=$2 log rc figures
  log=$(mktemp)
  echo "==> $step ($test)"
  set +e
  timeout --kill-after=30 "$step_secs" \
    cargo test --locked --test reliability -- --ignored --exact "$test" --nocapture \
    --test-threads=1 2>&1 | tee "$log" | grep -E '(figures|skipped): |^test '
  rc=${PIPESTATUS[0]}
  set -e
  if ((rc != 0)); then
    failed+=("$step")
    grep -A4 'panicked' "$log" || true
    summary+=("$step: FAILED (exit $rc)")
  else
    # With --nocapture a test's output follows its "test NAME ... " on the same line.
    figures=$(grep -oE '(figures|skipped): .*' "$log" | sed 's/^figures: //' | tr '\n' ' ' || true)
    summary+=("$step: $figures")
  fi
  rm -f "$log"
}

run_fuzz() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    summary+=("fuzz: skipped, cargo-fuzz is not installed (cargo install cargo-fuzz)")
    return
  fi
  if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    summary+=("fuzz: skipped, no nightly toolchain (rustup toolchain install nightly)")
    return
  fi
  if ((fuzz_secs == 0)); then
    summary+=("fuzz: skipped, GDPRD_RELIABILITY_FUZZ_SECS=0")
    return
  fi
  local target out rc dict
  for target in normalize request_body; do
    echo "==> fuzz $target (${fuzz_secs} s)"
    dict=()
    if [[ -f fuzz/$target.dict ]]; then
      dict=("-dict=$target.dict")
    fi
    rc=0
    out=$( (cd fuzz && timeout --kill-after=30 "$step_secs" \
      cargo +nightly fuzz run "$target" -- -max_total_time="$fuzz_secs" "${dict[@]}") 2>&1) || rc=$?
    if ((rc != 0)); then
      failed+=("fuzz $target")
      printf '%s\n' "$out" | tail -n 40
      summary+=("fuzz $target: FAILED (exit $rc; the input is in fuzz/artifacts/$target)")
    else
      summary+=("fuzz $target: $(printf '%s\n' "$out" | grep -E '^Done [0-9]+ runs' | tail -n 1)")
    fi
  done
}

for step in "${steps[@]}"; do
  case $step in
    kills) run_test kills crash::repeated_worker_kills_lose_nothing ;;
    outages) run_test outages outage::repeated_longer_outages_lose_nothing ;;
    instances) run_test instances instances::many_instances_run_every_job_exactly_once ;;
    fuzz) run_fuzz ;;
    *)
      echo "unknown step $step (kills, outages, instances, fuzz)" >&2
      exit 2
      ;;
  esac
done

echo
echo "==> reliability figures"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
  echo "==> failed: ${failed[*]}"
  exit 1
fi
