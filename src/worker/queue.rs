//! The job queue in PostgreSQL: claims with `FOR UPDATE SKIP LOCKED` and a lease (no
//! transaction is held open while a job works), capped exponential backoff, and the request
//! status derived from its jobs.

use std::time::Duration;

use rand::Rng;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use super::RequestWork;
use crate::catalog::Outcome;
use crate::requests::create::FINALIZE;
use crate::requests::model::Status;

/// A job this worker holds the lease of.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub request_id: Uuid,
    pub service: String,
    pub action: String,
    pub phase: String,
    pub attempts: i32,
    pub max_attempts: i32,
    /// Why the previous attempt did not finish, if it said.
    pub last_error: Option<String>,
    /// A bundle's service jobs, `(service, action)` (see
    /// [`BUNDLE`](crate::requests::create::BUNDLE)); `None` for any other job.
    pub bundle_jobs: Option<Json<Vec<(String, String)>>>,
    /// Its request's organization and terms.
    #[sqlx(flatten)]
    pub work: RequestWork,
}

/// Claims ready jobs for up to `limit` units of work: queued jobs whose time has come, and
/// running ones whose lease has expired (their worker died), each expired job a unit of its own.
/// The queued jobs of one request whose service is among `together` (the services of tables in
/// gdprd's own database) form one unit: the worker runs them in one transaction. Up to `bundles`
/// queued bundles ([`BUNDLE`](crate::requests::create::BUNDLE)) of different requests form one
/// unit too, which the worker also runs in one transaction (see `Worker::tasks`). Every other
/// queued job is a unit of its own.
///
/// Each kind is read through its own partial index in `run_at` or lease order, so that a scan
/// stops after the first rows it needs and marks the index entries of finished jobs dead as it
/// passes them (one bitmap scan over both indexes, as before, re-read every job finished since
/// the last vacuum: 0.54 ms a claim under load). Among the oldest ready jobs, those of different
/// requests go first: jobs of one request all update that request's row as they finish, and
/// several of them at once only wait for one another. So the jobs of `busy` requests (those the
/// worker is running jobs of) come last, then the first queued job (or jobs run together) of
/// each request, then the second, and so on; they are taken in that order while they fit in
/// `limit` units. The chosen jobs are then locked by their row address, and taken if still
/// queued once locked (another worker may have taken one in between: its row has moved, or it
/// is no longer queued). What the jobs need of their requests comes back with them, and a
/// request of which no job had started is now `SEARCHING` (a unit's work commits at once, so
/// this is the status shown while it runs).
pub async fn claim(
    conn: &mut PgConnection,
    worker: &str,
    lease: Duration,
    limit: i64,
    busy: &[Uuid],
    together: &[String],
    bundles: i64,
) -> sqlx::Result<Vec<Claimed>> {
    sqlx::query_as(
        "WITH expired AS (
                SELECT id FROM gdpr_jobs
                 WHERE status = 'running' AND locked_until < now()
                 ORDER BY locked_until
                 LIMIT $3
                   FOR UPDATE SKIP LOCKED),
              ready AS (
                SELECT ctid, request_id, run_at, bundle_jobs IS NOT NULL AS bundle,
                       CASE WHEN service = ANY ($5) THEN request_id ELSE id END AS unit
                  FROM gdpr_jobs
                 WHERE status = 'queued' AND run_at <= now()
                 ORDER BY run_at
                 LIMIT $3 * greatest(8, $6)),
              units AS (
                SELECT unit, request_id, min(run_at) AS run_at, bool_and(bundle) AS bundle,
                       row_number() OVER (PARTITION BY request_id
                                          ORDER BY min(run_at), unit) AS nth
                  FROM ready
                 GROUP BY unit, request_id),
              ranked AS (
                SELECT unit,
                       count(*) FILTER (WHERE NOT bundle) OVER w AS alone,
                       count(*) FILTER (WHERE bundle) OVER w AS bundles
                  FROM units
                WINDOW w AS (ORDER BY request_id = ANY ($4), nth, run_at, unit
                             ROWS UNBOUNDED PRECEDING)),
              chosen AS (
                SELECT unit FROM ranked
                 WHERE alone + ceil(bundles::numeric / greatest($6, 1))
                       <= $3 - (SELECT count(*) FROM expired)),
              taken AS (
                SELECT id, status FROM gdpr_jobs
                 WHERE ctid = ANY (ARRAY(SELECT ctid FROM ready
                                          WHERE unit IN (SELECT unit FROM chosen)))
                   FOR UPDATE SKIP LOCKED),
              claimed AS (
                UPDATE gdpr_jobs j
                   SET status = 'running', attempts = j.attempts + 1, locked_by = $1,
                       locked_until = now() + make_interval(secs => $2)
                  FROM gdpr_requests r
                 WHERE j.id IN (SELECT id FROM expired
                                UNION ALL SELECT id FROM taken WHERE status = 'queued')
                   AND r.id = j.request_id
             RETURNING j.id, j.request_id, j.service, j.action, j.phase, j.attempts,
                       j.max_attempts, j.last_error, j.bundle_jobs, r.org_id, r.request_type,
                       r.terms, r.replacement_terms),
              started AS (
                UPDATE gdpr_requests SET status = 'SEARCHING', updated_at = now()
                 WHERE id IN (SELECT request_id FROM claimed) AND status = 'INITIATED')
        SELECT * FROM claimed",
    )
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(limit)
    .bind(busy)
    .bind(together)
    .bind(bundles)
    .fetch_all(conn)
    .await
}

