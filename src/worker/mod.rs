//! The background worker: claims jobs, runs each data service's part of a request through the
//! catalog, retries what fails, and finalizes requests. Any number of workers may share one
//! database.

pub mod archive;
pub mod finalize;
pub mod notify;
pub mod queue;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::join_all;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use sqlx::types::Json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::catalog::{self, Action, Catalog};
use crate::config::WorkerSettings;
use crate::index::Normalizer;
use crate::outbound::Outbound;
use crate::requests::create::{FINALIZE, ReplacementsColumn};
use crate::requests::terms::Terms;
use crate::secrets::ServerKey;
use queue::Claimed;

#[derive(Clone)]
pub struct Worker {
    pub pool: PgPool,
    pub catalog: Arc<Catalog>,
    pub key: ServerKey,
    pub normalizer: Normalizer,
    pub settings: WorkerSettings,
    /// Calls to HTTP data services and notification receivers.
    pub outbound: Outbound,
    /// Names this worker's leases.
    pub id: String,
}

/// What a job needs to know of its request.
#[derive(sqlx::FromRow)]
pub struct RequestWork {
    pub org_id: Uuid,
    pub request_type: String,
    pub terms: Json<Terms>,
    pub replacement_terms: Option<Json<ReplacementsColumn>>,
}

impl Worker {
    pub fn new(
        pool: PgPool,
        catalog: Arc<Catalog>,
        key: ServerKey,
        normalizer: Normalizer,
        settings: WorkerSettings,
    ) -> Worker {
        let id = format!("{}-{}", std::process::id(), Uuid::new_v4().simple());
        Worker {
            outbound: Outbound::new(settings.outbound.clone()),
            pool,
            catalog,
            key,
            normalizer,
            settings,
            id,
        }
    }

