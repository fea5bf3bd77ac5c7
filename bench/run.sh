#!/usr/bin/env bash
#
# bench/run.sh: seeding, subject search and request-pipeline benchmarks of gdprd, at one or
# more dataset sizes, written to BENCHMARKS.md and bench/latency.png.
#
# Usage:
#     bench/run.sh                      # 10,000 and 100,000 subjects (about 5 minutes)
#     bench/run.sh 100000               # one size
#     bench/run.sh 10000 100000 1000000 # the cost curve up to a million (add ~25 minutes: seeding a million people and its floors take some 18)
#
# For each size it drops and re-creates databases gdprd_bench and gdprd_bench_direct on the
# server found by scripts/pg-env.sh (DATABASE_URL is ignored: the databases are destroyed),
# then:
#   1. seeds N people with the release binary into the empty database and records time, rate,
#      index records and service rows; then times PostgreSQL copying the same rows into copies
#      of the tables (INSERT ... SELECT), with their indexes kept up to date and loaded first
#      with their indexes built after, on one connection, and the latter again over two at once,
#      the floors of seeding (bench/floors.sh; bench/seed.sh compares them with seeding
#      alongside existing data);
#   2. starts `gdprd serve` on a free loopback port with the rate limits lifted and measures
#      GET /api/v2/gdpr/subjects with wrk (32 connections) over random existing identifiers of
#      every search type, written as the people's records spell them; then pgbench runs the
#      search statement of src/index/store.rs with 32 clients on the same database, as the
#      ceiling (its throughput, and the p50 and p99 of its own per-statement latencies);
#      then both again, split: NAME searches alone, and every other search type;
#   3. with the load client bench/pipeline.rs (built with the binary; HTTP connections kept
#      alive, so that it takes little of the cores it shares with gdprd and PostgreSQL), after
#      an unmeasured warm-up batch (the server has yet to prepare the pipeline's statements on
#      its connections, and the new database's job queue has yet to hold a history; the queue
#      tables are analyzed after it, as autovacuum does in a running service), submits a batch
#      of GDPR_DELETE and GDPR_EXPORT requests for distinct people at once and times them to
#      COMPLETED, then a batch of GDPR_DELETE requests alone the same way, then times single
#      erasures submit -> COMPLETED (polling every 10 ms);
#      then exports the largest subject (the agent in the most conversations, kept out of the
#      batches) twice in a row, each alone, recording the server's peak resident memory during
#      each (reset in between) and what stays resident after;
#      then runs the same requests for the same people as their services' SQL alone
#      (bench/direct_sql.rs), the baseline of the pipeline, in a copy of the database taken
#      right after seeding (gdprd_bench_direct): both do the same work on the same data;
#   4. records the server's peak RSS (VmHWM) and PostgreSQL's busy time per operation
#      (pg_stat_database.active_time).
# Each measured phase of steps 2 and 3 starts with the database read into the operating system's
# page cache (pg_prewarm, mode 'read'; skipped, and said so, where the server lacks the
# extension), so that none of them starts from disk because of what the phases before it wrote
# or because a machine pages out what has not been touched for a while.
# Then bench/report.py writes BENCHMARKS.md and bench/latency.png, with the server's settings
# that decide what the figures mean (shared buffers, WAL, durability, TLS).
#
# Tunables (environment): BENCH_DURATION (seconds per search run, default 15),
# BENCH_CONNECTIONS (default 32), BENCH_BATCH (erasures and as many exports, default 300),
# BENCH_ERASURES (the batch of erasures alone, default BENCH_BATCH),
# BENCH_WARMUP (erasures and as many exports of an unmeasured warm-up batch, default 300),
# BENCH_SINGLES (default 20), BENCH_PIPELINE_TIMEOUT (seconds, default 120),
# BENCH_WORKER_CONCURRENCY (GDPRD_WORKER_CONCURRENCY of the server, default: gdprd's default;
# any other GDPRD_* setting exported reaches the server too, GDPRD_WORKER_BUNDLE_BATCH is recorded),
# BENCH_SKIP_BUILD=1 (use the release binary as it is, without `cargo build --release --locked`),
# BENCH_DRAW (any text: the pipeline's people drawn by a hash of it instead of at random, so that
# runs of two builds work for the same people; the seed always makes the same people).
# Needs wrk (apt-get install wrk), pgbench and psql (postgresql-client / postgresql-contrib),
# python3; the plot uses matplotlib from a virtualenv in .build/bench-venv (created on demand).
# Everything listens on 127.0.0.1 only; every process started here is stopped on exit.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"

