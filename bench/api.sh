# shellcheck shell=bash
#
# bench/api.sh: gdprd's server and API as the benchmarks use them, and their databases, sourced
# by bench/run.sh, bench/export.sh, bench/profile.sh, bench/import.sh and bench/name_count.sh.

# Fails, naming the first that is missing, unless every path given is an executable (the release
# binaries a benchmark runs; BENCH_SKIP_BUILD=1 relies on them being built already).
require_executables() {
  local binary
  for binary in "$@"; do
    [[ -x $binary ]] || {
      echo "$binary is missing or not an executable: build it, or run without BENCH_SKIP_BUILD=1" >&2
      return 1
    }
  done
}

# Drops database $2 on the server of the admin URL $1, when it exists, ending its sessions.
drop_database() {
  psql -XAtq -d "$1" -c 'SET client_min_messages = warning' \
    -c "DROP DATABASE IF EXISTS $2 WITH (FORCE)"
}

# Drops database $2 on the server of the admin URL $1, when it exists, and creates it empty.
fresh_database() {
  drop_database "$1" "$2"
  psql -XAtq -d "$1" -c "CREATE DATABASE $2"
}

# A free TCP port on the loopback.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Reads every table and index of the database at $1 into the operating system's page cache
# (pg_prewarm, mode 'read'; the extension must be in the database). The database of a million
# people (6 GiB) fits the memory many times over, but the phases before may have written much
# more, and a machine may page out what has sat untouched for a minute (DAMON's reclaim does).
prewarm_database() {
  psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -c "
    SELECT sum(pg_prewarm(c.oid, 'read'))
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'i', 't', 'm')
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')" >/dev/null
}

# Starts `$1 serve` (the gdprd binary) on 127.0.0.1 port $2, with the rate limits lifted, its
# output to file $3, and waits until it is ready; sets server_pid. Further environment of the
# server: what the caller exports; its log filter is BENCH_SERVER_LOG (default warn).
start_server() {
  GDPRD_LISTEN=127.0.0.1:$2 GDPRD_LOG=${BENCH_SERVER_LOG:-warn} \
    GDPRD_RATE_READ_PER_MIN=100000000 GDPRD_RATE_CREATE_PER_MIN=100000000 \
    GDPRD_RATE_TOKEN_PER_MIN=100000000 GDPRD_RATE_INDEX_PER_MIN=100000000 \
    "$1" serve >"$3" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$2/readyz" >/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "the server did not start; see $3" >&2
  return 1
}

