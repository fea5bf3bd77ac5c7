//! One service job: the part of a request that one data service carries out, wherever the
//! service lives — tables in gdprd's database, tables in an external database, or a system
//! behind HTTP (the contract is [`JobMessage`] out, [`JobResult`] back, documented in the
//! README under "HTTP data services").

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use super::finalize;
use super::queue::{self, Claimed};
use super::{RequestWork, Worker};
use crate::catalog::{self, Action, ExecuteError, HttpEndpoint, Location, Outcome, Service};
use crate::outbound::{self, CallError};
use crate::requests::terms::TermKind;

/// What a run of a unit did: the jobs it completed and the finalize job it ran, with how long
/// each took.
struct Ran<'j> {
    completed: Vec<(&'j Claimed, std::time::Duration)>,
    finalized: Option<(Claimed, std::time::Duration)>,
}

/// How a run of a unit ([`Worker::run_unit`]) acts and keeps its books.
#[derive(Clone, Copy)]
enum Run<'u> {
    /// The jobs' rows claimed; no savepoint: any failure ends the run ([`Stopped`]).
    Unguarded,
    /// The jobs' rows claimed; each action and the finalization in a savepoint of its own.
    Guarded,
    /// The jobs of a bundle, which have no rows yet: as [`Run::Unguarded`], and the bundle's row
    /// replaced by theirs, completed, and the request finalized, or nothing is.
    Bundle(&'u Claimed),
}

/// Why an unguarded run of a unit stopped, its transaction rolled back.
enum Stopped {
    /// A working table of the connection's first job of a service was missing.
    MissingTable,
    /// An action or the finalization failed.
    Failed,
}

/// Logs the jobs a run completed and the finalize job it ran.
fn log_done(ran: Ran<'_>) {
    for (job, took) in ran
        .completed
        .into_iter()
        .chain(ran.finalized.as_ref().map(|(j, t)| (j, *t)))
    {
        tracing::info!(
            request_id = %job.request_id, service = %job.service, action = %job.action,
            attempt = job.attempts, ms = took.as_millis() as u64, "job done"
        );
    }
}

/// Why an unguarded run stopped when `job`'s action failed with `e` (see [`Stopped`]).
fn stopped(job: &Claimed, e: &anyhow::Error) -> Stopped {
    let execute = e.downcast_ref::<ExecuteError>();
    if execute.is_some_and(ExecuteError::is_missing_table) {
        return Stopped::MissingTable;
    }
    tracing::debug!(
        request_id = %job.request_id, service = %job.service, error = %format!("{e:#}"),
        "an action failed; its unit runs again, guarded or as its services' jobs"
    );
    Stopped::Failed
}

/// A failure that another attempt would meet again (the service refused the job, or answered
/// something that is not a result): the job fails at once with this reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Permanent(pub String);

impl Worker {
    /// Runs a service job where its service lives.
    pub(super) async fn run_service_job(&self, job: &Claimed) -> anyhow::Result<()> {
        let work = &job.work;
        let service = self.service_of(job)?;
        match &service.location {
            Location::Local => {
                self.run_together(std::slice::from_ref(job), Run::Unguarded)
                    .await
            }
            Location::Database(database) => {
                if database.org_id != work.org_id {
                    return Err(Permanent(format!(
                        "service {:?} holds another organization's data",
                        service.name
                    ))
                    .into());
                }
                self.run_on_external_tables(job, work, service, database.pool())
                    .await
            }
            Location::Http(endpoint) => self.run_over_http(job, work, service, endpoint).await,
        }
    }

    /// The catalog's service of `job`.
    fn service_of(&self, job: &Claimed) -> anyhow::Result<&Service> {
        self.catalog.service(&job.service).with_context(|| {
            format!(
                "the catalog no longer has a service named {:?}",
                job.service
            )
        })
    }

    /// A request's jobs on tables in gdprd's own database (one unit of [`Worker::units`]):
    /// run together in one transaction, see [`Worker::run_together`]. Jobs that used up their
    /// attempts fail without running.
    pub(super) async fn process_together(&self, jobs: Vec<Claimed>) {
        self.process_together_from(jobs, Run::Unguarded).await
    }

