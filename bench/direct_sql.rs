//! The request pipeline's SQL run directly, the baseline `bench/run.sh` compares the pipeline
//! with: for the same mix of people and requests as `bench/pipeline.rs`, the statements a
//! worker runs for a request's jobs on gdprd's own tables (`catalog::execute` for each service,
//! in the worker's order, in one transaction that commits as the worker's do), with none of the
//! rest: no API call, no queue, no job bookkeeping, no finalization (index clean-up, masking,
//! archive). Concurrency as the worker's.
//!
//! ```sh
//! cargo build --release --example direct_sql
//! DATABASE_URL=... target/release/examples/direct_sql EMAILS_FILE --batch 100 --erasures 100 --singles 20
//! ```
//!
//! EMAILS_FILE holds one email address per line, each of a distinct person (`bench/run.sh`
//! gives it the pipeline's own people, in a copy of the database taken before the pipeline
//! erased them, so that both do the same work on the same data). With `--warmup W`, the first W are erased and the next W
//! exported, unmeasured (the pool's connections prepare their statements), as the pipeline's
//! warm-up does. Then the next BATCH are erased, the next BATCH exported, all at once with
//! `--concurrency` requests in flight (the mixed batch); the next ERASURES are erased the same
//! way (a batch of erasures alone); the next SINGLES are erased one after another, each timed.
//! Prints one JSON object. The erasures are real: run it on a benchmark database.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use gdprd::catalog::{self, Action, Catalog, Location, Outcome};
use gdprd::config::GlobalArgs;
use gdprd::db;
use gdprd::index::{Normalizer, SearchType};
use gdprd::requests::terms::{TermKind, Terms};
use gdprd::secrets::ServerKey;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

mod activity;
use activity::Activity;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    global: GlobalArgs,
    /// One email address per line, each of a distinct person.
    emails: PathBuf,
    /// Erasures in the batch, and as many exports.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Erasures, and as many exports, of an unmeasured warm-up batch.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Erasures of a batch of erasures alone, after the mixed batch.
    #[arg(long, default_value_t = 0)]
    erasures: usize,
    /// Single erasures timed one after another.
    #[arg(long, default_value_t = 20)]
    singles: usize,
    /// Requests in flight at once (the worker's GDPRD_WORKER_CONCURRENCY).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

/// What the runs share.
struct Bench {
    pool: PgPool,
    catalog: Catalog,
    /// The catalog's services on gdprd's own tables, in the order a worker runs them.
    services: Vec<usize>,
    org_id: Uuid,
    key: ServerKey,
}

#[derive(Default)]
struct Totals {
    requests: usize,
    matched: i64,
    erased: i64,
    export_bytes: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = db::connect(&args.global).await?;
    let catalog = Catalog::load(&args.global.catalog)?;
    let normalizer = Normalizer::new(&args.global.default_region)?;
    let org_id: Uuid = sqlx::query_scalar("SELECT id FROM organizations ORDER BY id LIMIT 1")
        .fetch_one(&pool)
        .await
        .context("the database has no organization: seed it first")?;
    let mut services: Vec<usize> = (0..catalog.services.len())
        .filter(|&i| matches!(catalog.services[i].location, Location::Local))
        .collect();
    services.sort_by(|&a, &b| catalog.services[a].name.cmp(&catalog.services[b].name));
    let bench = Arc::new(Bench {
        key: ServerKey::load_or_create(&pool).await?,
        pool,
        catalog,
        services,
        org_id,
    });