/// The delay before attempt `attempts + 1`: doubling from `base`, capped at `max`, with ±20 %
/// jitter so that failing jobs do not retry in lockstep.
pub fn backoff(attempts: i32, base: Duration, max: Duration) -> Duration {
    let exponent = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let delay = base.saturating_mul(2u32.saturating_pow(exponent)).min(max);
    let jitter = rand::rng().random_range(0.8..1.2);
    delay.mul_f64(jitter).min(max)
}

/// Records a failed attempt: the job is queued again after its backoff, or fails for good when
/// it has used its attempts or the failure is `permanent` (another attempt would fail the same
/// way). Returns whether it failed for good. Does nothing when the lease was lost to another
/// worker. `holder` is the worker holding the job, or `None` for an HTTP service's callback,
/// which settles the job whoever holds it (see [`complete`]).
pub async fn fail(
    conn: &mut PgConnection,
    job_id: Uuid,
    holder: Option<&str>,
    error: &str,
    delay: Duration,
    permanent: bool,
) -> sqlx::Result<bool> {
    let status: Option<String> = sqlx::query_scalar(
        "UPDATE gdpr_jobs
            SET status = CASE WHEN $5 OR attempts >= max_attempts THEN 'error' ELSE 'queued' END,
                run_at = now() + make_interval(secs => $3),
                last_error = $4, locked_by = NULL, locked_until = NULL,
                completed_at = CASE WHEN $5 OR attempts >= max_attempts THEN now() END
          WHERE id = $1
            AND (($2::text IS NULL AND status IN ('running', 'queued'))
                 OR (locked_by = $2 AND status = 'running'))
      RETURNING status",
    )
    .bind(job_id)
    .bind(holder)
    .bind(delay.as_secs_f64())
    .bind(error)
    .bind(permanent)
    .fetch_optional(conn)
    .await?;
    Ok(status.as_deref() == Some("error"))
}

/// Records that a service job found `matched` rows and moves it on to acting. Returns whether
/// `holder` still held the job.
pub async fn searched(
    conn: &mut PgConnection,
    job_id: Uuid,
    holder: &str,
    matched: i64,
) -> sqlx::Result<bool> {
    let held = sqlx::query(
        "UPDATE gdpr_jobs SET phase = 'act', matched = $3
          WHERE id = $1 AND locked_by = $2 AND status = 'running'",
    )
    .bind(job_id)
    .bind(holder)
    .bind(matched)
    .execute(conn)
    .await?;
    Ok(held.rows_affected() > 0)
}

/// Completes a service job with what it did. Returns whether `holder` still held the job (when
/// not, another worker took it over after the lease ran out, and its run counts).
///
/// `holder: None` is an HTTP service's callback: it settles any job not yet done, whoever holds
/// it — a fast service may call back before the worker that sent the job has recorded the
/// `202`, and a late result is still the result (the worker's own bookkeeping then finds the
/// job no longer held and does nothing).
pub async fn complete(
    conn: &mut PgConnection,
    job_id: Uuid,
    holder: Option<&str>,
    outcome: &Outcome,
) -> sqlx::Result<bool> {
    let done = complete_all(conn, holder, &[(job_id, outcome)]).await?;
    Ok(!done.is_empty())
}

/// Completes several service jobs at once (see [`complete`]): one statement. Returns the jobs
/// `holder` still held, which are the ones completed.
pub async fn complete_all(
    conn: &mut PgConnection,
    holder: Option<&str>,
    jobs: &[(Uuid, &Outcome)],
) -> sqlx::Result<Vec<Uuid>> {
    let column = |f: fn(&Outcome) -> i64| jobs.iter().map(|(_, o)| f(o)).collect::<Vec<i64>>();
    let ids: Vec<Uuid> = jobs.iter().map(|(id, _)| *id).collect();
    let reasons: Vec<Option<&str>> = jobs
        .iter()
        .map(|(_, o)| o.retained_reason.as_deref())
        .collect();
    let results: Vec<Option<sqlx::types::Json<&serde_json::value::RawValue>>> = jobs
        .iter()
        .map(|(_, o)| o.export.as_deref().map(sqlx::types::Json))
        .collect();
    sqlx::query_scalar(
        "UPDATE gdpr_jobs j
            SET status = 'completed', phase = 'act', matched = o.matched, deleted = o.deleted,
                anonymized = o.anonymized, updated = o.updated, retained = o.retained,
                retained_reason = o.retained_reason, result = o.result, last_error = NULL,
                locked_by = NULL, locked_until = NULL, completed_at = now()
           FROM unnest($2::uuid[], $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[],
                       $8::text[], $9::jsonb[])
                AS o(id, matched, deleted, anonymized, updated, retained, retained_reason, result)
          WHERE j.id = o.id
            AND (($1::text IS NULL AND j.status IN ('running', 'queued'))
                 OR (j.locked_by = $1 AND j.status = 'running'))
      RETURNING j.id",
    )
    .bind(holder)
    .bind(&ids)
    .bind(column(|o| o.matched))
    .bind(column(|o| o.deleted))
    .bind(column(|o| o.anonymized))
    .bind(column(|o| o.updated))
    .bind(column(|o| o.retained))
    .bind(&reasons)
    .bind(&results)
    .fetch_all(conn)
    .await
}

