#!/usr/bin/env bash
#
# bench/export.sh: the largest subject's export and the server's peak memory while it runs, for
# this checkout's build and, beside it in the same run, other gdprd builds (a baseline).
#
# Usage:
#     bench/export.sh                    # this checkout's release build
#     bench/export.sh /path/to/gdprd     # and another build, in turn with this one
#
# Database gdprd_bench_export on the server found by scripts/pg-env.sh (DATABASE_URL is
# ignored) is seeded with BENCH_SUBJECTS people (default 1,000,000: the size at which the
# export is largest) by this checkout's build, unless it already holds them from an earlier run
# (seeding a million people takes several minutes); the builds compared must share its
# migrations. Then BENCH_SERIES times (default 2), each build in turn starts `gdprd serve` on a
# free loopback port and exports the largest subject (the agent in the most conversations,
# bench/api.sh) BENCH_EXPORTS times in a row (default 3), each alone: its time to COMPLETED,
# rows, archive size, and the server's resident memory before, at its peak during the export
# (reset before each) and after. Last, per build, the highest and the median of the peaks.
# BENCH_SKIP_BUILD=1 uses the release binary as it is.

set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# The other builds, as given from where the script was started.
others=()
for build in "$@"; do
  others+=("$(realpath -m -- "$build")")
done
cd "$repo"

subjects=${BENCH_SUBJECTS:-1000000}
series=${BENCH_SERIES:-2}
exports=${BENCH_EXPORTS:-3}

log() { printf 'bench: %s\n' "$*" >&2; }

if [[ ${BENCH_SKIP_BUILD:-} != 1 ]]; then
  log "building the release binary"
  cargo build --release --locked -q --bin gdprd
fi
# shellcheck source=api.sh
source bench/api.sh
builds=("${CARGO_TARGET_DIR:-$repo/target}/release/gdprd" "${others[@]}")
require_executables "${builds[@]}"

unset DATABASE_URL
# shellcheck source=../scripts/pg-env.sh
source scripts/pg-env.sh
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM
pg_env_database postgres
admin_url=$DATABASE_URL
export DATABASE_URL=${admin_url%/*}/gdprd_bench_export
out=$repo/.build/bench-export
mkdir -p "$out"


# The database's comment says how many people it was seeded with.
seeded=$(psql -XAtq -d "$admin_url" -c "SELECT shobj_description(oid, 'pg_database')
                                           FROM pg_database WHERE datname = 'gdprd_bench_export'")
if [[ $seeded != "seeded: $subjects" ]]; then
  log "seeding $subjects people into gdprd_bench_export"
  psql -XAtq -d "$admin_url" -c 'SET client_min_messages = warning' \
    -c 'DROP DATABASE IF EXISTS gdprd_bench_export WITH (FORCE)' \
    -c 'CREATE DATABASE gdprd_bench_export'
  GDPRD_LOG=warn "${builds[0]}" migrate >/dev/null
  GDPRD_LOG=warn "${builds[0]}" seed --subjects "$subjects" --quiet | tail -n 1 >&2
  psql -XAtq -d "$DATABASE_URL" -c 'VACUUM ANALYZE'
  psql -XAtq -d "$admin_url" -c "COMMENT ON DATABASE gdprd_bench_export IS 'seeded: $subjects'"
fi
email=$(largest_subject_email "$DATABASE_URL")
[[ -n $email ]] || { log "no agent with an email address of their own"; exit 1; }

peaks=$out/peaks.tsv
: >"$peaks"
for s in $(seq "$series"); do
  for b in "${!builds[@]}"; do
    build=${builds[$b]}
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    start_server "$build" "$port" "$out/serve-$s-$b.log"
    token=$(api_token "$build" "$port" gdpr:request:add,gdpr:request:view)
    for e in $(seq "$exports"); do
      if ! measured=$(measure_export "$DATABASE_URL" "$server_pid" "http://127.0.0.1:$port" \
        "$token" "$email" 300); then
        log "series $s, build $b ($build), export $e failed; the server's log: $out/serve-$s-$b.log"
        exit 1
      fi
      log "series $s, build $b ($build), export $e: $measured"
      printf '%s\t%s\n' "$b" "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["rss_peak_kb"])' <<<"$measured")" >>"$peaks"
    done
    stop_server
  done
done

echo "build	peak RSS, highest (MiB)	median (MiB)	exports"
for b in "${!builds[@]}"; do
  awk -F'\t' -v b="$b" '$1 == b { print $2 }' "$peaks" | sort -n |
    awk -v name="${builds[$b]}" '{ v[NR] = $1 } END {
      median = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%s\t%.0f\t%.0f\t%d\n", name, v[NR] / 1024, median / 1024, NR }'
done
