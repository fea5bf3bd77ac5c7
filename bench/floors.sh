# bench/floors.sh: the floors of seeding, sourced by bench/run.sh and bench/seed.sh.
#
# seed_floors URL prints two figures, in seconds, of PostgreSQL writing the rows a seed wrote,
# already in the database at URL, into copies of every seeded table (INSERT ... SELECT, one
# connection, no foreign keys, no checks, one transaction, rolled back):
#   1. into copies with the same indexes, kept up to date row by row, as rows written alongside
#      existing data are;
#   2. into copies without indexes, then building the same indexes, as `gdprd seed` does into an
#      empty database.

seed_floors() {
  local url=$1 tables copies_indexed copies_bare indexes
  floor_q() { psql -XAtq -v ON_ERROR_STOP=1 -d "$url" "$@"; }
  tables="FROM pg_tables
           WHERE schemaname = 'demo' AND tablename <> 'contact_lists'
              OR (schemaname = 'public' AND tablename IN ('subjects', 'subject_identifiers'))"
  copies_indexed=$(floor_q -c "
    SELECT string_agg(format('CREATE TABLE public.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING INDEXES); '
                             'INSERT INTO public.%I SELECT * FROM %I.%I;',
                             'floor_' || tablename, schemaname, tablename,
                             'floor_' || tablename, schemaname, tablename), ' ') $tables")
  copies_bare=$(floor_q -c "
    SELECT string_agg(format('CREATE TABLE public.%I (LIKE %I.%I INCLUDING DEFAULTS); '
                             'INSERT INTO public.%I SELECT * FROM %I.%I;',
                             'floor_' || tablename, schemaname, tablename,
                             'floor_' || tablename, schemaname, tablename), ' ') $tables")
  indexes=$(floor_q -c "
    SELECT string_agg(regexp_replace(regexp_replace(pg_get_indexdef(i.indexrelid),
                                                    ' ON (\S+) ', ' ON public.floor_' || c.relname || ' '),
                                     'INDEX (\S+) ON', 'INDEX floor_\1 ON') || ';', ' ')
      FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
     WHERE (c.relnamespace = 'demo'::regnamespace AND c.relname <> 'contact_lists')
        OR c.oid IN ('subjects'::regclass, 'subject_identifiers'::regclass)")
  floor_time() { awk '/^Time:/ { t += $2 } END { printf "%.2f", t / 1000 }'; }
  floor_q -c 'CHECKPOINT'
  local indexed bare
  indexed=$(floor_q -c '\timing on' -c 'BEGIN' -c "$copies_indexed" -c 'ROLLBACK' | floor_time)
  floor_q -c 'CHECKPOINT'
  # The index builds may sort in as much memory as gdprd seed gives its own.
  bare=$(floor_q -c '\timing on' -c 'BEGIN' -c "SET LOCAL maintenance_work_mem = '256MB'" \
    -c "$copies_bare" -c "$indexes" -c 'ROLLBACK' | floor_time)
  echo "$indexed $bare"
}
