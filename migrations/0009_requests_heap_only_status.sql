-- A request's status changes (INITIATED → SEARCHING → …) rewrote an entry in every index of the
-- table, the term hashes' GIN index among them: the in-flight index's predicate named `status`,
-- and a column an index names, even in its predicate, rules out a heap-only (HOT) update. The
-- predicate now names a stored column that changes only when the request finishes, and pages
-- keep room for the new row versions, so the changes before the last stay on the row's page.

ALTER TABLE gdpr_requests
    ADD COLUMN in_flight boolean NOT NULL
        GENERATED ALWAYS AS (status NOT IN ('COMPLETED', 'ERROR')) STORED;

DROP INDEX gdpr_requests_in_flight;
-- At most one request of a type for one subject in flight: concurrent duplicates collide here.
CREATE UNIQUE INDEX gdpr_requests_in_flight ON gdpr_requests (org_id, request_type, subject_hash)
    WHERE parent_id IS NULL AND in_flight;

ALTER TABLE gdpr_requests SET (fillfactor = 75);
