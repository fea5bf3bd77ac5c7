# shellcheck shell=bash
#
# scripts/pg-env.sh: find (or start) a PostgreSQL server for gdprd's scripts.
#
# Usage, from a bash script:
#
#     source scripts/pg-env.sh
#     pg_env_database NAME     # exports DATABASE_URL=postgres://.../NAME
#     pg_env_describe          # prints "host:port" of DATABASE_URL (never the password)
#
# pg_env_database picks the server as follows, first match wins:
#
#   1. DATABASE_URL is already set: it is used as is (database name included,
#      nothing is created).
#   2. A server on 127.0.0.1:5432 lets user "postgres" in without a password
#      and may create databases: postgres://postgres@127.0.0.1:5432/NAME
#   3. Otherwise a throwaway cluster in .build/pg/ (data/, run/ for the socket,
#      log), trust auth, listening on 127.0.0.1 only, port 55432, superuser
#      "postgres": postgres://postgres@127.0.0.1:55432/NAME
#      It is created and started on first use and reused afterwards; the
#      server binaries are the newest /usr/lib/postgresql/*/bin (Debian's
#      postgresql package is installed when there are none).
#      scripts/pg-stop.sh stops it; scripts/pg-stop.sh --purge also deletes it.
#
# In cases 2 and 3 database NAME is created when missing.
#
# Variables read:
#   DATABASE_URL            use this server and database as they are (case 1)
#   GDPRD_PG_FORCE_LOCAL=1  skip case 2: always use the throwaway cluster
#   GDPRD_PG_PORT           port of the throwaway cluster (default 55432)
#
# Set by pg_env_database: DATABASE_URL (exported) and PG_ENV_SOURCE
# ("env", "system" or "local"; not exported).
#
# This file only defines functions (all prefixed pg_env_ / _pg_env_); it is
# written to work under `set -euo pipefail`.

_pg_env_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

_pg_env_log() {
  printf 'pg-env: %s\n' "$*" >&2
}

_pg_env_is_root() {
  [[ $(id -u) -eq 0 ]]
}

# Runs a command as root: directly, or through sudo when available.
_pg_env_as_root() {
  if _pg_env_is_root; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    _pg_env_log "root is needed to run: $*"
    return 1
  fi
}

# Runs a command as the owner of the throwaway cluster. initdb and postgres
# refuse to run as root, so root uses the "postgres" OS user; anyone else is
# the owner already. Runs from / so the command never depends on being able
# to enter the caller's working directory.
_pg_env_as_owner() {
  if ! _pg_env_is_root; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && su -s /bin/bash postgres -c "$(printf '%q ' "$@")")
  fi
}

# psql that never prompts and never picks up a password from the environment
# or a password file: a server is only used when it lets us in without one.
_pg_env_psql() {
  local psql=$1
  shift
  env -u PGPASSWORD -u PGSERVICE PGPASSFILE=/nonexistent/.pgpass PGCONNECT_TIMEOUT=5 \
    "$psql" -X -w -q "$@"
}

# Prints the bin directory of the PostgreSQL server binaries, or nothing.
# With an argument (a major version such as 15) only that version is accepted;
# without one the newest installed version is chosen. Looks in Debian's
# /usr/lib/postgresql/*/bin, then at an initdb on PATH.
_pg_env_find_bindir() {
  local want=${1:-} dir ver best="" best_ver=0 initdb
  for dir in /usr/lib/postgresql/*/bin; do
    [[ -x $dir/initdb && -x $dir/pg_ctl ]] || continue
    ver=${dir#/usr/lib/postgresql/}
    ver=${ver%/bin}
    [[ $ver =~ ^[0-9]+$ ]] || continue
    if [[ -n $want && $ver != "$want" ]]; then
      continue
    fi
    if ((ver > best_ver)); then
      best_ver=$ver
      best=$dir
    fi
  done
  if [[ -z $best ]] && initdb=$(command -v initdb 2>/dev/null); then
    # e.g. "initdb (PostgreSQL) 15.8" -> 15
    ver=$("$initdb" --version 2>/dev/null | sed -n 's/.* \([0-9][0-9]*\)\.[0-9].*/\1/p')
    if [[ -z $want || $ver == "$want" ]]; then
      best=$(dirname "$initdb")
    fi
  fi
  printf '%s' "$best"
}

