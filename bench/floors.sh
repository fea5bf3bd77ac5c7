# shellcheck shell=bash
# bench/floors.sh: the floors of seeding, sourced by bench/run.sh and bench/seed.sh.
#
# seed_floors URL prints three figures, in seconds, of PostgreSQL writing the rows a seed wrote,
# already in the database at URL, into copies of every seeded table (INSERT ... SELECT, no
# foreign keys, no checks, each connection in one transaction, rolled back):
#   1. into copies with the same indexes, kept up to date row by row, as rows written alongside
#      existing data are (one connection);
#   2. into copies without indexes, then building the same indexes, as `gdprd seed` does into an
#      empty database (one connection);
#   3. the same as 2 over two connections at once, each with its share of the tables (by size,
#      the largest first, each to the connection with less so far), so that both cores load and
#      index: the longer of the two.

seed_floors() {
  local url=$1
  floor_q() { psql -XAtq -v ON_ERROR_STOP=1 -d "$url" "$@"; }
  # The seeded tables, or with $1 (a comma-separated list of names) those of them in it.
  floor_tables() {
    echo "FROM pg_tables
          WHERE (schemaname = 'demo' AND tablename <> 'contact_lists'
                 OR (schemaname = 'public' AND tablename IN ('subjects', 'subject_identifiers')))
            AND ('$1' = '' OR tablename = ANY (string_to_array('$1', ',')))"
  }
  # The statements copying the tables ($1: the copies' indexes, 'INCLUDING INDEXES' or none; $2:
  # as floor_tables), and those building the copies' indexes ($1: as floor_tables).
  floor_copies() {
    floor_q -c "
      SELECT string_agg(format('CREATE TABLE public.%I (LIKE %I.%I INCLUDING DEFAULTS $1); '
                               'INSERT INTO public.%I SELECT * FROM %I.%I;',
                               'floor_' || tablename, schemaname, tablename,
                               'floor_' || tablename, schemaname, tablename), ' ')
      $(floor_tables "$2")"
  }
  floor_indexes() {
    floor_q -c "
      SELECT string_agg(regexp_replace(regexp_replace(pg_get_indexdef(i.indexrelid),
                                                      ' ON (\S+) ', ' ON public.floor_' || c.relname || ' '),
                                       'INDEX (\S+) ON', 'INDEX floor_\1 ON') || ';', ' ')
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
       WHERE c.oid IN (SELECT format('%I.%I', schemaname, tablename)::regclass $(floor_tables "$1"))"
  }
  floor_time() { awk '/^Time:/ { t += $2 } END { printf "%.2f", t / 1000 }'; }
  # Loads bare copies of the tables of $1 (as floor_tables), then builds their indexes. The index
  # builds may sort in as much memory as gdprd seed gives its own.
  floor_load_then_index() {
    floor_q -c '\timing on' -c 'BEGIN' -c "SET LOCAL maintenance_work_mem = '256MB'" \
      -c "$(floor_copies '' "$1")" -c "$(floor_indexes "$1")" -c 'ROLLBACK' | floor_time
  }
  local indexed bare parallel size table k shares=(0 0) lists=('' '') times=() pids=()
  floor_q -c 'CHECKPOINT'
  indexed=$(floor_q -c '\timing on' -c 'BEGIN' -c "$(floor_copies 'INCLUDING INDEXES' '')" \
    -c 'ROLLBACK' | floor_time)
  floor_q -c 'CHECKPOINT'
  bare=$(floor_load_then_index '')
  floor_q -c 'CHECKPOINT'
  while read -r size table; do
    k=0
    ((shares[1] < shares[0])) && k=1
    shares[k]=$((shares[k] + size))
    lists[k]+=${lists[k]:+,}$table
  done < <(floor_q -F ' ' -c "
    SELECT pg_total_relation_size(format('%I.%I', schemaname, tablename)), tablename
    $(floor_tables '') ORDER BY 1 DESC")
  times[0]=$(mktemp)
  times[1]=$(mktemp)
  for k in 0 1; do
    floor_load_then_index "${lists[k]}" >"${times[k]}" &
    pids[k]=$!
  done
  local failed=0
  for k in 0 1; do wait "${pids[k]}" || failed=1; done
  parallel=$(awk '$1 > t { t = $1 } END { printf "%.2f", t }' "${times[@]}")
  rm -f "${times[@]}"
  ((failed == 0)) || return 1
  echo "$indexed $bare $parallel"
}