    /// Works until `stop` is cancelled; then finishes the jobs in hand and returns. Wakes on
    /// NOTIFY, and polls as a fallback (and to take over jobs whose lease expired).
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!(worker = %self.id, "worker started");
        tokio::spawn(notify::run(self.clone(), stop.clone()));
        let mut listener = self.listen().await;
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        while !stop.is_cancelled() {
            let worked = match self.step().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "worker step failed");
                    0
                }
            };
            if worked > 0 {
                continue;
            }
            self.expire_archives().await;
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(poll) => {}
                _ = wait_notification(&mut listener) => {}
            }
        }
        tracing::info!(worker = %self.id, "worker stopped");
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen("gdpr_jobs").await.ok()?;
        Some(listener)
    }

    /// Runs until no job is ready (tests drive the queue with it). Returns the jobs handled.
    pub async fn run_until_idle(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let n = self.step().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// Claims a batch of ready jobs and works them concurrently.
    pub async fn step(&self) -> anyhow::Result<usize> {
        let lease = Duration::from_secs(self.settings.lease_secs);
        let claimed = {
            let mut conn = self.pool.acquire().await?;
            queue::claim(&mut conn, &self.id, lease, self.settings.concurrency as i64).await?
        };
        let n = claimed.len();
        join_all(claimed.into_iter().map(|job| self.process(job))).await;
        Ok(n)
    }

    async fn process(&self, job: Claimed) {
        let started = std::time::Instant::now();
        let result = if job.attempts > job.max_attempts {
            Err(anyhow::anyhow!(
                "gave up after {} attempts whose workers stopped before finishing",
                job.max_attempts
            ))
        } else if job.service == FINALIZE {
            finalize::run(self, &job).await
        } else {
            self.run_service_job(&job).await
        };
        match result {
            Ok(()) => tracing::info!(
                request_id = %job.request_id, service = %job.service, action = %job.action,
                attempt = job.attempts, ms = started.elapsed().as_millis() as u64, "job done"
            ),
            Err(e) => self.record_failure(&job, &e).await,
        }
    }

    async fn record_failure(&self, job: &Claimed, error: &anyhow::Error) {
        let message = format!("{error:#}");
        tracing::warn!(
            request_id = %job.request_id, service = %job.service, attempt = job.attempts,
            error = %message, "job failed"
        );
        let delay = queue::backoff(
            job.attempts,
            Duration::from_millis(self.settings.retry_base_ms),
            Duration::from_millis(self.settings.retry_max_ms),
        );
        let result: anyhow::Result<()> = async {
            let mut tx = self.pool.begin().await?;
            let gave_up = queue::fail(&mut tx, job, &self.id, &message, delay).await?;
            if gave_up && job.service != FINALIZE {
                queue::after_service_job(&mut tx, job.request_id).await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            // The lease runs out and another attempt follows: nothing is lost.
            tracing::warn!(error = %format!("{e:#}"), "recording a job failure failed");
        }
    }

    pub async fn request_work(&self, request_id: Uuid) -> anyhow::Result<RequestWork> {
        sqlx::query_as(
            "SELECT org_id, request_type, terms, replacement_terms FROM gdpr_requests WHERE id = $1",
        )
        .bind(request_id)
        .fetch_one(&self.pool)
        .await
        .context("loading the request")
    }

    /// A service job: search (count what it will touch), then act, each in one transaction
    /// together with the job's own bookkeeping — which is what makes running it twice safe.
    async fn run_service_job(&self, job: &Claimed) -> anyhow::Result<()> {
        let work = self.request_work(job.request_id).await?;
        let service = self.catalog.service(&job.service).with_context(|| {
            format!(
                "the catalog no longer has a service named {:?}",
                job.service
            )
        })?;
        let key = self.key.bytes();

        if job.phase == "search" {
            let mut tx = self.pool.begin().await?;
            let found = catalog::execute(
                &mut tx,
                service,
                work.org_id,
                &work.terms.0,
                Action::Summarize,
                key,
            )
            .await?;
            let held = sqlx::query(
                "UPDATE gdpr_jobs SET phase = 'act', matched = $3
                  WHERE id = $1 AND locked_by = $2 AND status = 'running'",
            )
            .bind(job.id)
            .bind(&self.id)
            .bind(found.matched)
            .execute(&mut *tx)
            .await?;
            if held.rows_affected() == 0 {
                return Ok(());
            }
            queue::refresh_status(&mut tx, job.request_id).await?;
            tx.commit().await?;
        }

        let replacements = work
            .replacement_terms
            .as_ref()
            .map(|r| r.0.parsed.as_slice())
            .unwrap_or_default();
        let action = match job.action.as_str() {
            "summarize" => Action::Summarize,
            "export" => Action::Export,
            "update" => Action::Update(replacements),
            "delete" | "anonymize" => Action::Erase,
            other => anyhow::bail!("unknown job action {other:?}"),
        };
        let mut tx = self.pool.begin().await?;
        let outcome =
            catalog::execute(&mut tx, service, work.org_id, &work.terms.0, action, key).await?;
        let held = sqlx::query(
            "UPDATE gdpr_jobs
                SET status = 'completed', phase = 'act', matched = $3, deleted = $4,
                    anonymized = $5, updated = $6, retained = $7, retained_reason = $8,
                    result = $9, last_error = NULL, locked_by = NULL, locked_until = NULL,
                    completed_at = now()
              WHERE id = $1 AND locked_by = $2 AND status = 'running'",
        )
        .bind(job.id)
        .bind(&self.id)
        .bind(outcome.matched)
        .bind(outcome.deleted)
        .bind(outcome.anonymized)
        .bind(outcome.updated)
        .bind(outcome.retained)
        .bind(&outcome.retained_reason)
        .bind(outcome.export.as_ref().map(Json))
        .execute(&mut *tx)
        .await?;
        if held.rows_affected() == 0 {
            // Another worker took the job over after our lease ran out; its run counts.
            return Ok(());
        }
        queue::after_service_job(&mut tx, job.request_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes export archives past their expiry.
    async fn expire_archives(&self) {
        let result = sqlx::query("DELETE FROM export_archives WHERE expires_at <= now()")
            .execute(&self.pool)
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "expiring export archives failed");
        }
    }
}

async fn wait_notification(listener: &mut Option<PgListener>) {
    match listener {
        Some(l) => {
            if l.recv().await.is_err() {
                // The connection dropped; PgListener reconnects on the next recv. Avoid a busy
                // loop meanwhile.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        None => std::future::pending().await,
    }
}
