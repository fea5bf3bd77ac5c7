#!/usr/bin/env bash
#
# The contract stage of scripts/test.sh: gdprd as a client sees it.
#
# Starts the debug build of gdprd on a free loopback port against a fresh
# database (gdprd_contract, on the server of DATABASE_URL) holding two seeded
# organizations of a few hundred people, each with an API client holding every
# permission, then runs
#
#   1. schemathesis, in organization "fuzz": every operation of the committed
#      openapi.yaml, with valid credentials and without: no 5xx, and every
#      status code, content type, header and body as the spec says
#      (contract/schemathesis.toml);
#   2. pytest contract/, in organization "demo" (whose known people the fuzzer
#      cannot have touched): Genesys' own Python SDK
#      (PureCloudPlatformClientV2) searches subjects, submits each request
#      type, polls them to COMPLETED, lists them, and gets errors as
#      ApiException with our ErrorBody.
#
# The tools live in a virtualenv in .build/contract-venv, made on first use
# from contract/requirements.txt (pinned versions).
#
#   contract/run.sh                 both stages
#   CONTRACT_MAX_EXAMPLES=N         test cases per operation and schemathesis
#                                   run (default 100)
#   CONTRACT_SUBJECTS=N             people seeded per organization (default 300)
#
# Needs DATABASE_URL (scripts/test.sh sets it), python3 and psql.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

venv=.build/contract-venv
work=.build/contract
mkdir -p "$work"
# No __pycache__ or .hypothesis folders in the work tree.
export PYTHONDONTWRITEBYTECODE=1
export HYPOTHESIS_STORAGE_DIRECTORY=$PWD/$work/hypothesis

log() {
  printf '==> %s\n' "$*"
}

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  else
    sudo "$@"
  fi
}

# The virtualenv, with contract/requirements.txt installed (again when the file
# changed). Debian ships venv apart from python3 (package python3-venv).
ensure_venv() {
  if [[ ! -x $venv/bin/python ]]; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      rm -rf "$venv"
      log "installing python3-venv (apt-get)"
      as_root apt-get update -q
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
      python3 -m venv "$venv"
    fi
  fi
  if ! cmp -s contract/requirements.txt "$venv/requirements.installed"; then
    log "pip install -r contract/requirements.txt (into $venv)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
      -r contract/requirements.txt
    cp contract/requirements.txt "$venv/requirements.installed"
  fi
}