# Stops the server start_server started, if it runs.
stop_server() {
  if [[ -n ${server_pid:-} ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=
}

# Creates an API client with permissions $3 (comma-separated) with the gdprd binary $1 and
# prints a bearer token of it from the server on port $2.
api_token() {
  local client cid secret
  client=$(GDPRD_LOG=warn "$1" clients create --name "bench-$(date +%s%N)" --permissions "$3")
  cid=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["clientId"])' <<<"$client")
  secret=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["clientSecret"])' <<<"$client")
  curl -sf -u "$cid:$secret" -d grant_type=client_credentials "http://127.0.0.1:$2/oauth/token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# The largest subject: the agent in the most conversations (the demo data's agents each take
# part in a share of all conversations; nobody else comes near), by the email address its
# directory entry and its search record hold. Prints it (nothing when no agent has an address of
# their own). $1: the database URL.
largest_subject_email() {
  psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -c "
    SELECT u.email
      FROM demo.conversation_participants p JOIN demo.directory_users u ON u.id = p.user_id
     WHERE p.purpose = 'agent'
       AND (SELECT count(DISTINCT i.subject_id) FROM subject_identifiers i
             WHERE i.id_type = 'EMAIL' AND i.value = lower(u.email)) = 1
     GROUP BY u.id, u.email ORDER BY count(*) DESC, u.id LIMIT 1"
}

# Submits a GDPR_EXPORT of the subject with email address $3 to the server at $1 with bearer
# token $2, polls it every 50 ms until it is done, and prints its id; fails when it ended in
# ERROR or was not done within $4 seconds.
export_subject() {
  python3 - "$@" <<'PY'
import json, sys, time, urllib.request
base, token, email, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
def call(path, body=None):
    req = urllib.request.Request(base + path, data=body and json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
r = call("/api/v2/gdpr/requests", {"requestType": "GDPR_EXPORT", "subject": {"emailAddresses": [email]}})
deadline = time.monotonic() + timeout
while r["status"] not in ("COMPLETED", "ERROR"):
    if time.monotonic() > deadline:
        sys.exit(f"the export was not done within {timeout:.0f} s")
    time.sleep(0.05)
    r = call("/api/v2/gdpr/requests/" + r["id"])
if r["status"] != "COMPLETED":
    sys.exit("the export ended in " + r["status"])
print(r["id"])
PY
}

# One export of the subject with email address $5 by the server at $3 (process $2, bearer token
# $4), alone, measured: prints its seconds to COMPLETED, the rows found and the archive's bytes
# (of the request or, had it become a merge set, its members; read from database $1), and the
# server's resident memory before, at its peak while it ran (the peak is reset first: `5` in
# /proc/PID/clear_refs) and a second after, as one JSON object. Fails, saying why, when the
# peak cannot be reset or the export fails (timeout: $6 seconds).
measure_export() {
  local db=$1 pid=$2 base=$3 token=$4 email=$5 timeout=$6 before t0 t1 rid found rows bytes
  before=$(proc_kb "$pid" VmRSS)
  if ! echo 5 2>/dev/null >"/proc/$pid/clear_refs"; then
    echo "cannot reset the server's peak memory" >&2
    return 1
  fi
  t0=$(date +%s%N)
  rid=$(export_subject "$base" "$token" "$email" "$timeout") || return 1
  t1=$(date +%s%N)
  found=$(psql -XAtq -v ON_ERROR_STOP=1 -d "$db" -c "
    WITH r AS (SELECT id FROM gdpr_requests WHERE id = '$rid' OR parent_id = '$rid')
    SELECT (SELECT coalesce(sum(matched), 0) FROM gdpr_jobs WHERE request_id IN (SELECT id FROM r)),
           (SELECT coalesce(sum(length(content)), 0) FROM export_archives
             WHERE request_id IN (SELECT id FROM r))") || return 1
  IFS='|' read -r rows bytes <<<"$found"
  if [[ ! $rows =~ ^[0-9]+$ || ! $bytes =~ ^[0-9]+$ ]]; then
    echo "cannot read the export's rows and archive from the database" >&2
    return 1
  fi
  sleep 1
  printf '{"seconds": %s, "rows": %s, "archive_bytes": %s, "rss_before_kb": %s, "rss_peak_kb": %s, "rss_after_kb": %s}\n' \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')" "$rows" "$bytes" \
    "$before" "$(proc_kb "$pid" VmHWM)" "$(proc_kb "$pid" VmRSS)"
}

# A line of /proc/$1/status, in kB: $2 is its name (VmRSS, VmHWM).
proc_kb() {
  awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"
}

# Search keys of the database at $1: up to 200 random subjects per search type, kept as tables
# bench_pick and bench_keys (numbered from 1, in random order; normalized values, for pgbench),
# and written to file $2 as the raw spellings of the same subjects' records (type, tab, value)
# and to file $3 as API paths searching for them (for bench/search.lua).
search_keys() {
  psql -XAtq -v ON_ERROR_STOP=1 -d "$1" <<'SQL'
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench_subjects, bench_pick, bench_keys;
CREATE TABLE bench_subjects AS
  SELECT id_type, subject_id
    FROM (SELECT DISTINCT i.id_type, i.subject_id FROM subject_identifiers i) d
   ORDER BY random();
CREATE TABLE bench_pick AS
  SELECT id_type, subject_id
    FROM (SELECT id_type, subject_id, row_number() OVER (PARTITION BY id_type) AS r
            FROM bench_subjects) x
   WHERE r <= 200;
CREATE TABLE bench_keys AS
  SELECT row_number() OVER (ORDER BY random())::int AS n, i.id_type, i.value
    FROM bench_pick p JOIN subject_identifiers i USING (id_type, subject_id);
ALTER TABLE bench_keys ADD PRIMARY KEY (n);
ANALYZE bench_keys;
SQL
  psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -F $'\t' -c "
    SELECT p.id_type, v
      FROM bench_pick p JOIN subjects s ON s.id = p.subject_id,
      LATERAL (SELECT s.record->>'name' WHERE p.id_type = 'NAME'
               UNION ALL SELECT jsonb_array_elements_text(s.record->'addresses') WHERE p.id_type = 'ADDRESS'
               UNION ALL SELECT jsonb_array_elements_text(s.record->'phoneNumbers') WHERE p.id_type = 'PHONE'
               UNION ALL SELECT jsonb_array_elements_text(s.record->'emailAddresses') WHERE p.id_type = 'EMAIL'
               UNION ALL SELECT s.record->>'externalId' WHERE p.id_type = 'EXTERNAL_ID'
               UNION ALL SELECT s.record->'socialHandle'->>'value'
                          WHERE p.id_type = s.record->'socialHandle'->>'type') raw(v)
     WHERE v IS NOT NULL
     ORDER BY random()" >"$2"
  python3 - "$2" "$3" <<'PY'
import sys, urllib.parse
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as o:
    for line in f:
        t, v = line.rstrip("\n").split("\t", 1)
        o.write("/api/v2/gdpr/subjects?" + urllib.parse.urlencode({"searchType": t, "searchValue": v}) + "\n")
PY
}

# People for pipeline requests in the database at $1: $4 distinct email addresses of distinct
# people, none shared, the largest subject's ($2) not among them. At random, or, when $3 is not
# empty, drawn by a hash of it: the same people every run (the seed is deterministic).
pipeline_emails() {
  psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -v largest="$2" -v draw="$3" -v people="$4" <<'SQL'
SELECT value FROM (
  SELECT i.value, min(i.subject_id::text) AS s
    FROM subject_identifiers i WHERE i.id_type = 'EMAIL'
   GROUP BY i.value HAVING count(*) = 1) u
 WHERE value <> lower(trim(:'largest'))
 ORDER BY CASE WHEN :'draw' = '' THEN random()::text ELSE md5(value || :'draw') END
 LIMIT :people;
SQL
}
