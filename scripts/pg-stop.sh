#!/usr/bin/env bash
#
# Stops the throwaway PostgreSQL cluster that scripts/pg-env.sh runs from
# .build/pg/ (a server found on port 5432 or given by DATABASE_URL is never
# touched).
#
#   scripts/pg-stop.sh           stop it; its data is kept for the next run
#   scripts/pg-stop.sh --purge   stop it and delete it
set -euo pipefail

purge=0
case ${1:-} in
  "") ;;
  --purge) purge=1 ;;
  *)
    echo "usage: $0 [--purge]" >&2
    exit 2
    ;;
esac

# shellcheck source=scripts/pg-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/pg-env.sh"

link=$_pg_env_repo/.build/pg
if [[ ! -e $link ]]; then
  [[ -L $link ]] && rm -f "$link" # dangling symlink
  echo "no throwaway PostgreSQL cluster in .build/pg"
  exit 0
fi
root=$(cd "$link" && pwd -P)
data=$root/data

if [[ -f $data/PG_VERSION ]]; then
  bindir=$(_pg_env_find_bindir "$(<"$data/PG_VERSION")")
  if [[ -z $bindir ]]; then
    echo "PostgreSQL $(<"$data/PG_VERSION") binaries not found: cannot check the cluster" >&2
    [[ $purge == 1 && -f $data/postmaster.pid ]] && exit 1
  elif _pg_env_as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    _pg_env_as_owner "$bindir/pg_ctl" -D "$data" -m fast -w -t 60 stop
  else
    echo "throwaway PostgreSQL cluster is not running"
  fi
fi

if [[ $purge == 1 ]]; then
  rm -rf "$root"
  [[ -L $link ]] && rm -f "$link"
  echo "deleted the throwaway PostgreSQL cluster"
fi