/// Completes a bundle `holder` holds with what its service jobs did, in one statement: the bundle's
/// row goes and each of `jobs` (built by [`bundle_jobs`]) becomes a row of its own, completed, with
/// the bundle's attempts. Returns whether `holder` still held the bundle (when not, another worker
/// took it over after the lease ran out, and nothing may be written: the caller rolls back).
pub async fn complete_bundle(
    conn: &mut PgConnection,
    bundle: &Claimed,
    holder: &str,
    jobs: &[(&Claimed, &Outcome)],
) -> sqlx::Result<bool> {
    /// A completed job's row, as the statement reads it.
    #[derive(serde::Serialize)]
    struct Row<'a> {
        id: Uuid,
        service: &'a str,
        action: &'a str,
        #[serde(flatten)]
        outcome: &'a Outcome,
    }
    let rows: Vec<Row<'_>> = jobs
        .iter()
        .map(|(job, outcome)| Row {
            id: job.id,
            service: &job.service,
            action: &job.action,
            outcome,
        })
        .collect();
    sqlx::query_scalar(
        "WITH held AS (
           DELETE FROM gdpr_jobs WHERE id = $1 AND locked_by = $2 AND status = 'running'
        RETURNING request_id, attempts, max_attempts, created_at),
              completed AS (
           INSERT INTO gdpr_jobs (id, request_id, service, action, status, phase, attempts,
                                  max_attempts, matched, deleted, anonymized, updated, retained,
                                  retained_reason, result, created_at, completed_at)
           SELECT o.id, h.request_id, o.service, o.action, 'completed', 'act', h.attempts,
                  h.max_attempts, o.matched, o.deleted, o.anonymized, o.updated, o.retained,
                  o.retained_reason, o.export, h.created_at, now()
             FROM held h,
                  jsonb_to_recordset($3) AS o(id uuid, service text, action text, matched int8,
                                              deleted int8, anonymized int8, updated int8,
                                              retained int8, retained_reason text, export jsonb))
         SELECT EXISTS (SELECT FROM held)",
    )
    .bind(bundle.id)
    .bind(holder)
    .bind(Json(&rows))
    .fetch_one(conn)
    .await
}

/// Renews the lease of the jobs `holder` still holds among `ids`, for `lease` from now: a unit
/// that runs its jobs a second time (bundles run together whose transaction failed, each then run
/// alone) has a whole lease for it. Returns how many it still held.
pub async fn renew_leases(
    conn: &mut PgConnection,
    ids: &[Uuid],
    holder: &str,
    lease: Duration,
) -> sqlx::Result<u64> {
    let renewed = sqlx::query(
        "UPDATE gdpr_jobs SET locked_until = now() + make_interval(secs => $3)
          WHERE id = ANY($1) AND locked_by = $2 AND status = 'running'",
    )
    .bind(ids)
    .bind(holder)
    .bind(lease.as_secs_f64())
    .execute(conn)
    .await?;
    Ok(renewed.rows_affected())
}

/// A bundle's service jobs as jobs of their own, each with the id its row will have, the bundle's
/// attempts and lease, and its request's work.
pub fn bundle_jobs(bundle: &Claimed) -> Vec<Claimed> {
    let planned = bundle
        .bundle_jobs
        .as_ref()
        .map(|j| j.0.as_slice())
        .unwrap_or_default();
    let mut jobs: Vec<Claimed> = planned
        .iter()
        .map(|(service, action)| Claimed {
            id: Uuid::now_v7(),
            service: service.clone(),
            action: action.clone(),
            phase: "search".to_owned(),
            bundle_jobs: None,
            ..bundle.clone()
        })
        .collect();
    // In the order of any claimed jobs run together (see `Worker::units`), so that runs touching
    // the same rows take their locks in the same order.
    jobs.sort_by(|a, b| a.service.cmp(&b.service));
    jobs
}

/// Turns a bundle `holder` holds into its service jobs and a finalize job waiting for them, in one
/// statement. With `lease`, the service jobs are held by `holder` for that long from now, with
/// the bundle's attempts, so that the caller runs them at once as a claim would have given them;
/// without, they are queued for any worker (the bundle's attempt not counted twice), and the
/// workers are woken. Returns the service jobs, or `None` when `holder` no longer held the
/// bundle.
pub async fn expand_bundle(
    conn: &mut PgConnection,
    bundle: &Claimed,
    holder: &str,
    lease: Option<Duration>,
) -> sqlx::Result<Option<Vec<Claimed>>> {
    let jobs = bundle_jobs(bundle);
    let mut ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let mut services: Vec<&str> = jobs.iter().map(|j| j.service.as_str()).collect();
    let mut actions: Vec<&str> = jobs.iter().map(|j| j.action.as_str()).collect();
    ids.push(Uuid::now_v7());
    services.push(FINALIZE);
    actions.push("finalize");
    let held: bool = sqlx::query_scalar(
        "WITH held AS (
           DELETE FROM gdpr_jobs WHERE id = $1 AND locked_by = $2 AND status = 'running'
        RETURNING request_id, attempts, max_attempts, last_error, created_at),
              expanded AS (
           INSERT INTO gdpr_jobs (id, request_id, service, action, status, attempts,
                                  max_attempts, locked_by, locked_until, last_error, created_at)
           SELECT o.id, h.request_id, o.service, o.action,
                  CASE WHEN o.service = $6 THEN 'waiting'
                       WHEN $7::float8 IS NULL THEN 'queued' ELSE 'running' END,
                  CASE WHEN o.service = $6 THEN 0
                       WHEN $7::float8 IS NULL THEN h.attempts - 1 ELSE h.attempts END,
                  h.max_attempts,
                  CASE WHEN o.service <> $6 AND $7::float8 IS NOT NULL THEN $2 END,
                  CASE WHEN o.service <> $6 THEN now() + make_interval(secs => $7::float8) END,
                  CASE WHEN o.service <> $6 THEN h.last_error END, h.created_at
             FROM held h, unnest($3::uuid[], $4::text[], $5::text[]) AS o(id, service, action)),
              woken AS (
           SELECT pg_notify('gdpr_jobs', '') FROM held WHERE $7::float8 IS NULL)
         SELECT EXISTS (SELECT FROM held), (SELECT count(*) FROM woken)",
    )
    .bind(bundle.id)
    .bind(holder)
    .bind(&ids)
    .bind(&services)
    .bind(&actions)
    .bind(FINALIZE)
    .bind(lease.map(|l| l.as_secs_f64()))
    .fetch_one(conn)
    .await?;
    Ok(held.then_some(jobs))
}

