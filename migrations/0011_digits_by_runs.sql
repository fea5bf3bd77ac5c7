-- gdpr_digits removes each run of non-digits with one match instead of one match per
-- character. The result is the same for every text: `\D+` matches exactly the characters `\D`
-- matches, in maximal runs, and both remove every one of them. So the indexes built on the
-- function stay valid as they are, and each row costs some a sixth of what it did to index
-- (bench/analysis.md, "Phone digits by runs").
CREATE OR REPLACE FUNCTION gdpr_digits(value text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN pg_catalog.regexp_replace(value, '\D+', '', 'g');
