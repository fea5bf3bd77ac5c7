#!/usr/bin/env bash
#
# bench/name_count.sh: what counting a common name's matches costs, with the identifiers' table
# as the seed wrote it and as a copy of it in the order of its primary key.
#
# Usage:
#     bench/name_count.sh            # 1,000,000 people (about 5 minutes)
#     bench/name_count.sh 100000     # another size
#
# A search's `total` is counted by an index-only scan of subject_identifiers' primary key, and
# an index-only scan looks every match's heap page up in the visibility map. One map page covers
# 32,672 heap pages (255 MB), and a name's matches come in key order, not in heap order, so the
# scan moves from map page to map page as it counts. This script drops and re-creates database
# gdprd_bench_names on the server found by scripts/pg-env.sh (DATABASE_URL names the server; the
# database is destroyed, and dropped at the end), seeds N people, `VACUUM ANALYZE`s, then:
#   1. for the name shared by the most people: its matches, how often the key's order moves to
#      another map page (counted from the rows' ctids), and the buffers of the count
#      (EXPLAIN ANALYZE, BUFFERS) in the table as seeded and in a copy in key order (the same
#      primary key, vacuumed);
#   2. pgbench: the count alone over 200 random names, 2 clients for BENCH_DURATION seconds
#      (default 8), the two tables alternating for BENCH_ROUNDS rounds (default 3).
# Prints what it measures; nothing is written to the repository. No value is printed.
# BENCH_SKIP_BUILD=1 uses the release binary as it is. Needs psql and pgbench.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"

people=${1:-1000000}
duration=${BENCH_DURATION:-8}
rounds=${BENCH_ROUNDS:-3}

log() { printf 'bench: %s\n' "$*" >&2; }

for tool in psql pgbench; do
  command -v "$tool" >/dev/null || {
    log "$tool is missing (postgresql-client, postgresql-contrib)"
    exit 1
  }
done
# shellcheck source=api.sh
source bench/api.sh
# shellcheck source=../scripts/pg-env.sh
source scripts/pg-env.sh
pg_env_database postgres
admin_url=$DATABASE_URL
url=${admin_url%/*}/gdprd_bench_names
export DATABASE_URL=$url

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  cargo build --release --locked --quiet --bin gdprd
fi
gdprd=${CARGO_TARGET_DIR:-$repo/target}/release/gdprd
require_executables "$gdprd"

trap 'drop_database "$admin_url" gdprd_bench_names' EXIT
fresh_database "$admin_url" gdprd_bench_names
q() { psql -XAtq -v ON_ERROR_STOP=1 -d "$url" "$@"; }

GDPRD_LOG=warn "$gdprd" migrate >/dev/null
log "seeding $people people"
GDPRD_LOG=warn "$gdprd" seed --subjects "$people" --quiet >&2
log "copying the identifiers in key order and vacuuming"
q <<'SQL'
SET maintenance_work_mem = '256MB';
CREATE TABLE bench_identifiers_in_key_order AS
  SELECT * FROM subject_identifiers ORDER BY org_id, id_type, value, kind, ref_key;
ALTER TABLE bench_identifiers_in_key_order
  ADD PRIMARY KEY (org_id, id_type, value, kind, ref_key) INCLUDE (subject_id);
VACUUM ANALYZE;
CREATE TABLE bench_names AS
  SELECT row_number() OVER (ORDER BY random())::int AS n, value
    FROM (SELECT DISTINCT value FROM subject_identifiers WHERE id_type = 'NAME') d
   ORDER BY random() LIMIT 200;
ALTER TABLE bench_names ADD PRIMARY KEY (n);
ANALYZE bench_names;
SQL
names=$(q -c 'SELECT count(*) FROM bench_names')
# The organization the seed wrote: the search's condition starts with it, as the key does.
org=$(q -c "SELECT id FROM organizations WHERE name = 'demo'")

# 1. The most common name: matches, moves between map pages, buffers of each table's count.
IFS='|' read -r heap_pages map_pages < <(q -c "
  SELECT pg_relation_size('subject_identifiers') / 8192, pg_relation_size('subject_identifiers', 'vm') / 8192")
log "subject_identifiers: $heap_pages heap pages, $map_pages visibility map pages"
read -r matches moves < <(q -F' ' <<'SQL'
WITH top AS (SELECT value FROM subject_identifiers WHERE id_type = 'NAME'
              GROUP BY value ORDER BY count(*) DESC LIMIT 1),
m AS (SELECT (i.ctid::text::point)[0]::bigint / 32672 AS map_page,
             row_number() OVER (ORDER BY i.kind, i.ref_key) AS r
        FROM subject_identifiers i JOIN top USING (value) WHERE i.id_type = 'NAME'),
s AS (SELECT map_page, lag(map_page) OVER (ORDER BY r) AS prev FROM m)
SELECT count(*), count(*) FILTER (WHERE prev IS DISTINCT FROM map_page) FROM s;
SQL
)
log "the most common name: $matches matches, the key's order moves to another map page $moves times"
for table in subject_identifiers bench_identifiers_in_key_order; do
  # The plan's first Buffers line is its top node's: every buffer of the statement, hit or read.
  buffers=$(q <<SQL | awk '/Buffers: shared/ { n = 0; for (i = 1; i <= NF; i++) if ($i ~ /^(hit|read)=/) { split($i, kv, "="); n += kv[2] }; print n; exit }'
SELECT value AS top FROM subject_identifiers WHERE id_type = 'NAME'
 GROUP BY value ORDER BY count(*) DESC LIMIT 1 \gset
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
SELECT count(*) FROM $table WHERE org_id = '$org' AND id_type = 'NAME' AND value = :'top';
SQL
)
  log "$table: the count of the most common name touches $buffers buffers"
done

# 2. The count over random names, alternating between the two tables.
for table in subject_identifiers bench_identifiers_in_key_order; do
  cat >"${TMPDIR:-/tmp}/name-count-$table.sql" <<SQL
\set k random(1, $names)
SELECT count(*) FROM $table WHERE org_id = '$org' AND id_type = 'NAME'
   AND value = (SELECT value FROM bench_names WHERE n = :k);
SQL
done
for round in $(seq "$rounds"); do
  for table in subject_identifiers bench_identifiers_in_key_order; do
    tps=$(pgbench -n -M prepared -c 2 -j 2 -T "$duration" -f "${TMPDIR:-/tmp}/name-count-$table.sql" "$url" 2>&1 |
      sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    log "round $round, $table: $tps counts/s"
  done
done
rm -f "${TMPDIR:-/tmp}"/name-count-*.sql
