-- The subject index's references are checked once per statement instead of once per row.
--
-- A foreign key checks (and locks) the referenced row for every row written: for a million-record
-- import, three million identifier rows and a million index records, that was half of the time.
-- The triggers below keep the same guarantees with one set-based check per statement:
--
-- * every identifier refers to an index record, and that record cannot be deleted before the
--   writing transaction ends (records the writing transaction inserted or updated itself are
--   already out of anyone else's reach; any other record is locked FOR KEY SHARE, as a foreign
--   key would lock it);
-- * deleting (or truncating) index records deletes their identifiers, so no identifier outlives
--   its record after an erasure;
-- * an index record belongs to an existing organization, which stays while it has records;
-- * neither an index record's id or organization nor an identifier's record can be changed.
--
-- Writers run at READ COMMITTED, as gdprd does: each statement of the triggers sees what other
-- transactions committed before it started.

ALTER TABLE subject_identifiers DROP CONSTRAINT subject_identifiers_subject_id_fkey;
ALTER TABLE subjects DROP CONSTRAINT subjects_org_id_fkey;

CREATE FUNCTION subject_identifiers_check_records() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
    others  bigint;
BEGIN
    SELECT count(*) FILTER (WHERE s.id IS NULL),
           count(*) FILTER (WHERE s.xmin <> pg_current_xact_id()::xid)
      INTO missing, others
      FROM (SELECT DISTINCT subject_id FROM new_rows) n
      LEFT JOIN subjects s ON s.id = n.subject_id;
    IF others > 0 THEN
        -- Records another transaction wrote: hold them until this one ends, then look again
        -- (one deleted meanwhile is gone once its lock is granted).
        PERFORM 1 FROM subjects s
          WHERE s.id IN (SELECT subject_id FROM new_rows)
            AND s.xmin <> pg_current_xact_id()::xid
            FOR KEY SHARE OF s;
        SELECT count(*) INTO missing
          FROM (SELECT DISTINCT subject_id FROM new_rows) n
         WHERE NOT EXISTS (SELECT 1 FROM subjects s WHERE s.id = n.subject_id);
    END IF;
    IF missing > 0 THEN
        RAISE EXCEPTION '% identifier row(s) refer to no index record', missing
            USING ERRCODE = 'foreign_key_violation', TABLE = 'subject_identifiers';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER subject_identifiers_records AFTER INSERT ON subject_identifiers
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION subject_identifiers_check_records();

CREATE FUNCTION gdpr_refuse_key_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%: % cannot be changed', TG_TABLE_NAME, TG_ARGV[0]
        USING ERRCODE = 'foreign_key_violation', TABLE = TG_TABLE_NAME;
END $$;

CREATE TRIGGER subject_identifiers_keep_record BEFORE UPDATE ON subject_identifiers
    FOR EACH ROW WHEN (OLD.subject_id IS DISTINCT FROM NEW.subject_id)
    EXECUTE FUNCTION gdpr_refuse_key_change('subject_id');

CREATE TRIGGER subjects_keep_keys BEFORE UPDATE ON subjects
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.org_id IS DISTINCT FROM NEW.org_id)
    EXECUTE FUNCTION gdpr_refuse_key_change('id and org_id');

CREATE FUNCTION subjects_check_organizations() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM organizations o
      WHERE o.id IN (SELECT org_id FROM new_rows)
        FOR KEY SHARE OF o;
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT org_id FROM new_rows) n
                WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = n.org_id)) THEN
        RAISE EXCEPTION 'index records refer to no organization'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'subjects';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER subjects_organizations AFTER INSERT ON subjects
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION subjects_check_organizations();

CREATE FUNCTION subjects_delete_identifiers() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM subject_identifiers i USING old_rows o WHERE i.subject_id = o.id;
    RETURN NULL;
END $$;

CREATE TRIGGER subjects_identifiers AFTER DELETE ON subjects
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION subjects_delete_identifiers();

-- DELETE rather than TRUNCATE: the two tables may be truncated by one statement.
CREATE FUNCTION subjects_truncate_identifiers() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM subject_identifiers;
    RETURN NULL;
END $$;

CREATE TRIGGER subjects_truncate AFTER TRUNCATE ON subjects
    FOR EACH STATEMENT EXECUTE FUNCTION subjects_truncate_identifiers();

CREATE FUNCTION organizations_keep_subjects() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM subjects s JOIN old_rows o ON s.org_id = o.id) THEN
        RAISE EXCEPTION 'an organization with index records cannot be deleted'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'organizations';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER organizations_subjects AFTER DELETE ON organizations
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION organizations_keep_subjects();