# Installs Debian's PostgreSQL server packages. Only called when no server
# binaries are found, and apt-get install is a no-op for installed packages,
# so running it again is harmless. Debian's postinst may create (and start)
# its own "main" cluster on port 5432: nothing here relies on it. Its TCP
# logins need a password, so case 2 does not pick it up either.
_pg_env_install_server() {
  if ! command -v apt-get >/dev/null 2>&1; then
    _pg_env_log "no PostgreSQL server binaries found and apt-get is missing:"
    _pg_env_log "install PostgreSQL (initdb, pg_ctl) or set DATABASE_URL"
    return 1
  fi
  _pg_env_log "installing Debian's PostgreSQL server (apt-get install postgresql postgresql-contrib)"
  _pg_env_as_root apt-get update -q || return 1
  _pg_env_as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends postgresql postgresql-contrib || return 1
}

# Prints the physical path of the throwaway cluster's folder (.build/pg),
# creating it so that the cluster owner can use it.
#
# As root the cluster belongs to the "postgres" OS user, which must be able to
# reach the folder. When the repository sits below a directory that user
# cannot traverse (e.g. /root, mode 700), the cluster is placed in
# /var/tmp/gdprd-pg-<checksum of the repository path> and .build/pg becomes a
# symlink to it. That is preferred over chmod o+x on the parent directories,
# which would quietly loosen the permissions of someone's home directory.
# All PostgreSQL commands get the physical path, never the symlink.
_pg_env_cluster_root() {
  local link=$_pg_env_repo/.build/pg real alt owner nologin=/usr/sbin/nologin
  mkdir -p "$_pg_env_repo/.build" || return 1
  if [[ -L $link && ! -e $link ]]; then
    rm -f "$link" || return 1 # dangling symlink: its target was deleted
  fi
  if ! _pg_env_is_root; then
    mkdir -p "$link" && (cd "$link" && pwd -P)
    return
  fi

  if ! id -u postgres >/dev/null 2>&1; then
    [[ -x $nologin ]] || nologin=/bin/false
    _pg_env_log "creating the postgres OS user to own the throwaway cluster"
    useradd --system --user-group --no-create-home \
      --home-dir /var/lib/postgresql --shell "$nologin" postgres || return 1
  fi
  if [[ ! -e $link ]]; then
    mkdir -m 700 "$link" || return 1
  fi
  if [[ ! -L $link && -z $(ls -A "$link") ]]; then
    chown postgres: "$link" && chmod 700 "$link" || return 1
  fi
  real=$(cd "$link" && pwd -P) || return 1
  if _pg_env_as_owner test -w "$real" -a -x "$real"; then
    printf '%s' "$real"
    return
  fi

  # The postgres user cannot reach .build/pg: move the cluster out.
  if [[ -L $link ]] || [[ -n $(ls -A "$link") ]]; then
    _pg_env_log "the postgres OS user cannot use $link; remove it (scripts/pg-stop.sh --purge) and retry"
    return 1
  fi
  alt=/var/tmp/gdprd-pg-$(printf '%s' "$_pg_env_repo" | cksum | cut -d' ' -f1)
  if [[ -L $alt ]]; then
    _pg_env_log "$alt is a symlink; refusing to use it"
    return 1
  fi
  if [[ ! -d $alt ]]; then
    mkdir -m 700 "$alt" || return 1
  fi
  owner=$(stat -c %U "$alt") || return 1
  if [[ $owner != root && $owner != postgres ]]; then
    _pg_env_log "$alt belongs to $owner; refusing to use it"
    return 1
  fi
  chown postgres: "$alt" && chmod 700 "$alt" || return 1
  rmdir "$link" && ln -s "$alt" "$link" || return 1
  _pg_env_log "the postgres OS user cannot enter this repository; cluster placed in $alt (.build/pg links to it)"
  printf '%s' "$alt"
}