    /// [`Worker::process_together`], beginning with a run of `first`: guarded for the jobs of a
    /// bundle whose own run failed (see [`Worker::process_bundle`]).
    async fn process_together_from(&self, jobs: Vec<Claimed>, first: Run<'_>) {
        let (spent, jobs): (Vec<Claimed>, Vec<Claimed>) =
            jobs.into_iter().partition(|j| j.attempts > j.max_attempts);
        for job in spent {
            self.process_job(job).await;
        }
        if let Err(e) = self.run_together(&jobs, first).await {
            // Nothing of the transaction stayed: each job failed this attempt.
            for job in &jobs {
                self.record_failure(job, &e).await;
            }
        }
    }

    /// Runs jobs of one request on tables in gdprd's own database in one transaction, with their
    /// bookkeeping, and finalizes the request when they were its last: running a job twice is
    /// then safe. First with no savepoint at all (a round trip and a subtransaction fewer per
    /// action and for the finalization); should an action or the finalization fail, that
    /// transaction is rolled back whole and the unit runs again guarded (see
    /// [`Worker::run_unit`]). All on one connection: when the unguarded run failed for want of a
    /// working table (the connection's first job of a service), the unit's working tables are
    /// made on it and the unit runs unguarded again, so that every connection pays that once.
    /// `Err` is a failure of the transaction itself.
    ///
    /// `first` is how the first run goes: [`Run::Guarded`] skips the unguarded one, and with
    /// [`Run::Bundle`] the jobs are a bundle's, whose failed run is not run again here but
    /// returned as `Err`.
    async fn run_together(&self, jobs: &[Claimed], first: Run<'_>) -> anyhow::Result<()> {
        if jobs.is_empty() && !matches!(first, Run::Bundle(_)) {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await?;
        let mut ran = match first {
            Run::Guarded => Err(Stopped::Failed),
            first => self.run_unit(&mut conn, jobs, first).await?,
        };
        if let Err(Stopped::MissingTable) = ran {
            ran = match self.prepare_tables(&mut conn, jobs).await {
                Ok(()) => self.run_unit(&mut conn, jobs, first).await?,
                // The guarded run makes them job by job, and fails only the job that cannot.
                Err(e) => {
                    tracing::debug!(
                        request_id = %jobs[0].request_id, error = %format!("{e:#}"),
                        "making working tables failed; the unit runs again, guarded"
                    );
                    Err(Stopped::Failed)
                }
            };
        }
        let ran = match (ran, first) {
            (Ok(ran), _) => ran,
            (Err(_), Run::Bundle(_)) => anyhow::bail!("an action or the finalization failed"),
            (Err(_), _) => self
                .run_unit(&mut conn, jobs, Run::Guarded)
                .await?
                .ok()
                .context("a guarded run of a unit always ends")?,
        };
        log_done(ran);
        Ok(())
    }

    /// A bundle ([`BUNDLE`](crate::requests::create::BUNDLE)): its services' jobs and the
    /// request's finalization, in one transaction that also replaces the bundle's row by their
    /// rows, completed (`Run::Bundle`). Should that fail, or the bundle have used up its
    /// attempts, it becomes its services' jobs and a finalize job ([`queue::expand_bundle`]),
    /// held by this worker with a new lease, and they go on at once as claimed jobs of a request
    /// do (they run guarded, or fail for good when their attempts are used up): each failure is
    /// then its service's alone, with the retries and the reason of any job, and this attempt is
    /// theirs. A bundle is made by the API process's catalog: when this worker's has a service
    /// of it elsewhere than in gdprd's database, or not at all, it becomes its jobs, queued, and
    /// each goes where this catalog says (as they would have, queued one by one).
    pub(super) async fn process_bundle(&self, bundle: Claimed) {
        let local = self.is_local(&bundle);
        if local && bundle.attempts <= bundle.max_attempts {
            let jobs = queue::bundle_jobs(&bundle);
            match self.run_together(&jobs, Run::Bundle(&bundle)).await {
                Ok(()) => return,
                Err(e) => tracing::debug!(
                    request_id = %bundle.request_id, error = %format!("{e:#}"),
                    "a bundle failed; it runs again as its services' jobs"
                ),
            }
        }
        let lease = local.then(|| self.lease());
        let expanded: anyhow::Result<Option<Vec<Claimed>>> = async {
            let mut tx = self.begin().await?;
            let jobs = queue::expand_bundle(&mut tx, &bundle, &self.id, lease).await?;
            tx.commit().await?;
            Ok(jobs)
        }
        .await;
        match expanded {
            Ok(Some(jobs)) if local => self.process_together_from(jobs, Run::Guarded).await,
            // Queued for any worker, or another worker took the bundle over after its lease ran
            // out.
            Ok(_) => {}
            Err(e) => tracing::warn!(
                request_id = %bundle.request_id, error = %format!("{e:#}"),
                "turning a bundle into its services' jobs failed; it is claimed again when its \
                 lease runs out"
            ),
        }
    }

    /// Whether this worker's catalog has every service of `bundle` in gdprd's database.
    fn is_local(&self, bundle: &Claimed) -> bool {
        let planned = bundle.bundle_jobs.as_ref().map(|j| j.0.as_slice());
        planned.unwrap_or_default().iter().all(|(service, _)| {
            self.catalog
                .service(service)
                .is_some_and(|s| matches!(s.location, Location::Local))
        })
    }

    /// Bundles claimed as one unit of work (see [`Worker::tasks`]): run in one transaction on one
    /// connection, each as [`Worker::process_bundle`] runs one (its services' jobs, its row
    /// replaced by theirs, its request finalized), so that they share a claim, a transaction and
    /// its commit. Should any of them fail, or the transaction, nothing of it stays and each
    /// goes on alone as [`Worker::process_bundle`] does: a failure is then its bundle's alone. A
    /// bundle that has used up its attempts, or has a service elsewhere than in gdprd's
    /// database, goes on alone at once.
    pub(super) async fn process_bundles(&self, bundles: Vec<Claimed>) {
        let (together, mut alone): (Vec<Claimed>, Vec<Claimed>) = bundles
            .into_iter()
            .partition(|b| b.attempts <= b.max_attempts && self.is_local(b));
        if together.len() > 1 {
            match self.run_bundles(&together).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!(
                        bundles = together.len(), error = %format!("{e:#}"),
                        "bundles run together failed; each runs again alone"
                    );
                    // Their second run has a whole lease (should this fail, their lease as it
                    // stands runs out at worst, and another worker takes over what is left).
                    let ids: Vec<Uuid> = together.iter().map(|b| b.id).collect();
                    if let Err(e) = self.renew_leases(&ids).await {
                        tracing::warn!(error = %format!("{e:#}"), "renewing leases failed");
                    }
                    alone.extend(together);
                }
            }
        } else {
            alone.extend(together);
        }
        for bundle in alone {
            self.process_bundle(bundle).await;
        }
    }

    /// Renews this worker's lease of the jobs `ids` (see [`queue::renew_leases`]).
    async fn renew_leases(&self, ids: &[Uuid]) -> anyhow::Result<()> {
        let mut tx = self.begin().await?;
        queue::renew_leases(&mut tx, ids, &self.id, self.lease()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Runs `bundles` in one transaction (see [`Worker::process_bundles`]). As in
    /// [`Worker::run_together`], a connection that lacks a working table makes the bundles' and
    /// the run starts over. `Err` when any of them failed or another worker took one over.
    async fn run_bundles(&self, bundles: &[Claimed]) -> anyhow::Result<()> {
        let jobs: Vec<Vec<Claimed>> = bundles.iter().map(queue::bundle_jobs).collect();
        let mut conn = self.pool.acquire().await?;
        let mut ran = self.run_bundles_on(&mut conn, bundles, &jobs).await?;
        if let Err(Stopped::MissingTable) = ran {
            self.prepare_tables(&mut conn, jobs.iter().flatten())
                .await?;
            ran = self.run_bundles_on(&mut conn, bundles, &jobs).await?;
        }
        let Ok(ran) = ran else {
            anyhow::bail!("an action or a finalization failed");
        };
        for ran in ran {
            log_done(ran);
        }
        Ok(())
    }

    /// One run of `bundles`, whose jobs are `jobs`, in one transaction on `conn`: each as
    /// [`Worker::run_bundle_in`]. `Err` is a failure of the transaction itself.
    async fn run_bundles_on<'j>(
        &self,
        conn: &mut PgConnection,
        bundles: &'j [Claimed],
        jobs: &'j [Vec<Claimed>],
    ) -> anyhow::Result<Result<Vec<Ran<'j>>, Stopped>> {
        let mut tx = Worker::begin_on(conn).await?;
        let mut ran = Vec::with_capacity(bundles.len());
        for (bundle, jobs) in bundles.iter().zip(jobs) {
            match self.run_bundle_in(&mut tx, bundle, jobs).await? {
                Ok(Some(one)) => ran.push(one),
                // Another worker took this one over: alone, each finds out what is its own.
                Ok(None) => return Ok(Err(Stopped::Failed)),
                Err(stopped) => return Ok(Err(stopped)),
            }
        }
        tx.commit().await?;
        Ok(Ok(ran))
    }

    /// Makes the working tables of the unit's services that `conn`'s session lacks.
    async fn prepare_tables(
        &self,
        conn: &mut PgConnection,
        jobs: impl IntoIterator<Item = &Claimed>,
    ) -> anyhow::Result<()> {
        let mut prepared: Vec<&str> = Vec::new();
        for job in jobs {
            if !prepared.contains(&job.service.as_str()) {
                catalog::prepare(conn, self.service_of(job)?).await?;
                prepared.push(&job.service);
            }
        }
        Ok(())
    }

    /// One run of a unit in one transaction on `conn`, as `run` says. [`Run::Guarded`]: each
    /// action in a savepoint of its own, where a failure is the failing job's alone (recorded,
    /// with what the action counted before it failed), and the finalization in one, where a
    /// failure leaves the finalize job queued for any worker. [`Run::Unguarded`] and
    /// [`Run::Bundle`]: an action or a finalization that fails ends the run with [`Stopped`],
    /// its transaction rolled back; a bundle's jobs are written completed and its request
    /// finalized in the same transaction (see [`Worker::process_bundle`]).
    async fn run_unit<'j>(
        &self,
        conn: &mut PgConnection,
        jobs: &'j [Claimed],
        run: Run<'j>,
    ) -> anyhow::Result<Result<Ran<'j>, Stopped>> {
        let guarded = matches!(run, Run::Guarded);
        let mut tx = Worker::begin_on(conn).await?;
        if let Run::Bundle(bundle) = run {
            return Ok(match self.run_bundle_in(&mut tx, bundle, jobs).await? {
                Ok(Some(ran)) => {
                    tx.commit().await?;
                    Ok(ran)
                }
                // Another worker took the bundle over: nothing of this run may stay.
                Ok(None) => Ok(Ran {
                    completed: Vec::new(),
                    finalized: None,
                }),
                Err(stopped) => Err(stopped),
            });
        }
        let request_id = jobs[0].request_id;
        let (mut finished, mut searched) = (false, false);
        let mut done = Vec::with_capacity(jobs.len());
        for job in jobs {
            let started = std::time::Instant::now();
            match self.act(&mut tx, job, guarded).await {
                Ok(outcome) => done.push((job, outcome, started.elapsed())),
                Err(e) if !guarded => return Ok(Err(stopped(job, &e))),
                Err(e) => {
                    let matched = e.downcast_ref::<ExecuteError>().and_then(|e| e.matched());
                    if let Some(matched) = matched {
                        searched |= queue::searched(&mut tx, job.id, &self.id, matched).await?;
                    }
                    finished |= self.fail_job(&mut tx, job, &e).await?;
                }
            }
        }
        let mut completed = Vec::new();
        if !done.is_empty() {
            let outcomes: Vec<(Uuid, &Outcome)> = done.iter().map(|(j, o, _)| (j.id, o)).collect();
            completed = queue::complete_all(&mut tx, Some(&self.id), &outcomes).await?;
            finished |= !completed.is_empty();
            // The exports are in the jobs' rows now, where the finalization reads them: the
            // memory of the largest ones is not held twice while it builds the archive.
            for (_, outcome, _) in &mut done {
                outcome.export = None;
            }
        }
        let mut finalized = None;
        if finished && guarded {
            if queue::after_service_job(&mut tx, request_id).await? {
                finalized = self.finalize_now(&mut tx, request_id).await;
            }
        } else if finished {
            // A failure undoes the whole run, the finalize job's taking included.
            let taken =
                queue::take_finalize_after(&mut tx, request_id, &self.id, self.lease()).await?;
            if let Some(job) = taken {
                match self.finalize_taken(&mut tx, job, None).await {
                    Ok(done) => finalized = Some(done),
                    Err(e) => {
                        tracing::debug!(
                            %request_id, error = %format!("{e:#}"),
                            "the finalization failed; the unit runs again, guarded"
                        );
                        return Ok(Err(Stopped::Failed));
                    }
                }
            }
        } else if searched {
            queue::refresh_status(&mut tx, request_id).await?;
        }
        tx.commit().await?;
        let completed = done
            .into_iter()
            .filter(|(j, _, _)| completed.contains(&j.id))
            .map(|(j, _, took)| (j, took))
            .collect();
        Ok(Ok(Ran {
            completed,
            finalized,
        }))
    }

    /// One run of a bundle in `tx` (see [`Run::Bundle`]): its services' jobs `jobs` (made by
    /// [`queue::bundle_jobs`]), unguarded, then the bundle's row replaced by theirs, completed,
    /// and its request finalized. `Ok(None)`: another worker took the bundle over, and nothing
    /// of this run may stay (the caller rolls back).
    async fn run_bundle_in<'j>(
        &self,
        tx: &mut PgConnection,
        bundle: &'j Claimed,
        jobs: &'j [Claimed],
    ) -> anyhow::Result<Result<Option<Ran<'j>>, Stopped>> {
        let mut done = Vec::with_capacity(jobs.len());
        for job in jobs {
            let started = std::time::Instant::now();
            match self.act(tx, job, false).await {
                Ok(outcome) => done.push((job, outcome, started.elapsed())),
                Err(e) => return Ok(Err(stopped(job, &e))),
            }
        }
        // What the jobs did goes to the finalization in memory, the exports too: the jobs'
        // rows, which it would otherwise read back, are written without the exports.
        let results: Vec<finalize::JobResult> = done
            .iter_mut()
            .map(|(j, o, _)| finalize::JobResult::completed(&j.service, j.attempts, o))
            .collect();
        let outcomes: Vec<(&Claimed, &Outcome)> = done.iter().map(|(j, o, _)| (*j, o)).collect();
        if !queue::complete_bundle(tx, bundle, &self.id, &outcomes).await? {
            return Ok(Ok(None));
        }
        let finalized = match self.finalize_taken(tx, bundle.clone(), Some(results)).await {
            Ok(finalized) => finalized,
            Err(e) => {
                tracing::debug!(
                    request_id = %bundle.request_id, error = %format!("{e:#}"),
                    "a bundle's finalization failed; it runs again as its services' jobs"
                );
                return Ok(Err(Stopped::Failed));
            }
        };
        Ok(Ok(Some(Ran {
            completed: done.into_iter().map(|(j, _, took)| (j, took)).collect(),
            finalized: Some(finalized),
        })))
    }

    /// When a unit finished its request's last service job, the request is finalized in the
    /// unit's transaction (saving a claim and a transaction), in a savepoint: should that fail,
    /// the finalize job stays queued for any worker, with its attempts and retries. Returns the
    /// finalize job it ran and how long it took.
    async fn finalize_now(
        &self,
        tx: &mut PgConnection,
        request_id: Uuid,
    ) -> Option<(Claimed, std::time::Duration)> {
        let result: anyhow::Result<_> = async {
            let mut savepoint = tx.begin().await?;
            let finalized = self.finalize_in(&mut savepoint, request_id).await?;
            savepoint.commit().await?;
            Ok(finalized)
        }
        .await;
        result.unwrap_or_else(|e| {
            tracing::warn!(
                %request_id, error = %format!("{e:#}"),
                "finalizing with the last service jobs failed; the finalize job stays queued"
            );
            None
        })
    }

    /// Takes the request's finalize job, when it is ready, and finalizes the request in `tx`
    /// (see [`Worker::finalize_taken`]).
    async fn finalize_in(
        &self,
        tx: &mut PgConnection,
        request_id: Uuid,
    ) -> anyhow::Result<Option<(Claimed, std::time::Duration)>> {
        match queue::take_finalize(tx, request_id, &self.id, self.lease()).await? {
            Some(job) => Ok(Some(self.finalize_taken(tx, job, None).await?)),
            None => Ok(None),
        }
    }

    /// Finalizes the request of `job`, a finalize job this worker took or a bundle whose row
    /// [`queue::complete_bundle`] has replaced, in `tx`, with its service jobs' results when the
    /// caller has them (see [`finalize::finish`]). Returns the job and how long it took; on
    /// `Err` the caller undoes what was done here.
    async fn finalize_taken(
        &self,
        tx: &mut PgConnection,
        job: Claimed,
        known: Option<Vec<finalize::JobResult>>,
    ) -> anyhow::Result<(Claimed, std::time::Duration)> {
        let started = std::time::Instant::now();
        anyhow::ensure!(
            finalize::finish(self, tx, &job, known).await?,
            "another worker took the finalize job over"
        );
        Ok((job, started.elapsed()))
    }

    /// Carries out a job's action on its service's tables in `conn`'s database; `guarded`, in a
    /// savepoint of its own (see [`catalog::execute`] and [`catalog::execute_unguarded`]).
    async fn act(
        &self,
        conn: &mut PgConnection,
        job: &Claimed,
        guarded: bool,
    ) -> anyhow::Result<Outcome> {
        let service = self.service_of(job)?;
        let work = &job.work;
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
        let (key, terms) = (self.key.bytes(), &work.terms.0);
        Ok(match guarded {
            true => catalog::execute(conn, service, work.org_id, terms, action, key).await?,
            false => {
                catalog::execute_unguarded(conn, service, work.org_id, terms, action, key).await?
            }
        })
    }

    /// A service of tables in an external database: the job searches first (counting what it
    /// will touch, recorded at once), then acts. The service's transaction commits first and
    /// the bookkeeping right after; should the second fail, the job runs again and finds the
    /// rows already erased or rewritten.
    async fn run_on_external_tables(
        &self,
        job: &Claimed,
        work: &RequestWork,
        service: &Service,
        data_pool: PgPool,
    ) -> anyhow::Result<()> {
        if job.phase == "search" {
            let mut data = data_pool.begin().await?;
            let found = catalog::execute(
                &mut data,
                service,
                work.org_id,
                &work.terms.0,
                Action::Summarize,
                self.key.bytes(),
            )
            .await?;
            data.rollback().await?;
            let mut own = self.begin().await?;
            if !queue::searched(&mut own, job.id, &self.id, found.matched).await? {
                return Ok(());
            }
            queue::refresh_status(&mut own, job.request_id).await?;
            own.commit().await?;
        }
        let mut data = data_pool.begin().await?;
        let outcome = self.act(&mut data, job, true).await?;
        let mut own = self.begin().await?;
        if !queue::complete(&mut own, job.id, Some(&self.id), &outcome).await? {
            data.rollback().await?;
            return Ok(());
        }
        queue::after_service_job(&mut own, job.request_id).await?;
        data.commit().await?;
        own.commit().await?;
        Ok(())
    }

    /// An HTTP service: one signed call per attempt. 200 carries the result; 202 means the
    /// service works on and calls back; other answers are failures (4xx at once, the rest
    /// after retries).
    async fn run_over_http(
        &self,
        job: &Claimed,
        work: &RequestWork,
        service: &Service,
        endpoint: &HttpEndpoint,
    ) -> anyhow::Result<()> {
        let message = JobMessage::new(job, work, service, endpoint, self.callback_url(job.id));
        let delivered = self
            .outbound
            .post_signed(
                &endpoint.url,
                job.id,
                &endpoint.secrets,
                &message,
                endpoint.timeout,
            )
            .await;
        let answer = match delivered {
            Ok(answer) => answer,
            Err(CallError::Url(refused)) => {
                return Err(Permanent(format!("service URL refused: {refused}")).into());
            }
            Err(e) => anyhow::bail!("calling the service failed: {e}"),
        };
        // The service may quote the subject in what it answers; job errors and logs must not.
        let redact = |reason: String| work.terms.0.redact(&reason);
        match answer.status {
            200 => {
                let outcome = JobResult::parse(&answer.body).map_err(|e| Permanent(redact(e)))?;
                let mut tx = self.begin().await?;
                if queue::complete(&mut tx, job.id, Some(&self.id), &outcome).await? {
                    queue::after_service_job(&mut tx, job.request_id).await?;
                    tx.commit().await?;
                }
                Ok(())
            }
            202 => {
                let mut tx = self.begin().await?;
                if queue::await_callback(&mut tx, job.id, &self.id, endpoint.callback_timeout)
                    .await?
                {
                    queue::refresh_status(&mut tx, job.request_id).await?;
                    tx.commit().await?;
                }
                Ok(())
            }
            status => {
                let reason = redact(format!(
                    "the service answered {status}: {}",
                    outbound::excerpt(&answer.body)
                ));
                // A client error will not go away by itself; 408 and 429 do.
                if (400..500).contains(&status) && status != 408 && status != 429 {
                    Err(Permanent(reason).into())
                } else {
                    Err(anyhow::anyhow!(reason))
                }
            }
        }
    }

    /// Where an HTTP service posts a job's result when it answered 202.
    fn callback_url(&self, job_id: Uuid) -> Option<String> {
        self.settings.callback_base_url.as_deref().map(|base| {
            format!(
                "{}/api/v2/gdpr/callbacks/jobs/{job_id}",
                base.trim_end_matches('/')
            )
        })
    }
}