/// The holder of a job that an HTTP data service accepted (202) and will answer by callback.
pub const AWAITING_CALLBACK: &str = "callback";

/// Parks a job until its HTTP service calls back: the lease becomes the callback deadline, after
/// which the job is claimed and sent again like any job whose worker went away.
pub async fn await_callback(
    conn: &mut PgConnection,
    job_id: Uuid,
    holder: &str,
    deadline: Duration,
) -> sqlx::Result<bool> {
    let held = sqlx::query(
        "UPDATE gdpr_jobs
            SET phase = 'act', locked_by = $3, locked_until = now() + make_interval(secs => $4),
                last_error = 'the service accepted the job; no callback came within '
                             || $4::bigint || ' s'
          WHERE id = $1 AND locked_by = $2 AND status = 'running'",
    )
    .bind(job_id)
    .bind(holder)
    .bind(AWAITING_CALLBACK)
    .bind(deadline.as_secs() as i64)
    .execute(conn)
    .await?;
    Ok(held.rows_affected() > 0)
}

/// After a service job reached a terminal state: when it was the request's last one, the
/// finalize job becomes ready. The request row is locked so that two workers finishing the last
/// two jobs at once cannot both miss it.
///
/// After the lock (which reads the request's status), one statement releases the finalize job
/// (waking the workers) and reads the request's jobs, the released one as queued (a statement
/// does not see its own changes); the request is written only when its status changes.
/// Returns whether the finalize job is now ready.
pub async fn after_service_job(conn: &mut PgConnection, request_id: Uuid) -> sqlx::Result<bool> {
    let current = lock_request(conn, request_id).await?;
    let jobs: Vec<JobState> = sqlx::query_as(
        "WITH released AS (
            UPDATE gdpr_jobs SET status = 'queued', run_at = now()
             WHERE request_id = $1 AND service = $2 AND status = 'waiting'
               AND NOT EXISTS (SELECT 1 FROM gdpr_jobs
                                WHERE request_id = $1 AND service <> $2
                                  AND status NOT IN ('completed', 'error'))
         RETURNING id, pg_notify('gdpr_jobs', '') AS woken)
         SELECT j.service, j.action,
                CASE WHEN r.id IS NULL THEN j.status ELSE 'queued' END AS status,
                j.phase, j.attempts
           FROM gdpr_jobs j LEFT JOIN released r ON r.id = j.id
          WHERE j.request_id = $1",
    )
    .bind(request_id)
    .bind(FINALIZE)
    .fetch_all(&mut *conn)
    .await?;
    let ready = jobs
        .iter()
        .any(|j| j.service == FINALIZE && j.status == "queued");
    // The row is locked: its status is the one to compare with.
    if derive(&jobs).as_str() != current {
        set_status(conn, request_id, &jobs).await?;
    }
    Ok(ready)
}

/// Locks a request's row; returns its status.
async fn lock_request(conn: &mut PgConnection, request_id: Uuid) -> sqlx::Result<String> {
    sqlx::query_scalar("SELECT status FROM gdpr_requests WHERE id = $1 FOR UPDATE")
        .bind(request_id)
        .fetch_one(conn)
        .await
}

/// [`after_service_job`] for a worker that finalizes the request in the transaction that
/// finished its service jobs (and that rolls back whole if the finalization fails): when they
/// were the request's last, the finalize job goes straight from waiting to `worker` (no other
/// worker could take it before this transaction commits) and the request's status is left to
/// the finalization, which writes the final one: no `FINALIZING` that nobody could see, no
/// wake-up for other workers. Otherwise the request's status follows its jobs, as
/// [`after_service_job`] has it.
pub async fn take_finalize_after(
    conn: &mut PgConnection,
    request_id: Uuid,
    worker: &str,
    lease: Duration,
) -> sqlx::Result<Option<Claimed>> {
    let current = lock_request(conn, request_id).await?;
    let taken = take_finalize(conn, request_id, worker, lease).await?;
    if taken.is_none() {
        let jobs = job_states(conn, request_id).await?;
        if derive(&jobs).as_str() != current {
            set_status(conn, request_id, &jobs).await?;
        }
    }
    Ok(taken)
}

/// Takes the finalize job of a request for `worker`, as a claim would: the one that
/// [`after_service_job`] made ready, or one still waiting whose service jobs are all done (see
/// [`take_finalize_after`]); `None` when it is not ready or another worker has it.
pub async fn take_finalize(
    conn: &mut PgConnection,
    request_id: Uuid,
    worker: &str,
    lease: Duration,
) -> sqlx::Result<Option<Claimed>> {
    sqlx::query_as(
        "UPDATE gdpr_jobs j
            SET status = 'running', attempts = j.attempts + 1, locked_by = $3,
                locked_until = now() + make_interval(secs => $4)
           FROM gdpr_requests r
          WHERE j.request_id = $1 AND j.service = $2 AND r.id = j.request_id
            AND (j.status = 'queued'
                 OR (j.status = 'waiting'
                     AND NOT EXISTS (SELECT 1 FROM gdpr_jobs o
                                      WHERE o.request_id = $1 AND o.service <> $2
                                        AND o.status NOT IN ('completed', 'error'))))
      RETURNING j.id, j.request_id, j.service, j.action, j.phase, j.attempts, j.max_attempts,
                j.last_error, j.bundle_jobs, r.org_id, r.request_type, r.terms, r.replacement_terms",
    )
    .bind(request_id)
    .bind(FINALIZE)
    .bind(worker)
    .bind(lease.as_secs_f64())
    .fetch_optional(conn)
    .await
}