# Creates (once) and starts (unless running) the throwaway cluster; prints the
# port it listens on.
_pg_env_local_server() {
  local root data run log port bindir ver locale out sockdir
  port=${GDPRD_PG_PORT:-55432}
  root=$(_pg_env_cluster_root) || return 1
  data=$root/data
  run=$root/run
  log=$root/log

  if [[ -f $data/PG_VERSION ]]; then
    ver=$(<"$data/PG_VERSION")
    bindir=$(_pg_env_find_bindir "$ver")
    if [[ -z $bindir ]]; then
      _pg_env_log "the cluster in .build/pg was made by PostgreSQL $ver, whose binaries are missing;"
      _pg_env_log "delete it with scripts/pg-stop.sh --purge"
      return 1
    fi
  else
    bindir=$(_pg_env_find_bindir)
    if [[ -z $bindir ]]; then
      _pg_env_install_server || return 1
      bindir=$(_pg_env_find_bindir)
      if [[ -z $bindir ]]; then
        _pg_env_log "no PostgreSQL server binaries found after installing them"
        return 1
      fi
    fi
    if [[ -e $data ]]; then
      # Left over from an interrupted initdb: it holds no PG_VERSION.
      _pg_env_as_owner rm -rf "$data" || return 1
    fi
    locale=C
    if command -v locale >/dev/null 2>&1 && locale -a 2>/dev/null | grep -qixE 'c\.utf-?8'; then
      locale=C.UTF-8
    fi
    _pg_env_log "creating a throwaway PostgreSQL cluster in .build/pg ($bindir)"
    out=$(_pg_env_as_owner "$bindir/initdb" -D "$data" -U postgres --auth=trust \
      --encoding=UTF8 --locale="$locale" 2>&1) || {
      printf '%s\n' "$out" >&2
      _pg_env_log "initdb failed"
      return 1
    }
    # Throwaway data: trade crash safety for speed.
    printf '%s\n' '' '# gdprd throwaway cluster (scripts/pg-env.sh): no crash safety needed' \
      'fsync = off' 'synchronous_commit = off' 'full_page_writes = off' \
      | _pg_env_as_owner tee -a "$data/postgresql.conf" >/dev/null || return 1
  fi
  _pg_env_as_owner mkdir -p "$run" || return 1

  if _pg_env_as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    # Already running: line 4 of postmaster.pid is its port.
    out=$(sed -n 4p "$data/postmaster.pid" 2>/dev/null)
    if [[ $out =~ ^[0-9]+$ && $out != "$port" ]]; then
      _pg_env_log "throwaway cluster already running on port $out (not $port); using it"
      port=$out
    fi
    printf '%s' "$port"
    return 0
  fi

  # A Unix socket path longer than 107 bytes cannot be created; TCP is all
  # the scripts use, so go without the socket in that case.
  sockdir=$run
  if ((${#run} + 20 > 107)); then
    sockdir=
  fi
  _pg_env_log "starting the throwaway PostgreSQL cluster on 127.0.0.1:$port"
  # The server must not inherit the lock's file descriptor (it would hold the
  # lock for as long as it runs), hence the subshell closing it.
  if ! (
    if [[ -n ${_pg_env_lock_fd:-} ]]; then
      exec {_pg_env_lock_fd}>&-
    fi
    _pg_env_as_owner "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 \
      -o "-h 127.0.0.1 -p $port -k '$sockdir'" start >/dev/null
  ); then
    _pg_env_log "pg_ctl start failed; the end of .build/pg/log says:"
    tail -n 20 "$log" >&2 2>/dev/null || true
    return 1
  fi
  printf '%s' "$port"
}

# Same, holding a lock so that two scripts starting at once do not both run
# initdb.
_pg_env_local_server_locked() {
  local _pg_env_lock_fd rc=0
  if ! command -v flock >/dev/null 2>&1; then
    _pg_env_local_server
    return
  fi
  mkdir -p "$_pg_env_repo/.build" || return 1
  exec {_pg_env_lock_fd}>"$_pg_env_repo/.build/pg.lock" || return 1
  flock "$_pg_env_lock_fd" || rc=1
  if ((rc == 0)); then
    _pg_env_local_server || rc=$?
  fi
  exec {_pg_env_lock_fd}>&-
  return "$rc"
}

# Does 127.0.0.1:5432 let "postgres" in without a password, with the right
# to create databases?
_pg_env_system_server_ok() {
  local have_isready=0 psql ok
  if command -v pg_isready >/dev/null 2>&1; then
    have_isready=1
    pg_isready -q -h 127.0.0.1 -p 5432 -t 3 || return 1
  fi
  if psql=$(command -v psql 2>/dev/null); then
    ok=$(_pg_env_psql "$psql" -At -h 127.0.0.1 -p 5432 -U postgres -d postgres \
      -c 'select rolsuper or rolcreatedb from pg_roles where rolname = current_user' \
      2>/dev/null) || return 1
    [[ $ok == t ]]
    return
  fi
  if ((have_isready)); then
    return 0
  fi
  # Neither pg_isready nor psql: all that can be checked is that the port is open.
  if command -v timeout >/dev/null 2>&1; then
    timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5432' 2>/dev/null
  else
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
  fi
}

# Creates database $3 on the server at base URL $2 (no database part) with
# psql $1, unless it exists.
_pg_env_create_database() {
  local psql=$1 base=$2 name=$3 exists out
  exists=$(_pg_env_psql "$psql" -At -d "$base/postgres" \
    -c "select 1 from pg_database where datname = '$name'") || {
    _pg_env_log "cannot connect to ${base#*@}"
    return 1
  }
  [[ $exists == 1 ]] && return 0
  _pg_env_log "creating database $name"
  out=$(_pg_env_psql "$psql" -d "$base/postgres" -c "create database \"$name\"" 2>&1) ||
    [[ $out == *"already exists"* ]] || {
    printf '%s\n' "$out" >&2
    return 1
  }
}

# pg_env_database NAME: exports DATABASE_URL for database NAME (see the top).
# shellcheck disable=SC2034 # PG_ENV_SOURCE is for the calling scripts
pg_env_database() {
  local name=${1:?usage: pg_env_database NAME} base port psql
  if [[ ! $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    _pg_env_log "invalid database name: $name"
    return 1
  fi

  if [[ -n ${DATABASE_URL:-} ]]; then
    PG_ENV_SOURCE="env"
    export DATABASE_URL
    return 0
  fi

  if [[ ${GDPRD_PG_FORCE_LOCAL:-} != 1 ]] && _pg_env_system_server_ok; then
    PG_ENV_SOURCE="system"
    base=postgres://postgres@127.0.0.1:5432
    psql=$(command -v psql 2>/dev/null) || psql=$(_pg_env_find_bindir)/psql
  else
    PG_ENV_SOURCE="local"
    port=$(_pg_env_local_server_locked) || return 1
    base=postgres://postgres@127.0.0.1:$port
    psql=$(_pg_env_find_bindir "$(cat "$_pg_env_repo/.build/pg/data/PG_VERSION" 2>/dev/null)")/psql
    [[ -x $psql ]] || psql=$(command -v psql 2>/dev/null) || psql=
  fi

  if [[ -x $psql ]]; then
    _pg_env_create_database "$psql" "$base" "$name" || return 1
  elif [[ $name != postgres ]]; then
    _pg_env_log "psql not found: cannot make sure database $name exists"
  fi
  export DATABASE_URL=$base/$name
}

# Prints host:port of DATABASE_URL, leaving out user and password.
pg_env_describe() {
  local rest=${DATABASE_URL#*://}
  rest=${rest%%[/?]*}
  rest=${rest##*@}
  printf '%s' "${rest:-(default host)}"
}
