#!/usr/bin/env bash
#
# bench/profile.sh: where the time of seeding, searching and the request pipeline goes, at one
# dataset size: flame graphs of the whole machine (perf samples of every process: PostgreSQL's
# backends, gdprd, the load client) and the plans PostgreSQL runs (EXPLAIN ANALYZE), written to
# bench/profile/ (PROFILE.md and one SVG per phase). bench/run.sh measures; this explains its
# figures, and is timed by nothing (sampling call stacks slows what it samples). Not part of the
# test command.
#
# Usage:
#     bench/profile.sh              # 100,000 people (about 3 minutes)
#     bench/profile.sh 1000000      # a million people (about 6 minutes)
#
# It drops and re-creates database gdprd_bench_profile on the server found by scripts/pg-env.sh
# (DATABASE_URL is ignored: the database is destroyed), then:
#   1. seeds N people with the release binary into the empty database, the machine sampled
#      throughout;
#   2. starts `gdprd serve` on a free loopback port with the rate limits lifted and samples the
#      machine for PROFILE_SECONDS (default 10) of wrk's search load (32 connections, random
#      existing identifiers of every search type, as bench/run.sh);
#   3. samples the machine while bench/pipeline.rs submits a batch of erasures and as many
#      exports at once (PROFILE_BATCH each, default 300), then as many erasures alone;
#   4. runs EXPLAIN (ANALYZE, BUFFERS) of the search statement of src/index/store.rs for the key
#      with the most matches and for a key of each other search type;
#   5. restarts the server with connections that load auto_explain (every statement, with
#      ANALYZE and BUFFERS, sent to gdprd as a notice and logged as JSON), runs the pipeline's two
#      batches again for other people, and lists the statements by their total time, each with
#      the plan of its slowest run.
# Plans are generic (plan_cache_mode = force_generic_plan): they show $1, $2, ... where a custom
# plan would show the identifiers searched for or erased.
# Every phase starts with the database read into the page cache (pg_prewarm, when available).
# Tunables: PROFILE_SECONDS, PROFILE_BATCH, PROFILE_FREQUENCY (samples per second and core,
# default 99), PROFILE_SEED_FREQUENCY (the same while seeding; default PROFILE_FREQUENCY up to
# 200,000 people, 25 above, which keeps a million people's samples to a few hundred megabytes),
# BENCH_SKIP_BUILD=1 (use the release binaries as they are).
# Needs perf (apt-get install linux-perf) allowed to sample the whole machine (root, or
# kernel.perf_event_paranoid <= 0), wrk, psql, python3 and, for the flame graphs, inferno, which
# it installs with cargo into .build/tools on first use.
# Everything listens on 127.0.0.1 only; every process started here is stopped on exit.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$repo"

n=${1:-100000}
seconds=${PROFILE_SECONDS:-10}
batch=${PROFILE_BATCH:-300}
frequency=${PROFILE_FREQUENCY:-99}
if ((n <= 200000)); then
  seed_frequency=${PROFILE_SEED_FREQUENCY:-$frequency}
else
  seed_frequency=${PROFILE_SEED_FREQUENCY:-25}
fi
inferno_version=0.12.8
out=$repo/.build/profile
results=$repo/bench/profile
mkdir -p "$out" "$results"

log() { printf 'profile: %s\n' "$*" >&2; }

for tool in perf wrk psql python3 curl; do
  command -v "$tool" >/dev/null || {
    log "$tool is missing (perf: apt-get install linux-perf; wrk: apt-get install wrk; psql: postgresql-client)"
    exit 1
  }
done
perf record -a -o /dev/null -- true 2>/dev/null || {
  log "perf may not sample the whole machine: run as root, or set kernel.perf_event_paranoid to 0 or less"
  exit 1
}
tools=$repo/.build/tools/bin
if [[ ! -x $tools/inferno-flamegraph ]]; then
  log "installing inferno $inferno_version into .build/tools"
  cargo install --quiet --locked --version "$inferno_version" --root "$repo/.build/tools" inferno
fi