# psql: on PATH, beside Debian's server binaries, or installed (postgresql-client).
psql_bin() {
  local dir
  for _ in 1 2; do
    if command -v psql >/dev/null 2>&1; then
      command -v psql
      return
    fi
    for dir in /usr/lib/postgresql/*/bin; do
      if [[ -x $dir/psql ]]; then
        printf '%s\n' "$dir/psql"
        return
      fi
    done
    command -v apt-get >/dev/null 2>&1 || break
    log "installing postgresql-client (apt-get)" >&2
    as_root apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends postgresql-client >&2
  done
  echo "contract: psql is needed to create the contract database" >&2
  return 1
}

# DATABASE_URL with its database name replaced by $1 (query string kept).
database_url() {
  local url=${DATABASE_URL%%\?*} query=""
  if [[ $DATABASE_URL == *\?* ]]; then
    query="?${DATABASE_URL#*\?}"
  fi
  printf '%s/%s%s' "${url%/*}" "$1" "$query"
}

fresh_database() {
  local psql
  psql=$(psql_bin)
  env PGCONNECT_TIMEOUT=10 "$psql" -X -w -q -v ON_ERROR_STOP=1 -d "$(database_url postgres)" \
    -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"
}

free_port() {
  "$venv/bin/python" -c \
    'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Value of string field $1 of the JSON object $2.
json_field() {
  "$venv/bin/python" -c 'import json, sys; print(json.loads(sys.argv[2])[sys.argv[1]])' "$1" "$2"
}

# Seeds organization $1 and creates an API client of it holding every
# permission; prints the client as JSON.
organization() {
  "$gdprd" seed --org "$1" --subjects "${CONTRACT_SUBJECTS:-300}" --quiet >>"$work/gdprd.log" 2>&1
  "$gdprd" clients create --org "$1" --name "contract-$1" \
    --permissions gdpr:subject:view,gdpr:request:add,gdpr:request:view,gdpr:index:write \
    2>>"$work/gdprd.log"
}

ensure_venv

gdprd=${CARGO_TARGET_DIR:-target}/debug/gdprd
log "cargo build --bin gdprd"
cargo build --locked --quiet --bin gdprd

fresh_database gdprd_contract
export DATABASE_URL
DATABASE_URL=$(database_url gdprd_contract)
"$gdprd" migrate >"$work/gdprd.log" 2>&1
log "seeding organizations fuzz and demo"
fuzz_client=$(organization fuzz)
fuzz_id=$(json_field clientId "$fuzz_client")
fuzz_secret=$(json_field clientSecret "$fuzz_client")
demo_client=$(organization demo)
export GDPRD_CLIENT_ID GDPRD_CLIENT_SECRET GDPRD_BASE_URL
GDPRD_CLIENT_ID=$(json_field clientId "$demo_client")
GDPRD_CLIENT_SECRET=$(json_field clientSecret "$demo_client")

port=$(free_port)
GDPRD_BASE_URL=http://127.0.0.1:$port
log "gdprd serve on $GDPRD_BASE_URL (log: $work/gdprd.log)"
# Limits high enough that the fuzzer is not throttled (429s would hide what it tests).
GDPRD_LISTEN=127.0.0.1:$port \
  GDPRD_RATE_TOKEN_PER_MIN=100000 GDPRD_RATE_READ_PER_MIN=100000 \
  GDPRD_RATE_CREATE_PER_MIN=100000 GDPRD_RATE_INDEX_PER_MIN=100000 \
  GDPRD_POLL_INTERVAL_MS=100 GDPRD_RETRY_BASE_MS=100 \
  "$gdprd" serve >>"$work/gdprd.log" 2>&1 &
server=$!
stop_server() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap stop_server EXIT

"$venv/bin/python" - "$GDPRD_BASE_URL/readyz" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("gdprd did not become ready within 30 s")
PY

# A bearer token of the fuzzer's client.
token() {
  "$venv/bin/python" - "$GDPRD_BASE_URL" "$fuzz_id" "$fuzz_secret" <<'PY'
import base64, json, sys, urllib.request
base, client_id, secret = sys.argv[1:]
basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
request = urllib.request.Request(
    f"{base}/oauth/token", data=b"grant_type=client_credentials",
    headers={"Authorization": f"Basic {basic}",
             "Content-Type": "application/x-www-form-urlencoded"})
with urllib.request.urlopen(request, timeout=10) as response:
    print(json.load(response)["access_token"])
PY
}

status=0

# One schemathesis run; it reads contract/schemathesis.toml (checks, phases,
# hooks). $1 names the run (and its JUnit report in .build/contract/).
schemathesis() {
  local name=$1
  shift
  log "schemathesis: $name"
  (cd contract && "../$venv/bin/schemathesis" --config-file schemathesis.toml run ../openapi.yaml \
    --url "$GDPRD_BASE_URL" --max-examples "${CONTRACT_MAX_EXAMPLES:-100}" --seed 1 \
    --report junit --report-dir "../$work/$name" "$@") || status=1
}

# Every operation with a bearer token; the token endpoint with the client's
# credentials (HTTP Basic); every operation without credentials; and the
# revocation of a token last, with a token of its own (revoking the shared one
# would turn every later call into a 401).
schemathesis with-token -H "Authorization: Bearer $(token)" \
  --exclude-operation-id deleteTokensMe --exclude-operation-id postOauthToken
schemathesis client-credentials -a "$fuzz_id:$fuzz_secret" \
  --include-operation-id postOauthToken
schemathesis without-credentials
schemathesis revocation -H "Authorization: Bearer $(token)" \
  --include-operation-id deleteTokensMe

log "pytest contract/ (Genesys' Python SDK against gdprd)"
"$venv/bin/python" -m pytest -p no:cacheprovider contract || status=1

stop_server
trap - EXIT
if ((status != 0)); then
  echo "contract: FAILED; the end of the server log ($work/gdprd.log):" >&2
  tail -n 30 "$work/gdprd.log" >&2
fi
exit "$status"