sizes=("$@")
((${#sizes[@]})) || sizes=(10000 100000)
duration=${BENCH_DURATION:-15}
conns=${BENCH_CONNECTIONS:-32}
batch=${BENCH_BATCH:-300}
erasures=${BENCH_ERASURES:-$batch}
warmup=${BENCH_WARMUP:-300}
singles=${BENCH_SINGLES:-20}
pipeline_timeout=${BENCH_PIPELINE_TIMEOUT:-120}
draw=${BENCH_DRAW:-}
if [[ -n ${BENCH_WORKER_CONCURRENCY:-} ]]; then
  export GDPRD_WORKER_CONCURRENCY=$BENCH_WORKER_CONCURRENCY
fi
out=$repo/.build/bench
mkdir -p "$out"
rm -f "$out"/result-*.json

log() { printf 'bench: %s\n' "$*" >&2; }

for tool in wrk pgbench psql python3 curl; do
  command -v "$tool" >/dev/null || {
    log "$tool is missing (wrk: apt-get install wrk; pgbench/psql: postgresql-client)"
    exit 1
  }
done
# shellcheck source=api.sh
source bench/api.sh

if [[ ${BENCH_SKIP_BUILD:-} != 1 ]]; then
  log "building the release binary"
  cargo build --release --locked -q --bin gdprd --example direct_sql --example pipeline
fi
release=${CARGO_TARGET_DIR:-$repo/target}/release
gdprd=$release/gdprd
direct_sql=$release/examples/direct_sql
pipeline=$release/examples/pipeline
require_executables "$gdprd" "$direct_sql" "$pipeline"

unset DATABASE_URL
# shellcheck source=../scripts/pg-env.sh
source scripts/pg-env.sh
# shellcheck source=floors.sh
source bench/floors.sh
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM
pg_env_database postgres
admin_url=$DATABASE_URL
base_url=${admin_url%/*}
bench_url=$base_url/gdprd_bench
direct_url=$base_url/gdprd_bench_direct

drop_databases() {
  psql -XAtq -d "$admin_url" -c 'SET client_min_messages = warning' \
    -c 'DROP DATABASE IF EXISTS gdprd_bench WITH (FORCE)' \
    -c 'DROP DATABASE IF EXISTS gdprd_bench_direct WITH (FORCE)'
}

q() { psql -XAtq -v ON_ERROR_STOP=1 -d "$bench_url" "$@"; }

# wrk's "--latency" distribution gives 50% and 99% as e.g. "1.23ms", "850.00us" or "1.02s".
wrk_ms() {
  awk -v p="$1" '$1 == p { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
    m = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : (u == "m") ? v * 60000 : v; print m; exit }'
}

# Table access counters, to see what a phase scans: snapshot, then the difference.
stat_snapshot() {
  q -c "SET client_min_messages = warning; DROP TABLE IF EXISTS bench_stat; CREATE TABLE bench_stat AS
          SELECT schemaname || '.' || relname AS rel, seq_scan, seq_tup_read,
                 coalesce(idx_scan, 0) AS idx_scan, n_tup_ins + n_tup_upd + n_tup_del AS writes
            FROM pg_stat_user_tables"
}
# CPU time (ms) a process has used, and the machine's busy and total CPU time (ms).
proc_cpu_ms() {
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) * 1000 / hz }' "/proc/$1/stat"
}
machine_cpu_ms() {
  awk -v hz="$(getconf CLK_TCK)" '/^cpu / { idle = $5 + $6; t = 0; for (i = 2; i <= NF; i++) t += $i;
    print (t - idle) * 1000 / hz, t * 1000 / hz; exit }' /proc/stat
}

# The p50 and p99, in ms, of the statements pgbench logged (-l) under prefix $1: one line per
# statement, its latency in µs in the third column.
pgbench_percentiles() {
  cat "$1".* | awk '{ print $3 / 1000 }' | sort -n |
    awk '{ v[NR] = $1 } END { printf "%.3f %.3f\n", v[int(NR * 0.50 + 0.5)], v[int(NR * 0.99 + 0.5)] }'
}

# PostgreSQL's statistics of a phase are read once every connection has flushed its own: one
# that goes idle within a second of its last flush flushes again only after 10 s of idleness.
stats_settle() { sleep 11; }

# Reads the database at $1 into the page cache (bench/api.sh) and adds the seconds it took to
# prewarm_s. The floors write three times as much as the database again: without this, which
# phases start from disk would depend on how long the ones before took.
prewarm() {
  ((prewarm_on)) || return 0
  local t0 t1
  t0=$(date +%s.%N)
  prewarm_database "$1"
  t1=$(date +%s.%N)
  prewarm_s=$(echo "$prewarm_s + $t1 - $t0" | bc -l)
}

stat_diff() {
  stats_settle
  q -F $'\t' -c "SELECT t.schemaname || '.' || t.relname, t.seq_scan - b.seq_scan,
                        t.seq_tup_read - b.seq_tup_read, coalesce(t.idx_scan, 0) - b.idx_scan,
                        t.n_tup_ins + t.n_tup_upd + t.n_tup_del - b.writes
                   FROM pg_stat_user_tables t JOIN bench_stat b
                     ON b.rel = t.schemaname || '.' || t.relname
                  WHERE t.relname NOT LIKE 'bench_%'
                    AND (t.seq_scan > b.seq_scan OR coalesce(t.idx_scan, 0) > b.idx_scan
                         OR t.n_tup_ins + t.n_tup_upd + t.n_tup_del > b.writes)
                  ORDER BY 3 DESC, 4 DESC"
}

for n in "${sizes[@]}"; do
  log "=== $n subjects ==="
  drop_databases
  psql -XAtq -d "$admin_url" -c 'CREATE DATABASE gdprd_bench'
  export DATABASE_URL=$bench_url
  GDPRD_LOG=warn "$gdprd" migrate >/dev/null

  # 1. Seeding.
  log "seeding $n people"
  t0=$(date +%s.%N)
  seed_line=$(GDPRD_LOG=warn "$gdprd" seed --subjects "$n" --quiet | tail -n 1)
  t1=$(date +%s.%N)
  log "$seed_line"
  seed_s=$(echo "$t1 - $t0" | bc -l)
  index_records=$(q -c 'SELECT count(*) FROM subjects')
  identifiers=$(q -c 'SELECT count(*) FROM subject_identifiers')
  service_rows=$(sed -n 's/.*records, \([0-9]*\) service rows.*/\1/p' <<<"$seed_line")
  q -c 'VACUUM ANALYZE' >/dev/null
  db_size=$(q -c 'SELECT pg_database_size(current_database())')
  # The copy of step 3b, made from this database, has the extension too.
  prewarm_s=0
  if q -c 'SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS pg_prewarm' 2>/dev/null; then
    prewarm_on=1
  else
    prewarm_on=0
    log "pg_prewarm is not available (postgresql-contrib): the phases start from the cache as the ones before left it"
  fi

  # 1b. The floors of seeding (bench/floors.sh): PostgreSQL writing the same rows, already in
  # the database, into copies of every seeded table with INSERT ... SELECT on one connection,
  # with their indexes kept up to date, and loaded first with their indexes built after; and the
  # latter over two connections at once, each with its share of the tables.
  log "seeding floors: the same rows copied by PostgreSQL"
  read -r seed_floor_s seed_floor_bulk_s seed_floor_parallel_s < <(seed_floors "$bench_url")
  log "seeding floors: $seed_floor_s s with indexes kept up to date, $seed_floor_bulk_s s loading then indexing, $seed_floor_parallel_s s the same over two connections"

  # The baseline's copy of the seeded database (step 3b), while nothing is connected to it.
  psql -XAtq -d "$admin_url" \
    -c 'CREATE DATABASE gdprd_bench_direct TEMPLATE gdprd_bench STRATEGY FILE_COPY'

  # Keys: up to 200 random subjects per search type (bench/api.sh).
  search_keys "$bench_url" "$out/raw-$n.tsv" "$out/paths-$n.txt"
  nkeys=$(q -c 'SELECT count(*) FROM bench_keys')
  types=$(cut -f1 "$out/raw-$n.tsv" | sort | uniq -c | awk '{printf "%s%s %s", sep, $2, $1; sep=", "}')
  log "search keys: $(wc -l <"$out/paths-$n.txt") raw spellings ($types), $nkeys normalized"

  # The largest subject, for step 3c (bench/api.sh).
  largest_email=$(largest_subject_email "$bench_url")

  # People for the pipeline and, in the copy, its baseline (bench/api.sh).
  people=$((2 * warmup + 2 * batch + erasures + singles))
  pipeline_emails "$bench_url" "$largest_email" "$draw" "$people" >"$out/emails-$n.txt"

  # 2. Search through the API.
  port=$(free_port)
  start_server "$gdprd" "$port" "$out/serve-$n.log"
  token=$(api_token "$gdprd" "$port" gdpr:subject:view,gdpr:request:add,gdpr:request:view)
  rss_idle=$(awk '/VmRSS/ {print $2}' "/proc/$server_pid/status")

  prewarm "$bench_url"
  loadavg=$(cut -d' ' -f1 /proc/loadavg)
  log "warming up, then wrk: $conns connections, ${duration}s"
  BENCH_TOKEN=$token BENCH_PATHS=$out/paths-$n.txt \
    wrk -t2 -c"$conns" -d3s -s bench/search.lua "http://127.0.0.1:$port" >/dev/null
  stat_snapshot
  active0=$(q -c 'SELECT active_time FROM pg_stat_database WHERE datname = current_database()')
  cpu0=$(proc_cpu_ms "$server_pid")
  read -r busy0 total0 < <(machine_cpu_ms)
  BENCH_TOKEN=$token BENCH_PATHS=$out/paths-$n.txt \
    wrk -t2 -c"$conns" -d"${duration}s" --timeout 5s --latency -s bench/search.lua \
    "http://127.0.0.1:$port" >"$out/wrk-$n.txt"
  cpu1=$(proc_cpu_ms "$server_pid")
  read -r busy1 total1 < <(machine_cpu_ms)
  stats_settle
  active1=$(q -c 'SELECT active_time FROM pg_stat_database WHERE datname = current_database()')
  stat_diff >"$out/tables-search-$n.tsv"
  api_rps=$(awk '/^Requests\/sec/ {print $2}' "$out/wrk-$n.txt")
  api_total=$(awk '/requests in/ {print $1}' "$out/wrk-$n.txt")
  api_non2xx=$(awk '/Non-2xx/ {print $NF}' "$out/wrk-$n.txt")
  api_p50=$(wrk_ms 50% <"$out/wrk-$n.txt")
  api_p99=$(wrk_ms 99% <"$out/wrk-$n.txt")
  api_db_ms=$(echo "($active1 - $active0) / $api_total" | bc -l)
  api_cpu_ms=$(echo "($cpu1 - $cpu0) / $api_total" | bc -l)
  api_machine_busy=$(echo "($busy1 - $busy0) / ($total1 - $total0)" | bc -l)
  rss_search=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
  log "API: $api_rps req/s, p50 $api_p50 ms, p99 $api_p99 ms, non-2xx ${api_non2xx:-0}"

  # 2b. The same statement with pgbench (the search of src/index/store.rs; the key comes from
  # bench_keys through two initplans on its primary key, which only makes pgbench slower).
  org=$(q -c 'SELECT id FROM organizations LIMIT 1')
  cat >"$out/search.sql" <<SQL
\set k random(1, $nkeys)
SELECT s.record, page.total
  FROM (SELECT i.subject_id, i.kind, i.ref_key, count(*) OVER () AS total
          FROM subject_identifiers i
         WHERE i.org_id = '$org' AND i.id_type = (SELECT id_type FROM bench_keys WHERE n = :k)
           AND i.value = (SELECT value FROM bench_keys WHERE n = :k)
         ORDER BY i.kind, i.ref_key
         LIMIT 100 OFFSET 0) page
  JOIN subjects s ON s.id = page.subject_id
 ORDER BY page.kind, page.ref_key;
SQL
  log "pgbench: $conns clients, ${duration}s"
  prewarm "$bench_url"
  active0=$(q -c 'SELECT active_time FROM pg_stat_database WHERE datname = current_database()')
  # Every statement's latency is logged (-l: one line per statement, its latency in µs in the
  # third column), for the ceiling's own p50 and p99.
  rm -f "$out/pgbench-log-$n".*
  pgbench -n -M prepared -c "$conns" -j 2 -T "$duration" -f "$out/search.sql" \
    -l --log-prefix="$out/pgbench-log-$n" "$bench_url" >"$out/pgbench-$n.txt" 2>&1
  read -r pg_p50 pg_p99 < <(pgbench_percentiles "$out/pgbench-log-$n")
  rm -f "$out/pgbench-log-$n".*
  stats_settle
  active1=$(q -c 'SELECT active_time FROM pg_stat_database WHERE datname = current_database()')
  pg_tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out/pgbench-$n.txt" | head -n 1)
  pg_lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$out/pgbench-$n.txt")
  pg_total=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out/pgbench-$n.txt")
  pg_db_ms=$(echo "($active1 - $active0) / $pg_total" | bc -l)
  log "pgbench: $pg_tps tps, latency average $pg_lat ms, p50 $pg_p50 ms, p99 $pg_p99 ms"

  # 2c. The same two loads split by what a search returns: NAME searches alone (the seed draws
  # names from a few thousand combinations, so at a million people each matches hundreds of
  # records and returns a full page of them), then every other search type (a few records each).
  # Each with wrk on the API and pgbench on the statement, as above.
  for part in name other; do
    if [[ $part == name ]]; then
      op='='
      grep -E "searchType=NAME&" "$out/paths-$n.txt" >"$out/paths-$n-$part.txt"
    else
      op='<>'
      grep -vE "searchType=NAME&" "$out/paths-$n.txt" >"$out/paths-$n-$part.txt"
    fi
    q -c "SET client_min_messages = warning; DROP TABLE IF EXISTS bench_keys_part;
          CREATE TABLE bench_keys_part AS
            SELECT row_number() OVER (ORDER BY n)::int AS n, id_type, value
              FROM bench_keys WHERE id_type $op 'NAME';
          ALTER TABLE bench_keys_part ADD PRIMARY KEY (n); ANALYZE bench_keys_part"
    part_keys=$(q -c 'SELECT count(*) FROM bench_keys_part')
    prewarm "$bench_url"
    BENCH_TOKEN=$token BENCH_PATHS=$out/paths-$n-$part.txt \
      wrk -t2 -c"$conns" -d"${duration}s" --timeout 5s --latency -s bench/search.lua \
      "http://127.0.0.1:$port" >"$out/wrk-$n-$part.txt"
    sed -e "s/random(1, $nkeys)/random(1, $part_keys)/" -e 's/FROM bench_keys WHERE/FROM bench_keys_part WHERE/g' \
      "$out/search.sql" >"$out/search-$part.sql"
    prewarm "$bench_url"
    pgbench -n -M prepared -c "$conns" -j 2 -T "$duration" -f "$out/search-$part.sql" \
      -l --log-prefix="$out/pgbench-log-$n-$part" "$bench_url" >"$out/pgbench-$n-$part.txt" 2>&1
    read -r part_pg_p50 part_pg_p99 < <(pgbench_percentiles "$out/pgbench-log-$n-$part")
    rm -f "$out/pgbench-log-$n-$part".*
    # wrk's "N requests in T, B read": bytes per answer, headers included.
    python3 - "$out/wrk-$n-$part.txt" "$out/pgbench-$n-$part.txt" "$part_pg_p50" "$part_pg_p99" \
      "$part_keys" >"$out/split-$n-$part.json" <<'PY'
import json, re, sys
wrk, pgb = open(sys.argv[1]).read(), open(sys.argv[2]).read()
def ms(p):
    v, u = re.search(rf"^\s*{p}%\s+([0-9.]+)(us|ms|s)\s*$", wrk, re.M).groups()
    return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[u]
n, size, unit = re.search(r"(\d+) requests in [0-9.]+\w+, ([0-9.]+)(\w+) read", wrk).groups()
scale = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[unit]
print(json.dumps({
    "keys": int(sys.argv[5]),
    "api_rps": float(re.search(r"^Requests/sec:\s+([0-9.]+)", wrk, re.M).group(1)),
    "api_p50_ms": ms(50), "api_p99_ms": ms(99),
    "api_bytes_per_answer": float(size) * scale / int(n),
    "api_non2xx": int((re.search(r"Non-2xx or 3xx responses: (\d+)", wrk) or [0, 0])[1]),
    "pg_tps": float(re.search(r"^tps = ([0-9.]+)", pgb, re.M).group(1)),
    "pg_p50_ms": float(sys.argv[3]), "pg_p99_ms": float(sys.argv[4]),
}))
PY
    log "search, $part: $(cat "$out/split-$n-$part.json")"
  done

  k=$(( (RANDOM % nkeys) + 1 ))
  q >"$out/explain-$n.txt" <<SQL
PREPARE search(uuid, text, text) AS
SELECT s.record, page.total
  FROM (SELECT i.subject_id, i.kind, i.ref_key, count(*) OVER () AS total
          FROM subject_identifiers i
         WHERE i.org_id = \$1 AND i.id_type = \$2 AND i.value = \$3
         ORDER BY i.kind, i.ref_key LIMIT 100 OFFSET 0) page
  JOIN subjects s ON s.id = page.subject_id
 ORDER BY page.kind, page.ref_key;
SELECT format('EXECUTE search(%L, %L, %L)', '$org', id_type, value) FROM bench_keys WHERE n = $k \gset
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) :format
SQL

  # 3. The request pipeline.
  log "pipeline: $batch erasures + $batch exports at once, $erasures erasures at once, then $singles single erasures"
  prewarm "$bench_url"
  stat_snapshot
  DATABASE_URL=$bench_url GDPRD_LOG=warn "$pipeline" "http://127.0.0.1:$port" "$token" \
    "$out/emails-$n.txt" --batch "$batch" --erasures "$erasures" --singles "$singles" \
    --timeout "$pipeline_timeout" \
    --warmup "$warmup" >"$out/pipeline-$n.json"
  log "pipeline: $(cat "$out/pipeline-$n.json")"
  rss_peak=$(awk '/VmHWM/ {print $2}' "/proc/$server_pid/status")
  stat_diff >"$out/tables-pipeline-$n.tsv"

  # 3c. The largest subject's export, twice in a row through the API, each alone: its time to
  # COMPLETED, rows and archive, and the server's peak resident memory while it runs (the
  # peak is reset before each: `5` in /proc/PID/clear_refs) and what stays resident after.
  log "largest subject: two exports in a row of the agent in the most conversations"
  largest_json=()
  prewarm "$bench_url"
  for round in 1 2; do
    if [[ -z $largest_email ]]; then
      log "largest subject: no agent with an email address of their own; skipped"
      break
    fi
    if ! measured=$(measure_export "$bench_url" "$server_pid" "http://127.0.0.1:$port" "$token" \
      "$largest_email" "$pipeline_timeout"); then
      log "largest subject: skipped"
      break
    fi
    largest_json+=("$measured")
    log "largest subject, export $round: ${largest_json[-1]}"
  done
  stop_server

  # 3b. The baseline: the same requests for the same people, in the copy of the database
  # taken after seeding, their services' SQL run directly (bench/direct_sql.rs: no API, queue,
  # bookkeeping or finalization), with the worker's concurrency, while nothing else runs.
  log "pipeline baseline: the services' SQL of the same requests, run directly"
  prewarm "$direct_url"
  DATABASE_URL=$direct_url GDPRD_LOG=warn "$direct_sql" "$out/emails-$n.txt" \
    --warmup "$warmup" --batch "$batch" --erasures "$erasures" --singles "$singles" \
    --concurrency "${BENCH_WORKER_CONCURRENCY:-4}" \
    >"$out/direct-$n.json"
  log "baseline: $(cat "$out/direct-$n.json")"
  psql -XAtq -d "$admin_url" -c 'DROP DATABASE gdprd_bench_direct WITH (FORCE)'

  # Profile: the index clean-up an erasure ends with (src/worker/finalize.rs, DELETE FROM
  # subjects), for a subject given by one email address, as gdprd writes it and rewritten with
  # the two ways of finding the records in one IN (...) list. Rolled back.
  email=$(q -c "SELECT value FROM subject_identifiers WHERE id_type = 'EMAIL' ORDER BY random() LIMIT 1")
  q >"$out/index-delete-$n.txt" <<SQL
\set e '$email'
\set o '$org'
\echo '-- the earlier form: an OR of two sub-selects'
BEGIN;
EXPLAIN (ANALYZE, COSTS OFF) DELETE FROM subjects s
 WHERE s.org_id = :'o' AND NOT (false AND s.kind = 'user')
   AND (s.id IN (SELECT i.subject_id
                   FROM unnest(ARRAY['EMAIL'], ARRAY[:'e']) AS t(id_type, value)
                   JOIN subject_identifiers i
                     ON i.org_id = :'o' AND i.id_type = t.id_type AND i.value = t.value)
        OR (s.kind, CASE WHEN s.kind = 'dialerContact' THEN split_part(s.ref_key, ':', 2)
                         ELSE s.ref_key END)
           IN (SELECT * FROM unnest(ARRAY[]::text[], ARRAY[]::text[])));
ROLLBACK;
\echo '-- as in src/worker/finalize.rs: one IN list, a UNION of index lookups'
BEGIN;
EXPLAIN (ANALYZE, COSTS OFF) DELETE FROM subjects s
 WHERE s.org_id = :'o' AND NOT (false AND s.kind = 'user')
   AND s.id IN (SELECT i.subject_id
                  FROM unnest(ARRAY['EMAIL'], ARRAY[:'e']) AS t(id_type, value)
                  JOIN subject_identifiers i
                    ON i.org_id = :'o' AND i.id_type = t.id_type AND i.value = t.value
                UNION ALL
                SELECT s2.id FROM unnest(ARRAY[]::text[], ARRAY[]::text[]) AS k(kind, ref_key)
                  JOIN subjects s2 ON s2.org_id = :'o' AND s2.kind = k.kind AND s2.ref_key = k.ref_key);
ROLLBACK;
SQL

  python3 - "$out/result-$n.json" <<PY
import json, sys
r = {
  "subjects": $n, "seed_s": $seed_s, "seed_line": """$seed_line""", "seed_floor_s": $seed_floor_s, "seed_floor_bulk_s": $seed_floor_bulk_s,
  "seed_floor_parallel_s": $seed_floor_parallel_s,
  "prewarm_s": $( ((prewarm_on)) && echo "$prewarm_s" || echo None),
  "index_records": $index_records, "identifiers": $identifiers,
  "service_rows": ${service_rows:-0}, "db_bytes": $db_size,
  "search_keys": $(wc -l <"$out/paths-$n.txt"), "search_key_types": "$types",
  "api_rps": $api_rps, "api_p50_ms": $api_p50, "api_p99_ms": $api_p99,
  "api_requests": $api_total, "api_gdprd_cpu_ms": $api_cpu_ms,
  "api_machine_busy": $api_machine_busy, "loadavg_before_search": $loadavg, "api_non2xx": ${api_non2xx:-0}, "api_db_ms": $api_db_ms,
  "pg_tps": $pg_tps, "pg_latency_avg_ms": $pg_lat, "pg_p50_ms": $pg_p50, "pg_p99_ms": $pg_p99, "pg_db_ms": $pg_db_ms,
  "rss_idle_kb": $rss_idle, "rss_search_kb": $rss_search, "rss_peak_kb": $rss_peak,
  "largest_exports": [$(IFS=,; echo "${largest_json[*]}")],
  "explain": open("$out/explain-$n.txt").read(),
  "tables_search": open("$out/tables-search-$n.tsv").read(),
  "tables_pipeline": open("$out/tables-pipeline-$n.tsv").read(),
  "index_delete": open("$out/index-delete-$n.txt").read(),
  "search_name": json.load(open("$out/split-$n-name.json")),
  "search_other": json.load(open("$out/split-$n-other.json")),
  "pipeline": json.load(open("$out/pipeline-$n.json")),
  "direct": json.load(open("$out/direct-$n.json")),
  "duration_s": $duration, "connections": $conns, "batch": $batch, "erasures": $erasures, "singles": $singles,
  "worker_concurrency": "${BENCH_WORKER_CONCURRENCY:-default}",
  "bundle_batch": "${GDPRD_WORKER_BUNDLE_BATCH:-default}",
}
json.dump(r, open(sys.argv[1], "w"), indent=1)
PY
done

drop_databases

if [[ ! -x .build/bench-venv/bin/python ]] || ! .build/bench-venv/bin/python -c 'import matplotlib' 2>/dev/null; then
  log "installing matplotlib into .build/bench-venv"
  python3 -m venv .build/bench-venv
  .build/bench-venv/bin/pip install -q matplotlib
fi
pg_version=$(psql -XAtq -d "$admin_url" -c 'SHOW server_version')
# The server's settings that decide what the figures mean.
pg_settings=$(psql -XAtq -d "$admin_url" -c "
  SELECT string_agg(name || ' ' || CASE unit WHEN '8kB' THEN pg_size_pretty(setting::bigint * 8192)
                                             WHEN 'MB' THEN pg_size_pretty(setting::bigint * 1048576)
                                             ELSE setting END, ', ' ORDER BY ord)
    FROM pg_settings
    JOIN unnest(ARRAY['shared_buffers', 'effective_cache_size', 'max_wal_size', 'fsync',
                      'synchronous_commit', 'full_page_writes', 'ssl'])
         WITH ORDINALITY AS w (name, ord) USING (name)")
.build/bench-venv/bin/python bench/report.py "$out" "$pg_version" "bench/run.sh ${*:-}" "$pg_settings"
log "wrote BENCHMARKS.md and bench/latency.png"
