#!/usr/bin/env bash
#
# Starts gdprd with demo data:
#   - finds or starts PostgreSQL (scripts/pg-env.sh) and uses database
#     gdprd_demo (or DATABASE_URL when set),
#   - builds the release binary, applies the migrations, seeds the demo
#     organization (GDPRD_DEMO_SUBJECTS subjects, default 10000; skipped
#     when it already has data),
#   - creates an API client and writes its credentials to .build/demo.env
#     (`source .build/demo.env` in another terminal),
#   - serves on GDPRD_LISTEN (default 127.0.0.1:8080).
# Every GDPRD_* variable is passed on to gdprd.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/pg-env.sh
source scripts/pg-env.sh
pg_env_database gdprd_demo
export DATABASE_URL
echo "==> demo uses PostgreSQL at $(pg_env_describe) ($PG_ENV_SOURCE)"

echo "==> cargo build --release --locked"
cargo build --release --locked
gdprd=${CARGO_TARGET_DIR:-target}/release/gdprd

echo "==> gdprd migrate"
"$gdprd" migrate

echo "==> gdprd seed --subjects ${GDPRD_DEMO_SUBJECTS:-10000}"
"$gdprd" seed --subjects "${GDPRD_DEMO_SUBJECTS:-10000}"

echo "==> gdprd clients create --name demo"
client_json=$("$gdprd" clients create --name demo \
  --permissions gdpr:subject:view,gdpr:request:add,gdpr:request:view,gdpr:index:write)

# Value of string field $1 in the JSON text $2 (no jq or python needed).
json_string() {
  printf '%s\n' "$2" |
    sed -n 's/.*"'"$1"'"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' |
    head -n 1
}
client_id=$(json_string clientId "$client_json")
client_secret=$(json_string clientSecret "$client_json")
if [[ -z $client_id || -z $client_secret ]]; then
  echo "could not read clientId/clientSecret from: $client_json" >&2
  exit 1
fi

# Where to reach the server: GDPRD_LISTEN, with a wildcard address replaced
# by the loopback one.
listen=${GDPRD_LISTEN:-127.0.0.1:8080}
case $listen in
  0.0.0.0:*) listen="127.0.0.1:${listen##*:}" ;;
  "[::]:"*) listen="[::1]:${listen##*:}" ;;
esac
base_url=http://$listen

mkdir -p .build
(
  umask 077
  {
    printf 'export DATABASE_URL=%q\n' "$DATABASE_URL"
    printf 'export GDPRD_CLIENT_ID=%q\n' "$client_id"
    printf 'export GDPRD_CLIENT_SECRET=%q\n' "$client_secret"
    printf 'export GDPRD_BASE_URL=%q\n' "$base_url"
  } >.build/demo.env
)

cat <<MSG

Demo API client (also in .build/demo.env; run \`source .build/demo.env\` in another terminal):
  client id:     $client_id
  client secret: $client_secret

Get an access token:
  curl -s -u '$client_id:$client_secret' -d grant_type=client_credentials $base_url/oauth/token
or, after sourcing .build/demo.env:
  curl -s -u "\$GDPRD_CLIENT_ID:\$GDPRD_CLIENT_SECRET" -d grant_type=client_credentials "\$GDPRD_BASE_URL/oauth/token"

==> gdprd serve on $base_url (Ctrl-C stops it)
MSG

exec "$gdprd" serve
