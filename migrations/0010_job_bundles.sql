-- A request whose data services all keep their tables in gdprd's own database is queued as one
-- job, a bundle (service `_bundle`, action `bundle`), instead of a job per service and a
-- finalize job: a worker claims it, runs every service and the finalization in one transaction,
-- and in that same transaction replaces the bundle by the services' jobs as they completed. Each
-- of those rows is written once, where each used to be inserted queued, claimed, then completed,
-- every time with an entry in each of the table's indexes. Should that transaction fail, the
-- bundle becomes the services' jobs and a finalize job, which then run, retry and fail one by one
-- as any others do. Workers older than this migration do not know bundles: upgrade them with it.

-- A bundle's service jobs, as `[[service, action], ...]`; NULL for every other job.
ALTER TABLE gdpr_jobs ADD COLUMN bundle_jobs jsonb;

-- Existing rows meet both checks by construction (no action is `bundle`, the new column is NULL
-- everywhere): NOT VALID spares a scan of the whole table under this migration's lock.
ALTER TABLE gdpr_jobs DROP CONSTRAINT gdpr_jobs_action_check;
ALTER TABLE gdpr_jobs ADD CONSTRAINT gdpr_jobs_action_check
    CHECK (action IN ('summarize', 'export', 'update', 'delete', 'anonymize', 'finalize', 'bundle'))
    NOT VALID;
ALTER TABLE gdpr_jobs ADD CONSTRAINT gdpr_jobs_bundle_check
    CHECK ((action = 'bundle') = (bundle_jobs IS NOT NULL)) NOT VALID;