/// What gdprd POSTs to an HTTP data service for each job.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMessage {
    /// Always `gdpr.job`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The same on every retry of the job: a receiver that has seen it may answer again
    /// without doing the work twice.
    pub job_id: Uuid,
    pub request_id: Uuid,
    pub organization_id: Uuid,
    pub request_type: String,
    pub service: String,
    /// `summarize`, `export`, `update`, `delete` or `anonymize`.
    pub action: String,
    pub attempt: i32,
    /// Every identifier of the subject the service knows the type of.
    pub identifiers: Vec<Identifier>,
    /// For `update`: the rewrites to make.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replacement_terms: Vec<ReplacementMessage>,
    /// Where to POST the result after answering 202 (absent when gdprd has no public URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// When gdprd stops waiting for that callback and sends the job again.
    pub callback_deadline: DateTime<Utc>,
}

/// One identifier of the subject.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: TermKind,
    /// Normalized: e-mail addresses lower-cased, phone numbers in E.164, names folded.
    pub value: String,
    /// Every spelling it was given in (for searching free text).
    pub spellings: Vec<String>,
    /// A name or an address: when the message carries any identifier that is not weak, match
    /// rows on those only (a namesake's rows must not be touched) and use weak ones for
    /// redacting free text.
    pub weak: bool,
}

