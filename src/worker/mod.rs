//! The background worker: claims jobs, runs each data service's part of a request through the
//! catalog, retries what fails, and finalizes requests. Any number of workers may share one
//! database.

pub mod archive;
pub mod finalize;
pub mod notify;
pub mod queue;
pub mod service;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use sqlx::postgres::PgListener;
use sqlx::types::Json;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::catalog::{Catalog, Location};
use crate::config::WorkerSettings;
use crate::index::Normalizer;
use crate::outbound::Outbound;
use crate::requests::create::{FINALIZE, ReplacementsColumn};
use crate::requests::terms::Terms;
use crate::secrets::ServerKey;
use queue::Claimed;

/// How a worker transaction begins (see [`Worker::begin`]): one round trip for all three.
const BEGIN_WORK: &str = "BEGIN; SET LOCAL synchronous_commit = off; \
                          SET LOCAL plan_cache_mode = force_generic_plan";

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
    /// The services of tables in gdprd's own database: a request's jobs of these run together,
    /// in one transaction (see [`queue::claim`]).
    together: Arc<[String]>,
}

/// What a job needs to know of its request (read by the claim that takes the job).
#[derive(Clone, sqlx::FromRow)]
pub struct RequestWork {
    pub org_id: Uuid,
    pub request_type: String,
    pub terms: Json<Terms>,
    pub replacement_terms: Option<Json<ReplacementsColumn>>,
}