#[derive(sqlx::FromRow)]
struct JobState {
    service: String,
    action: String,
    status: String,
    phase: String,
    attempts: i32,
}

/// Sets a request's status from its jobs (never once it is terminal), then its parent's from
/// its siblings.
pub async fn refresh_status(conn: &mut PgConnection, request_id: Uuid) -> sqlx::Result<()> {
    let jobs = job_states(conn, request_id).await?;
    set_status(conn, request_id, &jobs).await
}

/// A request's jobs as they are now.
async fn job_states(conn: &mut PgConnection, request_id: Uuid) -> sqlx::Result<Vec<JobState>> {
    sqlx::query_as(
        "SELECT service, action, status, phase, attempts FROM gdpr_jobs WHERE request_id = $1",
    )
    .bind(request_id)
    .fetch_all(conn)
    .await
}

/// Sets a request's status from `jobs`, its jobs as they are now (see [`refresh_status`]).
async fn set_status(
    conn: &mut PgConnection,
    request_id: Uuid,
    jobs: &[JobState],
) -> sqlx::Result<()> {
    write_status(conn, request_id, derive(jobs)).await
}

/// Marks a request `FINALIZING` as its finalize job starts: what [`refresh_status`] would
/// derive from its jobs while that job runs, without reading them.
pub async fn mark_finalizing(conn: &mut PgConnection, request_id: Uuid) -> sqlx::Result<()> {
    write_status(conn, request_id, Status::Finalizing).await
}