impl std::fmt::Debug for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identifier({}, <redacted>)", self.kind)
    }
}

/// One rewrite of a `GDPR_UPDATE`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplacementMessage {
    #[serde(rename = "type")]
    pub kind: TermKind,
    pub existing_value: String,
    pub updated_value: String,
}

impl std::fmt::Debug for ReplacementMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplacementMessage({}, <redacted>)", self.kind)
    }
}

impl JobMessage {
    fn new(
        job: &Claimed,
        work: &RequestWork,
        service: &Service,
        endpoint: &HttpEndpoint,
        callback_url: Option<String>,
    ) -> JobMessage {
        let identifiers = work
            .terms
            .0
            .0
            .iter()
            .filter(|t| endpoint.knows(t.kind))
            .map(|t| Identifier {
                kind: t.kind,
                value: t.value.clone(),
                spellings: t.raw.clone(),
                weak: t.kind.is_weak(),
            })
            .collect();
        let replacement_terms = work
            .replacement_terms
            .iter()
            .flat_map(|r| r.0.parsed.iter())
            .filter(|r| endpoint.knows(r.kind))
            .map(|r| ReplacementMessage {
                kind: r.kind,
                existing_value: r.existing.clone(),
                updated_value: r.updated.clone(),
            })
            .collect();
        let deadline = chrono::Duration::from_std(endpoint.callback_timeout)
            .unwrap_or(chrono::Duration::hours(1));
        JobMessage {
            kind: "gdpr.job",
            job_id: job.id,
            request_id: job.request_id,
            organization_id: work.org_id,
            request_type: work.request_type.clone(),
            service: service.name.clone(),
            action: job.action.clone(),
            attempt: job.attempts,
            identifiers,
            replacement_terms,
            callback_url,
            callback_deadline: Utc::now() + deadline,
        }
    }
}

