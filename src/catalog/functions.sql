-- What the catalog's generated SQL needs in an external database (the same definitions as
-- gdprd's own migrations give it: 0004_catalog_matching.sql, gdpr_digits as 0011 has it,
-- gdpr_fold as 0014 has it). Safe to run again.
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS unaccent;

CREATE OR REPLACE FUNCTION public.gdpr_fold(value text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
BEGIN
    RETURN pg_catalog.btrim(pg_catalog.regexp_replace(
        pg_catalog.lower(public.unaccent('public.unaccent'::regdictionary, value)),
        '[[:space:][:cntrl:]]+', ' ', 'g'));
END
$$;

CREATE OR REPLACE FUNCTION public.gdpr_digits(value text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN pg_catalog.regexp_replace(value, '\D+', '', 'g');
