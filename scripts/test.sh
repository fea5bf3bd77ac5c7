#!/usr/bin/env bash
#
# Runs gdprd's test suite against PostgreSQL (found or started by
# scripts/pg-env.sh; set DATABASE_URL to use a server of your own).
#
#   scripts/test.sh                  all tests, then the contract stage
#   scripts/test.sh subjects         only tests whose name contains "subjects"
#   scripts/test.sh -- --nocapture   arguments go to the first `cargo test`
#
# The contract stage (contract/run.sh) runs the server and tests it as a client
# would: schemathesis against the committed openapi.yaml, and Genesys' own
# Python SDK. It follows a full run (no arguments); GDPRD_CONTRACT=0 skips it,
# GDPRD_CONTRACT=1 runs it after a filtered one too.
#
# GDPRD_TEST_THREADS=N is the same as the test harness's --test-threads=N; it
# is passed as RUST_TEST_THREADS so that it also reaches the doc tests and
# mixes with arguments of your own.
#
# #[sqlx::test] creates a fresh database per test on DATABASE_URL's server,
# so the URL only needs to name a database that exists ("postgres").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/pg-env.sh
source scripts/pg-env.sh
pg_env_database postgres
export DATABASE_URL
echo "==> tests use PostgreSQL at $(pg_env_describe) ($PG_ENV_SOURCE)"

if [[ -n ${GDPRD_TEST_THREADS:-} ]]; then
  export RUST_TEST_THREADS=$GDPRD_TEST_THREADS
fi

cargo test --locked --all-targets "$@"

# Doc tests exist only for a library target; `cargo test --doc` fails on a
# binary-only package.
if [[ -f src/lib.rs ]] || grep -q '^\[lib\]' Cargo.toml; then
  cargo test --locked --doc
fi

if [[ ${GDPRD_CONTRACT:-} == 1 || ($# -eq 0 && ${GDPRD_CONTRACT:-} != 0) ]]; then
  echo "==> contract stage (contract/run.sh)"
  bash contract/run.sh
fi
