-- A request whose data services all keep their tables in gdprd's own database is queued as one
-- job, a unit (service `_unit`, action `unit`), instead of a job per service and a finalize job:
-- a worker claims it, runs every service and the finalization in one transaction, and in that
-- same transaction replaces the unit by the services' jobs as they completed. Each of those
-- rows is written once, where each used to be inserted queued, claimed, then completed, every
-- time with an entry in each of the table's indexes. Should that transaction fail, the unit
-- becomes the services' jobs and a finalize job, which then run, retry and fail one by one as
-- any others do.

-- A unit's service jobs, as `[[service, action], ...]`; NULL for every other job.
ALTER TABLE gdpr_jobs ADD COLUMN unit_jobs jsonb;

ALTER TABLE gdpr_jobs DROP CONSTRAINT gdpr_jobs_action_check;
ALTER TABLE gdpr_jobs ADD CONSTRAINT gdpr_jobs_action_check
    CHECK (action IN ('summarize', 'export', 'update', 'delete', 'anonymize', 'finalize', 'unit'));
ALTER TABLE gdpr_jobs ADD CONSTRAINT gdpr_jobs_unit_check
    CHECK ((action = 'unit') = (unit_jobs IS NOT NULL));
