#!/usr/bin/env bash
#
# bench/import.sh: time `gdprd index import` of N synthetic index records (default 1,000,000)
# into an organization with no records and again over the same records, against PostgreSQL's own
# floor on the same machine in the same run.
#
# Usage:
#     bench/import.sh            # 1,000,000 records
#     bench/import.sh 100000
#
# The records come from bench/index_records.py (four kinds, one name, email and phone each: three
# identifiers per record), written once to .build/bench/index-N.ndjson. Database
# gdprd_bench_import is dropped and re-created on the server found by scripts/pg-env.sh
# (DATABASE_URL is ignored: the database is destroyed) and dropped at the end.
#
# The floor: the same rows, already in the database, inserted with INSERT ... SELECT into copies
# of the index tables with the same indexes and no checks. The ratio import / floor says how much
# of the import's time is its own (reading, parsing and normalizing the file, sending it, and
# checking references) rather than PostgreSQL writing rows and indexes.
#
# Tunables: BENCH_SKIP_BUILD=1 (use target/release/gdprd as it is).

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"
n=${1:-1000000}
out=$repo/.build/bench
mkdir -p "$out"
log() { printf 'bench: %s\n' "$*" >&2; }
# shellcheck source=api.sh
source bench/api.sh

if [[ ${BENCH_SKIP_BUILD:-} != 1 ]]; then
  log "building the release binary"
  cargo build --release --locked -q
fi
gdprd=${CARGO_TARGET_DIR:-$repo/target}/release/gdprd

file=$out/index-$n.ndjson
if [[ ! -s $file ]]; then
  log "writing $n records to $file"
  python3 bench/index_records.py "$n" >"$file.tmp"
  mv "$file.tmp" "$file"
fi

unset DATABASE_URL
# shellcheck source=../scripts/pg-env.sh
source scripts/pg-env.sh
pg_env_database postgres
admin_url=$DATABASE_URL
bench_url=${admin_url%/*}/gdprd_bench_import
trap 'drop_database "$admin_url" gdprd_bench_import' EXIT
fresh_database "$admin_url" gdprd_bench_import
export DATABASE_URL=$bench_url
GDPRD_LOG=warn "$gdprd" migrate >/dev/null
q() { psql -XAtq -v ON_ERROR_STOP=1 -d "$bench_url" "$@"; }

seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

log "importing $n records into an empty organization"
first=$(seconds env GDPRD_LOG=warn "$gdprd" index import "$file" --quiet)
log "importing the same $n records again (every record known)"
again=$(seconds env GDPRD_LOG=warn "$gdprd" index import "$file" --quiet)
records=$(q -c 'SELECT count(*) FROM subjects')
identifiers=$(q -c 'SELECT count(*) FROM subject_identifiers')

log "floor: PostgreSQL inserting the same rows into tables with the same indexes"
q -c 'CHECKPOINT'
floor_ms=$(q -c '\timing on' \
  -c 'CREATE TABLE floor_subjects (LIKE subjects INCLUDING DEFAULTS INCLUDING INDEXES)' \
  -c 'CREATE TABLE floor_identifiers (LIKE subject_identifiers INCLUDING DEFAULTS INCLUDING INDEXES)' \
  -c 'BEGIN' \
  -c 'INSERT INTO floor_subjects SELECT * FROM subjects' \
  -c 'INSERT INTO floor_identifiers SELECT * FROM subject_identifiers' \
  -c 'COMMIT' | awk '/^Time:/ { t += $2 } END { print t }')
floor=$(echo "$floor_ms / 1000" | bc -l)

printf '\n'
printf 'index import of %s records (%s index records, %s identifiers)\n' "$n" "$records" "$identifiers"
printf '  into an empty organization   %8.1f s  %8.0f records/s\n' "$first" "$(echo "$n / $first" | bc -l)"
printf '  again, every record known    %8.1f s  %8.0f records/s\n' "$again" "$(echo "$n / $again" | bc -l)"
printf '  PostgreSQL floor             %8.1f s  (INSERT ... SELECT of the same rows, same indexes)\n' "$floor"
printf '  ratio first import / floor   %8.2f\n' "$(echo "$first / $floor" | bc -l)"