# shellcheck source=api.sh
source bench/api.sh
if [[ ${BENCH_SKIP_BUILD:-} != 1 ]]; then
  log "building the release binaries"
  cargo build --release --locked -q --bin gdprd --example pipeline
fi
release=${CARGO_TARGET_DIR:-$repo/target}/release
gdprd=$release/gdprd
pipeline=$release/examples/pipeline
require_executables "$gdprd" "$pipeline"

unset DATABASE_URL
# shellcheck source=../scripts/pg-env.sh
source scripts/pg-env.sh
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM
pg_env_database postgres
admin_url=$DATABASE_URL
db_url=${admin_url%/*}/gdprd_bench_profile

q() { psql -XAtq -v ON_ERROR_STOP=1 -d "$db_url" "$@"; }

# The database into the page cache (bench/api.sh), where pg_prewarm is available.
prewarm() { prewarm_database "$db_url" 2>/dev/null || true; }

# Samples the whole machine $2 times a second and core while the command runs; $1 names the
# phase. Its call stacks go to $out/$1.folded (one line per stack, the process's name first, each
# weighing the CPU time it stands for).
sampled() {
  local phase=$1 hz=$2
  shift 2
  perf record -q -a -F "$hz" --call-graph dwarf,16384 -o "$out/$phase.perf" -- "$@"
  log "$phase: folding the call stacks"
  perf script -i "$out/$phase.perf" 2>/dev/null | "$tools/inferno-collapse-perf" --all >"$out/$phase.folded"
  rm -f "$out/$phase.perf"
}

psql -XAtq -d "$admin_url" -c 'SET client_min_messages = warning' \
  -c 'DROP DATABASE IF EXISTS gdprd_bench_profile WITH (FORCE)' \
  -c 'CREATE DATABASE gdprd_bench_profile'
export DATABASE_URL=$db_url
GDPRD_LOG=warn "$gdprd" migrate >/dev/null

# 1. Seeding.
log "seeding $n people, sampled"
sampled seed "$seed_frequency" env GDPRD_LOG=warn "$gdprd" seed --subjects "$n" --quiet >"$out/seed.txt"
q -c 'VACUUM ANALYZE' >/dev/null
q -c 'SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS pg_prewarm' >/dev/null 2>&1 ||
  log "pg_prewarm is not available (postgresql-contrib): phases start from the cache as the ones before left it"

search_keys "$db_url" "$out/raw.tsv" "$out/paths.txt"
largest=$(largest_subject_email "$db_url")
pipeline_emails "$db_url" "$largest" "" $((6 * batch)) >"$out/emails.txt"
head -n $((3 * batch)) "$out/emails.txt" >"$out/emails-sampled.txt"
tail -n +$((3 * batch + 1)) "$out/emails.txt" >"$out/emails-explained.txt"

# 2. Search.
port=$(free_port)
start_server "$gdprd" "$port" "$out/serve.log"
token=$(api_token "$gdprd" "$port" gdpr:subject:view,gdpr:request:add,gdpr:request:view)
prewarm
log "search: wrk, 32 connections, a 3 s warm-up, then ${seconds} s sampled"
BENCH_TOKEN=$token BENCH_PATHS=$out/paths.txt \
  wrk -t2 -c32 -d3s -s bench/search.lua "http://127.0.0.1:$port" >/dev/null
BENCH_TOKEN=$token BENCH_PATHS=$out/paths.txt \
  sampled search "$frequency" wrk -t2 -c32 -d"${seconds}s" --latency -s bench/search.lua \
  "http://127.0.0.1:$port" >"$out/wrk.txt"

# 3. The pipeline.
prewarm
log "pipeline: $batch erasures and as many exports at once, then $batch erasures alone, sampled"
sampled pipeline "$frequency" "$pipeline" "http://127.0.0.1:$port" "$token" "$out/emails-sampled.txt" \
  --batch "$batch" --erasures "$batch" --singles 0 >"$out/pipeline.json" ||
  log "pipeline: the load client failed; see $out/pipeline.json"
stop_server

# 4. The search statement's plans.
log "search: EXPLAIN ANALYZE"
org=$(q -c 'SELECT id FROM organizations LIMIT 1')
{
  # The name shared by the most people, then a key of each other type.
  q -c "SELECT id_type, value FROM bench_keys k
         WHERE id_type = 'NAME'
         ORDER BY (SELECT count(*) FROM subject_identifiers i
                    WHERE i.org_id = '$org' AND i.id_type = k.id_type AND i.value = k.value) DESC
         LIMIT 1" -F $'\t'
  q -c "SELECT DISTINCT ON (id_type) id_type, value FROM bench_keys
         WHERE id_type <> 'NAME' ORDER BY id_type, n" -F $'\t'
} >"$out/explain-keys.tsv"
: >"$out/explain.txt"
while IFS=$'\t' read -r id_type value; do
  matches=$(q -v t="$id_type" -v v="$value" <<SQL
SELECT count(*) FROM subject_identifiers WHERE org_id = '$org' AND id_type = :'t' AND value = :'v';
SQL
  )
  {
    printf '### %s, %s matching records\n' "$id_type" "$matches"
    q -v t="$id_type" -v v="$value" <<SQL
SET plan_cache_mode = force_generic_plan;
PREPARE search(uuid, text, text) AS
SELECT s.record, page.total
  FROM (SELECT i.subject_id, i.kind, i.ref_key, count(*) OVER () AS total
          FROM subject_identifiers i
         WHERE i.org_id = \$1 AND i.id_type = \$2 AND i.value = \$3
         ORDER BY i.kind, i.ref_key LIMIT 100 OFFSET 0) page
  JOIN subjects s ON s.id = page.subject_id
 ORDER BY page.kind, page.ref_key;
\o /dev/null
EXECUTE search('$org', :'t', :'v');
\o
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE search('$org', :'t', :'v');
SQL
  } >>"$out/explain.txt"
done <"$out/explain-keys.tsv"

# 5. The pipeline's statements, with auto_explain on every connection of the server.
explained="options[session_preload_libraries]=auto_explain&options[auto_explain.log_min_duration]=0"
explained+="&options[auto_explain.log_analyze]=on&options[auto_explain.log_buffers]=on"
explained+="&options[auto_explain.log_nested_statements]=on&options[auto_explain.log_triggers]=on"
explained+="&options[auto_explain.log_level]=notice"
explained+="&options[plan_cache_mode]=force_generic_plan"
port=$(free_port)
prewarm
log "pipeline: the same batches for other people, every statement explained"
DATABASE_URL="$db_url?$explained" GDPRD_LOG_FORMAT=json \
  BENCH_SERVER_LOG=warn,sqlx::postgres::notice=info \
  start_server "$gdprd" "$port" "$out/serve-explained.log"
token=$(api_token "$gdprd" "$port" gdpr:request:add,gdpr:request:view)
"$pipeline" "http://127.0.0.1:$port" "$token" "$out/emails-explained.txt" \
  --batch "$batch" --erasures "$batch" --singles 0 >"$out/pipeline-explained.json" ||
  log "pipeline (explained): the load client failed; see $out/pipeline-explained.json"
stop_server

# Flame graphs and the report.
for phase in seed search pipeline; do
  "$tools/inferno-flamegraph" --deterministic --minwidth 0.2 --title "gdprd: $phase, $n people" \
    --subtitle "every process of the machine, sampled on every core; bench/profile.sh $n" \
    "$out/$phase.folded" >"$results/$phase.svg"
done
python3 bench/profile_report.py "$out" "$results/PROFILE.md" "$n" \
  "$(psql -XAtq -d "$admin_url" -c 'SHOW server_version')" "bench/profile.sh $n"
psql -XAtq -d "$admin_url" -c 'SET client_min_messages = warning' \
  -c 'DROP DATABASE IF EXISTS gdprd_bench_profile WITH (FORCE)'
log "wrote bench/profile/PROFILE.md and bench/profile/{seed,search,pipeline}.svg"