/// What an HTTP data service answers (200) or calls back with: what it found and did, or why
/// it could not.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobResult {
    /// The subject's records the service holds (before acting).
    #[serde(default)]
    pub matched: i64,
    #[serde(default)]
    pub deleted: i64,
    #[serde(default)]
    pub anonymized: i64,
    #[serde(default)]
    pub updated: i64,
    /// Records kept by erasure, with the reason given to the subject.
    #[serde(default)]
    pub retained: i64,
    pub retained_reason: Option<String>,
    /// For `export`: `{ "<record type>": [ { field: value, … }, … ], … }`.
    pub export: Option<serde_json::Map<String, serde_json::Value>>,
    /// Set (and nothing else) when the service could not do the job: the job fails with it.
    pub error: Option<String>,
}

impl JobResult {
    /// Reads a result; `Err` says what is wrong with it, in words for the job's error.
    pub fn parse(body: &[u8]) -> Result<Outcome, String> {
        let result: JobResult = crate::wire::parse_json(body).map_err(|e| {
            format!(
                "the service's answer is not a job result ({}); see the README's HTTP data \
                 services contract",
                e.without_values()
            )
        })?;
        result.into_outcome()
    }

    pub fn into_outcome(self) -> Result<Outcome, String> {
        if let Some(error) = self.error {
            let error = error.trim();
            let error = if error.is_empty() {
                "(no reason given)"
            } else {
                error
            };
            return Err(format!(
                "the service could not do the job: {}",
                outbound::excerpt(error.as_bytes())
            ));
        }
        let counts = [
            self.matched,
            self.deleted,
            self.anonymized,
            self.updated,
            self.retained,
        ];
        if counts.iter().any(|c| *c < 0) {
            return Err("the service's answer has a negative count".into());
        }
        if let Some(export) = &self.export {
            for (name, rows) in export {
                let valid = rows
                    .as_array()
                    .is_some_and(|rows| rows.iter().all(serde_json::Value::is_object));
                if !valid {
                    return Err(format!(
                        "the service's export {name:?} is not a list of objects"
                    ));
                }
            }
        }
        let export = self
            .export
            .map(|export| serde_json::value::to_raw_value(&export))
            .transpose()
            .map_err(|e| format!("the service's export cannot be kept ({e})"))?;
        Ok(Outcome {
            matched: self.matched,
            deleted: self.deleted,
            anonymized: self.anonymized,
            updated: self.updated,
            retained: self.retained,
            retained_reason: self.retained_reason.filter(|r| !r.trim().is_empty()),
            export,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_job_result_names_its_field_never_its_value() {
        let err = JobResult::parse(br#"{"matched": "ana@example.com"}"#).unwrap_err();
        assert!(err.contains("matched: a value of the wrong type"), "{err}");
        assert!(!err.contains("ana@example.com"), "{err}");
        let err =
            JobResult::parse(br#"{"export": {"contacts": ["ana@example.com"]}}"#).unwrap_err();
        assert!(!err.contains("ana@example.com"), "{err}");
        let err = JobResult::parse(br#"{"matched": 1, "erased": 1}"#).unwrap_err();
        assert!(err.contains("unknown field `erased`"), "{err}");
        let err = JobResult::parse(b"{\"matched\": 1").unwrap_err();
        assert!(err.contains("not valid JSON"), "{err}");
    }
}