/// Writes a request's status (never once it is terminal, and only when it changes), then its
/// parent's from its siblings.
async fn write_status(
    conn: &mut PgConnection,
    request_id: Uuid,
    status: Status,
) -> sqlx::Result<()> {
    let parent: Option<Option<Uuid>> = sqlx::query_scalar(
        "UPDATE gdpr_requests SET status = $2, updated_at = now()
          WHERE id = $1 AND status NOT IN ('COMPLETED', 'ERROR') AND status <> $2
      RETURNING parent_id",
    )
    .bind(request_id)
    .bind(status.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(Some(parent)) = parent {
        refresh_parent(conn, parent).await?;
    }
    Ok(())
}

fn derive(jobs: &[JobState]) -> Status {
    let service_jobs = jobs.iter().filter(|j| j.service != FINALIZE);
    let finalizing = jobs
        .iter()
        .any(|j| j.service == FINALIZE && matches!(j.status.as_str(), "queued" | "running"));
    if finalizing {
        return Status::Finalizing;
    }
    let mut status = Status::Initiated;
    for job in service_jobs {
        let acting = job.phase == "act" || job.status == "completed";
        let step = match job.action.as_str() {
            "delete" | "anonymize" if acting => Status::Deleting,
            "update" if acting => Status::Updating,
            _ if job.attempts > 0 => Status::Searching,
            _ => Status::Initiated,
        };
        if rank(step) > rank(status) {
            status = step;
        }
    }
    status
}

fn rank(s: Status) -> u8 {
    match s {
        Status::Initiated => 0,
        Status::Searching => 1,
        Status::Updating | Status::Deleting => 2,
        Status::Finalizing => 3,
        Status::Completed | Status::Error => 4,
    }
}

/// A merge-set parent follows its related requests: done when they all are (in ERROR when any
/// is), otherwise at the stage of the least advanced one.
///
/// The parent row is locked first, and its related requests read by a statement of their own
/// after the lock is granted: of two related requests finishing at once, the second then sees
/// the first's commit, instead of each seeing the other still open and neither finishing the
/// parent.
pub async fn refresh_parent(conn: &mut PgConnection, parent_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("SELECT 1 FROM gdpr_requests WHERE id = $1 FOR UPDATE")
        .bind(parent_id)
        .execute(&mut *conn)
        .await?;
    let children: Vec<String> =
        sqlx::query_scalar("SELECT status FROM gdpr_requests WHERE parent_id = $1")
            .bind(parent_id)
            .fetch_all(&mut *conn)
            .await?;
    let statuses: Vec<Status> = children.iter().filter_map(|s| Status::parse(s)).collect();
    let open: Vec<Status> = statuses
        .iter()
        .copied()
        .filter(|s| !s.is_terminal())
        .collect();
    if open.is_empty() {
        let failed = statuses.iter().filter(|s| **s == Status::Error).count();
        let (status, error) = if failed > 0 {
            (
                Status::Error,
                Some(serde_json::json!({
                    "code": "related.request.failed",
                    "message": format!("{failed} of {} related requests failed; see relatedRequests for which and why.", statuses.len()),
                })),
            )
        } else {
            (Status::Completed, None)
        };
        sqlx::query(
            "UPDATE gdpr_requests SET status = $2, error = $3, completed_at = now(), updated_at = now()
              WHERE id = $1 AND status NOT IN ('COMPLETED', 'ERROR')",
        )
        .bind(parent_id)
        .bind(status.as_str())
        .bind(error)
        .execute(conn)
        .await?;
        return Ok(());
    }
    let least = open
        .into_iter()
        .min_by_key(|s| rank(*s))
        .unwrap_or(Status::Initiated);
    sqlx::query(
        "UPDATE gdpr_requests SET status = $2, updated_at = now()
          WHERE id = $1 AND status NOT IN ('COMPLETED', 'ERROR') AND status <> $2",
    )
    .bind(parent_id)
    .bind(least.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::PgPool;

    use super::*;

    /// Three requests of three queued jobs each (in that order), and one request whose two
    /// jobs' worker died (leases expired).
    const QUEUE: &str = "
        INSERT INTO organizations (id, name) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Org');
        INSERT INTO api_clients (id, org_id, name, secret_hash, permissions)
        VALUES ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000a1',
                'c', '\\x00', '{}');
        INSERT INTO gdpr_requests (id, org_id, client_id, request_type, subject, terms,
                                   term_hashes, subject_hash, status, created_at, due_date)
        SELECT ('00000000-0000-0000-0000-00000000000' || r)::uuid,
               '00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-0000000000c1',
               'GDPR_GET', '{}', '[]', '{}', ('\\x0' || r)::bytea, 'INITIATED', now(), now()
          FROM generate_series(1, 4) r;
        INSERT INTO gdpr_jobs (id, request_id, service, action, status, max_attempts, run_at)
        SELECT gen_random_uuid(), ('00000000-0000-0000-0000-00000000000' || r)::uuid,
               's' || s, 'summarize', 'queued', 5, now() - make_interval(secs => 100 - r)
          FROM generate_series(1, 3) r, generate_series(1, 3) s;
        INSERT INTO gdpr_jobs (id, request_id, service, action, status, max_attempts, run_at,
                               attempts, locked_by, locked_until)
        SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000004', 's' || s,
               'summarize', 'running', 5, now() - interval '1 hour', 1, 'gone',
               now() - interval '1 second'
          FROM generate_series(1, 2) s;";

    fn request(n: u8) -> Uuid {
        format!("00000000-0000-0000-0000-00000000000{n}")
            .parse()
            .unwrap()
    }

    async fn claim_some(pool: &PgPool, limit: i64, busy: &[Uuid]) -> Vec<Claimed> {
        claim_units(pool, limit, busy, &[]).await
    }

    async fn claim_units(
        pool: &PgPool,
        limit: i64,
        busy: &[Uuid],
        together: &[&str],
    ) -> Vec<Claimed> {
        claim_with(pool, limit, busy, together, 1).await
    }

    async fn claim_with(
        pool: &PgPool,
        limit: i64,
        busy: &[Uuid],
        together: &[&str],
        bundles: i64,
    ) -> Vec<Claimed> {
        let mut conn = pool.acquire().await.unwrap();
        let together: Vec<String> = together.iter().map(|s| (*s).to_owned()).collect();
        claim(
            &mut conn,
            "w",
            Duration::from_secs(60),
            limit,
            busy,
            &together,
            bundles,
        )
        .await
        .unwrap()
    }

    #[sqlx::test]
    async fn a_claim_takes_expired_leases_first_and_never_more_than_its_limit(pool: PgPool) {
        sqlx::raw_sql(QUEUE).execute(&pool).await.unwrap();
        let first = claim_some(&pool, 3, &[]).await;
        assert_eq!(first.len(), 3, "a claim fills its limit");
        let expired = first.iter().filter(|j| j.request_id == request(4)).count();
        assert_eq!(expired, 2, "jobs whose worker died come back first");
        assert!(
            first
                .iter()
                .all(|j| j.attempts == if j.request_id == request(4) { 2 } else { 1 })
        );

        let mut seen: Vec<Uuid> = first.iter().map(|j| j.id).collect();
        loop {
            let next = claim_some(&pool, 4, &[]).await;
            if next.is_empty() {
                break;
            }
            assert!(next.len() <= 4, "a claim takes at most its limit");
            seen.extend(next.iter().map(|j| j.id));
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 11, "every job is claimed once");
    }

    #[sqlx::test]
    async fn a_claim_spreads_over_requests_and_keeps_busy_ones_for_last(pool: PgPool) {
        sqlx::raw_sql(QUEUE).execute(&pool).await.unwrap();
        sqlx::query("DELETE FROM gdpr_jobs WHERE status = 'running'")
            .execute(&pool)
            .await
            .unwrap();
        let requests = |jobs: &[Claimed]| {
            let mut r: Vec<Uuid> = jobs.iter().map(|j| j.request_id).collect();
            r.sort();
            r
        };
        // The oldest request's jobs do not all go first: one of each request does.
        let first = claim_some(&pool, 3, &[]).await;
        assert_eq!(requests(&first), [request(1), request(2), request(3)]);
        // Requests 1 and 2 are busy: request 3's jobs go first, then the oldest busy one's.
        let second = claim_some(&pool, 3, &[request(1), request(2)]).await;
        assert_eq!(requests(&second), [request(1), request(3), request(3)]);
        // Being busy puts a request last, never out: the rest all go, two of one request at
        // once.
        let third = claim_some(&pool, 5, &[request(1)]).await;
        assert_eq!(requests(&third), [request(1), request(2), request(2)]);
        assert!(claim_some(&pool, 5, &[]).await.is_empty());
    }

    #[sqlx::test]
    async fn a_claim_takes_a_requests_jobs_of_services_run_together_as_one_unit(pool: PgPool) {
        sqlx::raw_sql(QUEUE).execute(&pool).await.unwrap();
        let requests = |jobs: &[Claimed]| {
            let mut r: Vec<(Uuid, String)> = jobs
                .iter()
                .map(|j| (j.request_id, j.service.clone()))
                .collect();
            r.sort();
            r
        };
        let all = |n: u8, services: &[&str]| -> Vec<(Uuid, String)> {
            services
                .iter()
                .map(|s| (request(n), (*s).to_owned()))
                .collect()
        };
        // The two expired jobs are two units; the third is request 1's s1 and s2 together.
        // Its s3 runs apart.
        let first = claim_units(&pool, 3, &[], &["s1", "s2"]).await;
        let mut expected = all(1, &["s1", "s2"]);
        expected.extend(all(4, &["s1", "s2"]));
        assert_eq!(requests(&first), expected);
        // Request 1 is busy: its s3 goes last, after the units of requests 2 and 3.
        let second = claim_units(&pool, 2, &[request(1)], &["s1", "s2"]).await;
        let mut expected = all(2, &["s1", "s2"]);
        expected.extend(all(3, &["s1", "s2"]));
        assert_eq!(requests(&second), expected);
        // The rest, one unit each.
        let rest = claim_units(&pool, 5, &[], &["s1", "s2"]).await;
        let mut expected = all(1, &["s3"]);
        expected.extend(all(2, &["s3"]));
        expected.extend(all(3, &["s3"]));
        assert_eq!(requests(&rest), expected);
        assert!(claim_units(&pool, 5, &[], &["s1", "s2"]).await.is_empty());
    }

    /// Bundles of requests 1, 2 and 3 of [`QUEUE`]'s organization, queued in that order, then a
    /// job of request 4, and no other job.
    const BUNDLES: &str = "
        DELETE FROM gdpr_jobs;
        INSERT INTO gdpr_jobs (id, request_id, service, action, status, max_attempts, run_at,
                               bundle_jobs)
        SELECT gen_random_uuid(), ('00000000-0000-0000-0000-00000000000' || r)::uuid, '_bundle',
               'bundle', 'queued', 5, now() - make_interval(secs => 100 - r),
               '[[\"s1\", \"summarize\"]]'
          FROM generate_series(1, 3) r;
        INSERT INTO gdpr_jobs (id, request_id, service, action, status, max_attempts, run_at)
        VALUES (gen_random_uuid(), '00000000-0000-0000-0000-000000000004', 's1', 'summarize',
                'queued', 5, now() - interval '10 seconds');";

    #[sqlx::test]
    async fn a_claim_counts_bundles_several_to_a_unit_of_work(pool: PgPool) {
        sqlx::raw_sql(QUEUE).execute(&pool).await.unwrap();
        let requests = |jobs: &[Claimed]| {
            let mut r: Vec<(Uuid, bool)> = jobs
                .iter()
                .map(|j| (j.request_id, j.bundle_jobs.is_some()))
                .collect();
            r.sort();
            r
        };
        let bundle = |n: u8| (request(n), true);

        // A bundle to a unit: two units are the two oldest bundles.
        sqlx::raw_sql(BUNDLES).execute(&pool).await.unwrap();
        let claimed = claim_with(&pool, 2, &[], &[], 1).await;
        assert_eq!(requests(&claimed), [bundle(1), bundle(2)]);

        // Three to a unit: the three bundles are one unit, the job of request 4 the other.
        sqlx::raw_sql(BUNDLES).execute(&pool).await.unwrap();
        let claimed = claim_with(&pool, 2, &[], &[], 3).await;
        assert_eq!(
            requests(&claimed),
            [bundle(1), bundle(2), bundle(3), (request(4), false)]
        );

        // Two to a unit, one unit at a time: never more than fits, in their order.
        sqlx::raw_sql(BUNDLES).execute(&pool).await.unwrap();
        let first = claim_with(&pool, 1, &[], &[], 2).await;
        assert_eq!(requests(&first), [bundle(1), bundle(2)]);
        let second = claim_with(&pool, 1, &[], &[], 2).await;
        assert_eq!(requests(&second), [bundle(3)]);
        let third = claim_with(&pool, 1, &[], &[], 2).await;
        assert_eq!(requests(&third), [(request(4), false)]);
        assert!(claim_with(&pool, 1, &[], &[], 2).await.is_empty());
    }

    #[sqlx::test]
    async fn a_lease_is_renewed_only_for_its_holder(pool: PgPool) {
        sqlx::raw_sql(QUEUE).execute(&pool).await.unwrap();
        sqlx::raw_sql(BUNDLES).execute(&pool).await.unwrap();
        let claimed = claim_with(&pool, 1, &[], &[], 3).await;
        let ids: Vec<Uuid> = claimed.iter().map(|j| j.id).collect();
        assert_eq!(ids.len(), 3);
        let until = || async {
            let until: Vec<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
                "SELECT locked_until FROM gdpr_jobs WHERE id = ANY($1) ORDER BY id",
            )
            .bind(&ids)
            .fetch_all(&pool)
            .await
            .unwrap();
            until
        };
        let before = until().await;
        let mut conn = pool.acquire().await.unwrap();
        let long = Duration::from_secs(600);

        assert_eq!(
            renew_leases(&mut conn, &ids, "other", long).await.unwrap(),
            0
        );
        assert_eq!(until().await, before, "another worker renews nothing");

        assert_eq!(renew_leases(&mut conn, &ids, "w", long).await.unwrap(), 3);
        let after = until().await;
        let in_ten_minutes = chrono::Utc::now() + chrono::Duration::seconds(590);
        assert!(after.iter().all(|u| *u > in_ten_minutes), "{after:?}");
        // The job of request 4 was not claimed: it has no lease to renew.
        let queued: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT locked_until FROM gdpr_jobs WHERE bundle_jobs IS NULL")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(queued, None);
    }

    /// Request 1 of [`QUEUE`]'s organization queued as a bundle of two services' jobs, and no
    /// other job.
    const A_BUNDLE: &str = "
        DELETE FROM gdpr_jobs;
        INSERT INTO gdpr_jobs (id, request_id, service, action, status, max_attempts, bundle_jobs)
        VALUES (gen_random_uuid(), '00000000-0000-0000-0000-000000000001', '_bundle', 'bundle',
                'queued', 5, '[[\"s2\", \"summarize\"], [\"s1\", \"summarize\"]]');";

    /// The jobs' rows: service, status, attempts, holder, lease, matched.
    type JobRowState = (
        String,
        String,
        i32,
        Option<String>,
        Option<chrono::DateTime<chrono::Utc>>,
        Option<i64>,
    );

    async fn job_rows(pool: &PgPool) -> Vec<JobRowState> {
        sqlx::query_as(
            "SELECT service, status, attempts, locked_by, locked_until, matched
               FROM gdpr_jobs ORDER BY service",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    }

    /// Claims [`A_BUNDLE`] for worker `w`.
    async fn claimed_bundle(pool: &PgPool) -> Claimed {
        sqlx::raw_sql(QUEUE).execute(pool).await.unwrap();
        sqlx::raw_sql(A_BUNDLE).execute(pool).await.unwrap();
        let mut claimed = claim_some(pool, 4, &[]).await;
        assert_eq!(claimed.len(), 1, "a bundle is claimed as one job");
        claimed.remove(0)
    }

    #[sqlx::test]
    async fn a_bundle_becomes_its_services_completed_jobs_only_in_its_holders_hands(pool: PgPool) {
        let bundle = claimed_bundle(&pool).await;
        let jobs = bundle_jobs(&bundle);
        let services: Vec<(&str, &str, i32)> = jobs
            .iter()
            .map(|j| (j.service.as_str(), j.action.as_str(), j.attempts))
            .collect();
        assert_eq!(services, [("s1", "summarize", 1), ("s2", "summarize", 1)]);
        let outcome = Outcome {
            matched: 3,
            ..Outcome::default()
        };
        let done: Vec<(&Claimed, &Outcome)> = jobs.iter().map(|j| (j, &outcome)).collect();
        let mut conn = pool.acquire().await.unwrap();
        let before = job_rows(&pool).await;

        let held = complete_bundle(&mut conn, &bundle, "other", &done)
            .await
            .unwrap();
        assert!(
            !held,
            "a worker that does not hold the bundle completes nothing"
        );
        assert_eq!(job_rows(&pool).await, before);

        assert!(
            complete_bundle(&mut conn, &bundle, "w", &done)
                .await
                .unwrap()
        );
        let completed = |s: &str| (s.to_owned(), "completed".to_owned(), 1, None, None, Some(3));
        assert_eq!(job_rows(&pool).await, [completed("s1"), completed("s2")]);
    }

    #[sqlx::test]
    async fn a_bundle_that_failed_becomes_its_services_jobs_held_with_a_new_lease(pool: PgPool) {
        let bundle = claimed_bundle(&pool).await;
        let mut conn = pool.acquire().await.unwrap();
        let before = job_rows(&pool).await;
        let claimed_until = before[0].4.unwrap();
        let lease = Some(Duration::from_secs(600));

        let expanded = expand_bundle(&mut conn, &bundle, "other", lease)
            .await
            .unwrap();
        assert!(expanded.is_none(), "only the bundle's holder may expand it");
        assert_eq!(job_rows(&pool).await, before);

        let jobs = expand_bundle(&mut conn, &bundle, "w", lease)
            .await
            .unwrap()
            .unwrap();
        let rows = job_rows(&pool).await;
        let states: Vec<(&str, &str, i32, Option<&str>)> = rows
            .iter()
            .map(|(s, status, attempts, by, ..)| {
                (s.as_str(), status.as_str(), *attempts, by.as_deref())
            })
            .collect();
        assert_eq!(
            states,
            [
                ("_finalize", "waiting", 0, None),
                ("s1", "running", 1, Some("w")),
                ("s2", "running", 1, Some("w")),
            ]
        );
        assert!(
            rows[1..]
                .iter()
                .all(|r| r.4.is_some_and(|until| until > claimed_until)),
            "the jobs are held for a lease of their own, not what is left of the bundle's"
        );
        // What the worker runs next are those rows, in service order.
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM gdpr_jobs WHERE service <> '_finalize' ORDER BY service",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), ids);
    }

    #[sqlx::test]
    async fn a_bundle_becomes_its_services_jobs_queued_for_any_worker(pool: PgPool) {
        let bundle = claimed_bundle(&pool).await;
        let mut conn = pool.acquire().await.unwrap();
        expand_bundle(&mut conn, &bundle, "w", None)
            .await
            .unwrap()
            .unwrap();
        let queued = |s: &str| (s.to_owned(), "queued".to_owned(), 0, None, None, None);
        assert_eq!(
            job_rows(&pool).await,
            [
                (
                    "_finalize".to_owned(),
                    "waiting".to_owned(),
                    0,
                    None,
                    None,
                    None
                ),
                queued("s1"),
                queued("s2"),
            ]
        );
        // Claimed again like any queued jobs, the attempt the bundle's claim took counted once.
        let claimed = claim_some(&pool, 4, &[]).await;
        let mut attempts: Vec<(String, i32)> = claimed
            .iter()
            .map(|j| (j.service.clone(), j.attempts))
            .collect();
        attempts.sort();
        assert_eq!(attempts, [("s1".to_owned(), 1), ("s2".to_owned(), 1)]);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        let within = |d: Duration, expected_ms: f64| {
            let ms = d.as_secs_f64() * 1000.0;
            ms >= expected_ms * 0.8 - 1e-6 && ms <= expected_ms * 1.2 + 1e-6
        };
        assert!(within(backoff(1, base, max), 100.0));
        assert!(within(backoff(2, base, max), 200.0));
        assert!(within(backoff(3, base, max), 400.0));
        assert!(backoff(20, base, max) <= max);
        assert!(backoff(i32::MAX, base, max) <= max);
    }
}
