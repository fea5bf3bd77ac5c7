#!/usr/bin/env bash
#
# bench/seed.sh: `gdprd seed` into an empty database (rows first, then indexes and keys, in one
# transaction) and the same people seeded alongside existing data (chunk by chunk over several
# connections, into indexes kept up to date), against PostgreSQL's floors for the same rows
# (bench/floors.sh), at one or more sizes.
#
# Usage:
#     bench/seed.sh                    # 100,000 people (about 4 minutes)
#     bench/seed.sh 100000 1000000     # and a million (add some 30 minutes)
#
# For each size N it drops and re-creates database gdprd_bench_seed on the server found by
# scripts/pg-env.sh (DATABASE_URL names the server; the database is destroyed), then:
#   1. times `gdprd seed --subjects N` (release build) into the empty database;
#   2. times the floors on the rows it wrote (with indexes kept up to date; loading then
#      indexing on one connection, and on two at once);
#   3. when N <= BENCH_ALONGSIDE_MAX (default 100000), re-creates the database, seeds one person
#      of another organization, and times `gdprd seed --subjects N` again: the same people,
#      written alongside existing data.
# BENCH_SKIP_BUILD=1 uses the release binary as it is.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"

sizes=("$@")
((${#sizes[@]})) || sizes=(100000)
alongside_max=${BENCH_ALONGSIDE_MAX:-100000}

log() { printf 'bench: %s\n' "$*" >&2; }

# shellcheck source=../scripts/pg-env.sh
source scripts/pg-env.sh
pg_env_database postgres
# shellcheck source=floors.sh
source bench/floors.sh
admin_url=$DATABASE_URL
url=${admin_url%/*}/gdprd_bench_seed
export DATABASE_URL=$url

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  cargo build --release --locked --quiet
fi
gdprd=${CARGO_TARGET_DIR:-$repo/target}/release/gdprd

fresh() {
  psql -XAtq -d "$admin_url" -c 'SET client_min_messages = warning' \
    -c 'DROP DATABASE IF EXISTS gdprd_bench_seed WITH (FORCE)' -c 'CREATE DATABASE gdprd_bench_seed'
  GDPRD_LOG=warn "$gdprd" migrate >/dev/null
}

# Seconds `gdprd seed` takes for N people of organization demo.
timed_seed() {
  local t0 t1
  t0=$(date +%s.%N)
  GDPRD_LOG=warn "$gdprd" seed --subjects "$1" --quiet >&2
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

rows=()
for n in "${sizes[@]}"; do
  log "=== $n people ==="
  fresh
  empty_s=$(timed_seed "$n")
  log "into an empty database: $empty_s s"
  read -r indexed_s bare_s parallel_s < <(seed_floors "$url")
  log "floors: $indexed_s s with indexes kept up to date, $bare_s s loading then indexing, $parallel_s s the same over two connections"
  alongside_s=
  if ((n <= alongside_max)); then
    fresh
    GDPRD_LOG=warn "$gdprd" seed --subjects 1 --org other --quiet >/dev/null
    alongside_s=$(timed_seed "$n")
    log "alongside another organization's data: $alongside_s s"
  fi
  rows+=("$n $empty_s $bare_s $parallel_s $indexed_s ${alongside_s:--}")
done
psql -XAtq -d "$admin_url" -c 'SET client_min_messages = warning' \
  -c 'DROP DATABASE IF EXISTS gdprd_bench_seed WITH (FORCE)'

echo
echo "| people | into an empty database | floor: load, then index | ratio | the same floor over two connections | ratio | alongside existing data | floor: indexes kept up to date | ratio | empty / alongside |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "${rows[@]}"; do
  read -r n empty bare parallel indexed alongside <<<"$r"
  awk -v n="$n" -v e="$empty" -v b="$bare" -v p="$parallel" -v i="$indexed" -v a="$alongside" 'BEGIN {
    printf "| %d | %.1f s (%d/s) | %.1f s | %.2f | %.1f s (%d/s) | %.2f | ", n, e, n / e, b, e / b, p, n / p, e / p
    if (a == "-") printf "– | %.1f s | – | – |\n", i
    else printf "%.1f s (%d/s) | %.1f s | %.2f | %.2f |\n", a, n / a, i, a / i, e / a
  }'
done
