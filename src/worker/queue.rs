//! The job queue in PostgreSQL: claims with `FOR UPDATE SKIP LOCKED` and a lease (no
//! transaction is held open while a job works), capped exponential backoff, and the request
//! status derived from its jobs.

use std::time::Duration;

use rand::Rng;
use sqlx::PgConnection;
use uuid::Uuid;

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
}

/// Claims up to `limit` ready jobs: queued ones whose time has come, and running ones whose
/// lease has expired (their worker died).
pub async fn claim(
    conn: &mut PgConnection,
    worker: &str,
    lease: Duration,
    limit: i64,
) -> sqlx::Result<Vec<Claimed>> {
    sqlx::query_as(
        "UPDATE gdpr_jobs j
            SET status = 'running', attempts = j.attempts + 1, locked_by = $1,
                locked_until = now() + make_interval(secs => $2)
          WHERE j.id IN (
                SELECT id FROM gdpr_jobs
                 WHERE (status = 'queued' AND run_at <= now())
                    OR (status = 'running' AND locked_until < now())
                 ORDER BY run_at
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED)
      RETURNING j.id, j.request_id, j.service, j.action, j.phase, j.attempts, j.max_attempts,
                j.last_error",
    )
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(limit)
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
    let held = sqlx::query(
        "UPDATE gdpr_jobs
            SET status = 'completed', phase = 'act', matched = $3, deleted = $4,
                anonymized = $5, updated = $6, retained = $7, retained_reason = $8,
                result = $9, last_error = NULL, locked_by = NULL, locked_until = NULL,
                completed_at = now()
          WHERE id = $1
            AND (($2::text IS NULL AND status IN ('running', 'queued'))
                 OR (locked_by = $2 AND status = 'running'))",
    )
    .bind(job_id)
    .bind(holder)
    .bind(outcome.matched)
    .bind(outcome.deleted)
    .bind(outcome.anonymized)
    .bind(outcome.updated)
    .bind(outcome.retained)
    .bind(&outcome.retained_reason)
    .bind(outcome.export.as_ref().map(sqlx::types::Json))
    .execute(conn)
    .await?;
    Ok(held.rows_affected() > 0)
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
pub async fn after_service_job(conn: &mut PgConnection, request_id: Uuid) -> sqlx::Result<()> {
    sqlx::query("SELECT id FROM gdpr_requests WHERE id = $1 FOR UPDATE")
        .bind(request_id)
        .execute(&mut *conn)
        .await?;
    let released = sqlx::query(
        "UPDATE gdpr_jobs SET status = 'queued', run_at = now()
          WHERE request_id = $1 AND service = $2 AND status = 'waiting'
            AND NOT EXISTS (SELECT 1 FROM gdpr_jobs
                             WHERE request_id = $1 AND service <> $2
                               AND status NOT IN ('completed', 'error'))",
    )
    .bind(request_id)
    .bind(FINALIZE)
    .execute(&mut *conn)
    .await?;
    if released.rows_affected() > 0 {
        sqlx::query("SELECT pg_notify('gdpr_jobs', '')")
            .execute(&mut *conn)
            .await?;
    }
    refresh_status(conn, request_id).await
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
    let jobs: Vec<JobState> = sqlx::query_as(
        "SELECT service, action, status, phase, attempts FROM gdpr_jobs WHERE request_id = $1",
    )
    .bind(request_id)
    .fetch_all(&mut *conn)
    .await?;
    let status = derive(&jobs);
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
    use super::*;

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