    let text = std::fs::read_to_string(&args.emails)
        .with_context(|| format!("cannot read {}", args.emails.display()))?;
    let subjects = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|raw| {
            let email = normalizer.normalize(SearchType::Email, raw)?;
            let mut terms = Terms::default();
            terms.add(TermKind::Email, email.into_string(), raw);
            Ok(terms)
        })
        .collect::<anyhow::Result<Vec<Terms>>>()?;
    let (warmup, batch, erasures, singles) = (args.warmup, args.batch, args.erasures, args.singles);
    let needed = 2 * warmup + 2 * batch + erasures + singles;
    anyhow::ensure!(
        subjects.len() >= needed,
        "{} holds {} addresses; {needed} are needed",
        args.emails.display(),
        subjects.len(),
    );
    let (warm, subjects) = subjects.split_at(2 * warmup);

    for outcome in bench.batch(warm, warmup, args.concurrency).await {
        outcome?;
    }
    let mut result = serde_json::Map::new();
    result.insert("services".into(), json!(bench.services.len()));
    result.insert("concurrency".into(), json!(args.concurrency));
    let (mixed, subjects) = subjects.split_at(2 * batch);
    bench
        .measure(mixed, batch, args.concurrency, "batch", &mut result)
        .await?;
    let (erased, subjects) = subjects.split_at(erasures);
    if !erased.is_empty() {
        bench
            .measure(erased, erasures, args.concurrency, "erasures", &mut result)
            .await?;
    }

    let mut single_ms = Vec::with_capacity(singles);
    for terms in &subjects[..singles] {
        let started = Instant::now();
        bench.request(Action::Erase, terms).await?;
        single_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    single_ms.sort_by(f64::total_cmp);
    result.insert("single_n".into(), json!(single_ms.len()));
    result.insert("single_p50_ms".into(), json!(percentile(&single_ms, 50.0)));
    result.insert("single_p99_ms".into(), json!(percentile(&single_ms, 99.0)));
    println!("{}", serde_json::Value::Object(result));
    Ok(())
}

impl Bench {
    /// Runs `subjects` at once, `concurrency` at a time, and records the figures under keys that
    /// start with `phase`; the first `erased` are erased, the rest exported.
    async fn measure(
        self: &Arc<Self>,
        subjects: &[Terms],
        erased: usize,
        concurrency: usize,
        phase: &str,
        result: &mut serde_json::Map<String, serde_json::Value>,
    ) -> anyhow::Result<()> {
        let before = settled_activity(&self.pool).await?;
        let started = Instant::now();
        let outcomes = self.batch(subjects, erased, concurrency).await;
        let seconds = started.elapsed().as_secs_f64();
        let after = settled_activity(&self.pool).await?;
        let mut totals = Totals::default();
        for outcome in outcomes {
            totals.add(&outcome?);
        }
        let mut put = |key: &str, value| result.insert(format!("{phase}_{key}"), value);
        put("requests", json!(totals.requests));
        put("s", json!(seconds));
        put("per_s", json!(totals.requests as f64 / seconds));
        put("matched_rows", json!(totals.matched));
        put("erased_rows", json!(totals.erased));
        put("export_bytes", json!(totals.export_bytes));
        before.record(&after, totals.requests, phase, result);
        Ok(())
    }

    /// Erases the first `erased` of `subjects` and exports the rest, `concurrency` at a time.
    async fn batch(
        self: &Arc<Self>,
        subjects: &[Terms],
        erased: usize,
        concurrency: usize,
    ) -> Vec<anyhow::Result<Vec<Outcome>>> {
        futures::stream::iter(subjects.iter().enumerate())
            .map(|(i, terms)| {
                let bench = self.clone();
                let action = if i < erased {
                    Action::Erase
                } else {
                    Action::Export
                };
                async move { bench.request(action, terms).await }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await
    }

    /// One request's service actions, in one transaction that commits as a worker's does.
    async fn request(&self, action: Action<'_>, terms: &Terms) -> anyhow::Result<Vec<Outcome>> {
        let mut tx = self
            .pool
            .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
            .await?;
        let mut outcomes = Vec::with_capacity(self.services.len());
        for &i in &self.services {
            let outcome = catalog::execute(
                &mut tx,
                &self.catalog.services[i],
                self.org_id,
                terms,
                action,
                self.key.bytes(),
            )
            .await?;
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

impl Totals {
    fn add(&mut self, outcomes: &[Outcome]) {
        self.requests += 1;
        for o in outcomes {
            self.matched += o.matched;
            self.erased += o.deleted + o.anonymized;
            self.export_bytes += o.export.as_ref().map_or(0, |e| e.get().len());
        }
    }
}

/// PostgreSQL's counters once every connection has flushed its statistics: a connection that
/// goes idle within a second of its last flush flushes again only after 10 seconds of idleness.
async fn settled_activity(pool: &PgPool) -> sqlx::Result<Activity> {
    tokio::time::sleep(Duration::from_secs(11)).await;
    Activity::read(pool).await
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let k = ((p / 100.0 * last as f64).round() as usize).min(last);
    Some(sorted[k])
}
