-- gdpr_fold runs in PL/pgSQL instead of SQL, which makes writing a row of a table with a match
-- index on a name or an address cheaper (and the seed's builds of those indexes faster).
--
-- PostgreSQL inlines an SQL function into the statement that calls it only when its body is as
-- immutable as the function is declared. `unaccent` is only STABLE, so gdpr_fold was never
-- inlined, and each call went through the SQL function executor. PL/pgSQL evaluates the same
-- expression as a simple expression, with less set-up per call: folding the names of 218,924
-- conversation participants took 800 ms instead of 1,235 ms (bench/analysis.md, "Folding in
-- PL/pgSQL, and four search connections").
--
-- The expression is unchanged, word for word, so every result is the same and the indexes built
-- on the function stay valid. Calls of gdpr_fold are not inlined, before or after, so a session
-- that was open before this migration still matches its indexes (unlike gdpr_digits in 0011).
CREATE OR REPLACE FUNCTION gdpr_fold(value text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
BEGIN
    RETURN pg_catalog.btrim(pg_catalog.regexp_replace(
        pg_catalog.lower(public.unaccent('public.unaccent'::regdictionary, value)),
        '[[:space:][:cntrl:]]+', ' ', 'g'));
END
$$;
