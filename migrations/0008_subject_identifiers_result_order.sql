-- A search's results come in the order of their records' kind and key. That order used to be
-- known only once every matching record had been fetched, so a search for a common name read
-- every record of that name (hundreds, at a million people) to return one page. Each identifier
-- row now carries its record's kind and key, and the primary key is in that order: a search
-- counts its matches in the index alone and fetches only the records of the page it returns.
--
-- The copies cannot drift from the record: an identifier is written only with its record's own
-- kind and key (checked per statement, with the reference itself), and neither a record's kind
-- and key nor an identifier's can be changed.

ALTER TABLE subject_identifiers ADD COLUMN kind text, ADD COLUMN ref_key text;

UPDATE subject_identifiers i
   SET kind = s.kind, ref_key = s.ref_key
  FROM subjects s
 WHERE s.id = i.subject_id;

ALTER TABLE subject_identifiers
    ALTER COLUMN kind SET NOT NULL,
    ALTER COLUMN ref_key SET NOT NULL,
    DROP CONSTRAINT subject_identifiers_pkey,
    -- Unique as before: a record is one (kind, key) of its organization.
    ADD CONSTRAINT subject_identifiers_pkey
        PRIMARY KEY (org_id, id_type, value, kind, ref_key) INCLUDE (subject_id);

CREATE OR REPLACE FUNCTION subject_identifiers_check_records() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
    others  bigint;
BEGIN
    SELECT count(*) FILTER (WHERE s.id IS NULL),
           count(*) FILTER (WHERE s.xmin <> pg_current_xact_id()::xid)
      INTO missing, others
      FROM (SELECT DISTINCT subject_id, kind, ref_key FROM new_rows) n
      LEFT JOIN subjects s ON s.id = n.subject_id AND s.kind = n.kind AND s.ref_key = n.ref_key;
    IF others > 0 THEN
        -- Records another transaction wrote: hold them until this one ends, then look again
        -- (one deleted meanwhile is gone once its lock is granted).
        PERFORM 1 FROM subjects s
          WHERE s.id IN (SELECT subject_id FROM new_rows)
            AND s.xmin <> pg_current_xact_id()::xid
            FOR KEY SHARE OF s;
        SELECT count(*) INTO missing
          FROM (SELECT DISTINCT subject_id, kind, ref_key FROM new_rows) n
         WHERE NOT EXISTS (SELECT 1 FROM subjects s
                            WHERE s.id = n.subject_id AND s.kind = n.kind
                              AND s.ref_key = n.ref_key);
    END IF;
    IF missing > 0 THEN
        RAISE EXCEPTION '% identifier row(s) refer to no index record of their kind and key',
            missing
            USING ERRCODE = 'foreign_key_violation', TABLE = 'subject_identifiers';
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER subject_identifiers_keep_record ON subject_identifiers;
CREATE TRIGGER subject_identifiers_keep_record BEFORE UPDATE ON subject_identifiers
    FOR EACH ROW WHEN (OLD.subject_id IS DISTINCT FROM NEW.subject_id
                       OR OLD.kind IS DISTINCT FROM NEW.kind
                       OR OLD.ref_key IS DISTINCT FROM NEW.ref_key)
    EXECUTE FUNCTION gdpr_refuse_key_change('subject_id, kind and ref_key');

DROP TRIGGER subjects_keep_keys ON subjects;
CREATE TRIGGER subjects_keep_keys BEFORE UPDATE ON subjects
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.org_id IS DISTINCT FROM NEW.org_id
                       OR OLD.kind IS DISTINCT FROM NEW.kind
                       OR OLD.ref_key IS DISTINCT FROM NEW.ref_key)
    EXECUTE FUNCTION gdpr_refuse_key_change('id, org_id, kind and ref_key');