impl std::fmt::Debug for RequestWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The terms and replacements are the subject's identifiers.
        f.debug_struct("RequestWork")
            .field("org_id", &self.org_id)
            .field("request_type", &self.request_type)
            .finish_non_exhaustive()
    }
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
        let together = catalog
            .services
            .iter()
            .filter(|s| matches!(s.location, Location::Local))
            .map(|s| s.name.clone())
            .collect();
        Worker {
            together,
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
    ///
    /// Up to `concurrency` units of work run at once — a job, or a request's jobs on gdprd's
    /// own tables together — and a slot that frees is filled at once: a slow job (an export
    /// archive, a finalization, an HTTP service) holds back no other.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!(worker = %self.id, "worker started");
        let deliveries = tokio::spawn(notify::run(self.clone(), stop.clone()));
        let mut listener = self.listen().await;
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut in_flight = JoinSet::new();
        // The requests of the units in flight, once per unit and request.
        let busy: Arc<Mutex<Vec<Uuid>>> = Arc::default();
        while !stop.is_cancelled() {
            let first = tokio::select! {
                _ = stop.cancelled() => break,
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            while in_flight.try_join_next().is_some() {}
            // Only this loop takes slots, so those free now stay free until it fills them.
            let free = slots.available_permits() + 1;
            let busy_now = busy.lock().map(|b| b.clone()).unwrap_or_default();
            forget_notifications(&mut listener).await;
            let claimed = match self.claim(free, &busy_now).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "claiming jobs failed");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                drop(first);
                if in_flight.is_empty() {
                    self.expire_archives().await;
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(poll) => {}
                    _ = wait_notification(&mut listener) => {}
                }
                continue;
            }
            let mut permit = Some(first);
            for unit in self.tasks(claimed) {
                let held = match permit.take() {
                    Some(p) => p,
                    None => match slots.clone().try_acquire_owned() {
                        Ok(p) => p,
                        // Cannot happen (see above); the job's lease brings it back if it did.
                        Err(_) => break,
                    },
                };
                let worker = self.clone();
                let busy = busy.clone();
                let mut requests: Vec<Uuid> = unit.iter().map(|j| j.request_id).collect();
                requests.dedup();
                if let Ok(mut b) = busy.lock() {
                    b.extend_from_slice(&requests);
                }
                in_flight.spawn(async move {
                    worker.process_unit(unit).await;
                    if let Ok(mut b) = busy.lock() {
                        for request in requests {
                            if let Some(i) = b.iter().position(|r| *r == request) {
                                b.swap_remove(i);
                            }
                        }
                    }
                    drop(held);
                });
            }
        }
        while in_flight.join_next().await.is_some() {}
        // Deliveries in flight finish too (each is bounded by GDPRD_NOTIFY_TIMEOUT_SECS).
        if let Err(e) = deliveries.await {
            tracing::warn!(error = %e, "the notification task ended abnormally");
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
        let claimed = self.claim(self.settings.concurrency, &[]).await?;
        let n = claimed.len();
        join_all(
            self.tasks(claimed)
                .into_iter()
                .map(|unit| self.process_unit(unit)),
        )
        .await;
        Ok(n)
    }

    /// Claimed jobs as units of work (never more units than the claim was for, see
    /// [`queue::claim`]): the jobs of a request on gdprd's own tables together, bundles up to
    /// [`WorkerSettings::bundle_batch`] together, every other job alone.
    fn tasks(&self, claimed: Vec<Claimed>) -> Vec<Vec<Claimed>> {
        let batch = self.settings.bundle_batch.max(1);
        let (bundles, jobs): (Vec<Claimed>, Vec<Claimed>) =
            claimed.into_iter().partition(|j| j.bundle_jobs.is_some());
        let mut units = self.units(jobs);
        let mut bundles = bundles.into_iter().peekable();
        while bundles.peek().is_some() {
            units.push(bundles.by_ref().take(batch).collect());
        }
        units
    }

    /// Claimed jobs that are not bundles as units of work: the jobs of a request on gdprd's own
    /// tables together, every other job alone.
    fn units(&self, claimed: Vec<Claimed>) -> Vec<Vec<Claimed>> {
        let mut units: Vec<Vec<Claimed>> = Vec::new();
        for job in claimed {
            let together = self.together.contains(&job.service);
            let unit = units.iter_mut().find(|u| {
                together
                    && u[0].request_id == job.request_id
                    && self.together.contains(&u[0].service)
            });
            match unit {
                Some(unit) => unit.push(job),
                None => units.push(vec![job]),
            }
        }
        // In the same order everywhere, so that two units touching the same rows take their
        // locks in the same order.
        for unit in &mut units {
            unit.sort_by(|a, b| a.service.cmp(&b.service));
        }
        units
    }

    async fn process_unit(&self, unit: Vec<Claimed>) {
        if unit[0].bundle_jobs.is_some() {
            self.process_bundles(unit).await;
        } else if self.together.contains(&unit[0].service) {
            self.process_together(unit).await;
        } else {
            join_all(unit.into_iter().map(|job| self.process_job(job))).await;
        }
    }

    /// How long a job this worker takes stays its own before another worker may take it over.
    fn lease(&self) -> Duration {
        Duration::from_secs(self.settings.lease_secs)
    }

    /// Claims up to `limit` jobs, those of the `busy` requests last (see [`queue::claim`]).
    async fn claim(&self, limit: usize, busy: &[Uuid]) -> anyhow::Result<Vec<Claimed>> {
        let lease = self.lease();
        // A claim lost to a crash leaves its jobs queued, so it need not wait for the disk.
        let mut tx = self.begin().await?;
        let bundles = self.settings.bundle_batch.max(1) as i64;
        let claimed = queue::claim(
            &mut tx,
            &self.id,
            lease,
            limit as i64,
            busy,
            &self.together,
            bundles,
        )
        .await?;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Runs a job that is not a bundle, and records its failure.
    async fn process_job(&self, job: Claimed) {
        let started = std::time::Instant::now();
        let result = if job.attempts > job.max_attempts {
            Err(anyhow::anyhow!(match &job.last_error {
                Some(last) => format!("gave up after {} attempts: {last}", job.max_attempts),
                None => format!(
                    "gave up after {} attempts whose workers stopped before finishing",
                    job.max_attempts
                ),
            }))
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

    /// Records a failed attempt of `job` in its own transaction.
    async fn record_failure(&self, job: &Claimed, error: &anyhow::Error) {
        let result: anyhow::Result<()> = async {
            let mut tx = self.begin().await?;
            let gave_up = self.fail_job(&mut tx, job, error).await?;
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

    /// Logs a failed attempt and queues the job again after its backoff, or fails it for good
    /// (see [`queue::fail`]). Returns whether it failed for good.
    async fn fail_job(
        &self,
        conn: &mut sqlx::PgConnection,
        job: &Claimed,
        error: &anyhow::Error,
    ) -> sqlx::Result<bool> {
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
        let permanent = error.downcast_ref::<service::Permanent>().is_some();
        queue::fail(conn, job.id, Some(&self.id), &message, delay, permanent).await
    }

    /// A transaction of the worker's own bookkeeping (and of work in gdprd's database). It
    /// commits asynchronously: the commit returns before its WAL reaches the disk, so jobs do
    /// not queue behind one another's disk flushes. Nothing is lost that matters: work and
    /// bookkeeping commit together, so after a database crash at worst the last moments of
    /// progress are undone, and the jobs they belonged to — still leased, never marked done —
    /// run again when their lease runs out. (Accepting a request, and an HTTP service's
    /// callback, commit synchronously: their answer promises durability.)
    ///
    /// Its statements are planned generically, once per connection: the worker's statements
    /// and the executor's are lookups by key whose plans do not depend on the values, and
    /// planning the claim took longer than running it.
    pub async fn begin(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.pool.begin_with(BEGIN_WORK).await
    }

    /// [`Worker::begin`] on a connection the caller holds.
    pub async fn begin_on<'c>(
        conn: &'c mut PgConnection,
    ) -> sqlx::Result<sqlx::Transaction<'c, sqlx::Postgres>> {
        conn.begin_with(BEGIN_WORK).await
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

/// Forgets the notifications that have arrived, right before a claim: the claim sees every job
/// they announced (a notification arrives after its transaction commits). Those that piled up
/// while every slot was busy would otherwise each wake the loop, after the work is done, for a
/// claim that finds nothing (some 400 after a batch of 200 requests).
async fn forget_notifications(listener: &mut Option<PgListener>) {
    let Some(l) = listener else { return };
    // A receive polled once takes what the connection has; it would wait for anything more.
    while let Ok(Ok(_)) = tokio::time::timeout(Duration::ZERO, l.recv()).await {}
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
