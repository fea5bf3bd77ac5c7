//! The request pipeline's load client, which `bench/run.sh` builds and runs: a batch of
//! GDPR_DELETE and GDPR_EXPORT requests submitted at once over the API, timed until all are
//! COMPLETED, then a batch of erasures alone timed the same way, then single erasures timed from
//! submit to COMPLETED.
//!
//! ```sh
//! cargo build --release --example pipeline
//! DATABASE_URL=... target/release/examples/pipeline BASE_URL TOKEN EMAILS_FILE \
//!     --batch 100 --erasures 100 --singles 20 --warmup 20 --timeout 120
//! ```
//!
//! EMAILS_FILE holds one email address per line, each of a distinct person. With `--warmup W`,
//! the first W go to erasures and the next W to exports of an unmeasured warm-up batch (a
//! server just started has yet to prepare the pipeline's statements on its connections, as the
//! search load's warm-up does for searches), after which the queue tables are analyzed, as
//! autovacuum would have done in a running service. Then the next BATCH go to erasures, the next BATCH
//! to exports (the mixed batch), the next ERASURES to a batch of erasures alone, the next SINGLES
//! to the sequential erasures.
//!
//! The client is meant to take as little of the machine as it can, since it shares the cores
//! with gdprd and PostgreSQL: HTTP connections are kept alive (32 at most, as many submits in
//! flight), and completion of a batch is read from the database (`DATABASE_URL`) on one
//! connection every 50 ms, so that polling does not load the API. A single erasure is polled
//! through the API every 10 ms, as a user of the API would see it. Prints one JSON object.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use uuid::Uuid;

mod activity;
use activity::Activity;

#[derive(Parser)]
struct Args {
    /// The server, e.g. http://127.0.0.1:8080.
    base_url: String,
    /// A bearer token allowed to add and view requests (it may begin with a hyphen).
    #[arg(allow_hyphen_values = true)]
    token: String,
    /// One email address per line, each of a distinct person.
    emails: PathBuf,
    /// Erasures in the batch, and as many exports.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Erasures of a batch of erasures alone, after the mixed batch.
    #[arg(long, default_value_t = 0)]
    erasures: usize,
    /// Single erasures timed one after another.
    #[arg(long, default_value_t = 20)]
    singles: usize,
    /// Seconds to wait for a batch to complete.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Erasures, and as many exports, of an unmeasured warm-up batch.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
}

/// Submits in flight at once, and HTTP connections kept.
const IN_FLIGHT: usize = 32;

/// A connection that goes idle within a second of its last statistics flush flushes again only
/// after 10 seconds of idleness: PostgreSQL's figures are read once every connection's are in.
const STATS_FLUSH: Duration = Duration::from_secs(11);

#[derive(Clone, Copy)]
enum Kind {
    Delete,
    Export,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    db: PgPool,
}

impl Client {
    /// Submits one request; returns the HTTP status and the id of the request it created.
    async fn submit(&self, kind: Kind, email: &str) -> (u16, Option<Uuid>) {
        let (path, request_type) = match kind {
            Kind::Delete => ("/api/v2/gdpr/requests?deleteConfirmed=true", "GDPR_DELETE"),
            Kind::Export => ("/api/v2/gdpr/requests", "GDPR_EXPORT"),
        };
        let body = json!({"requestType": request_type, "subject": {"emailAddresses": [email]}});
        let sent = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await;
        let Ok(response) = sent else {
            return (0, None);
        };
        let status = response.status().as_u16();
        let id = match response.json::<Value>().await {
            Ok(body) => body["id"].as_str().and_then(|id| id.parse().ok()),
            Err(_) => None,
        };
        (status, id)
    }

    /// Submits `work` with [`IN_FLIGHT`] at once; returns the ids accepted and every status.
    async fn batch(&self, work: &[(Kind, &str)]) -> (Vec<Uuid>, Vec<u16>) {
        let submitted: Vec<(u16, Option<Uuid>)> = futures::stream::iter(work)
            .map(|(kind, email)| self.submit(*kind, email))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let ids = submitted
            .iter()
            .filter(|(status, _)| matches!(status, 200 | 202))
            .filter_map(|(_, id)| *id)
            .collect();
        (ids, submitted.into_iter().map(|(s, _)| s).collect())
    }

    /// How many of `ids` are COMPLETED or ERROR, and how many ERROR.
    async fn finished(&self, ids: &[Uuid]) -> anyhow::Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT count(*) FILTER (WHERE status IN ('COMPLETED', 'ERROR')),
                    count(*) FILTER (WHERE status = 'ERROR')
               FROM gdpr_requests WHERE id = ANY($1)",
        )
        .bind(ids)
        .fetch_one(&self.db)
        .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// Waits until every one of `ids` is COMPLETED or ERROR, or `timeout` has passed since
    /// `start`. Returns the last count of finished and failed requests.
    async fn wait(&self, ids: &[Uuid], start: Instant, timeout: f64) -> anyhow::Result<(i64, i64)> {
        loop {
            let (done, errors) = self.finished(ids).await?;
            if done >= ids.len() as i64 || start.elapsed().as_secs_f64() > timeout {
                return Ok((done, errors));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Submits `work` at once and times it until every request is COMPLETED or ERROR; records
    /// the figures under keys that start with `phase`.
    async fn measure(
        &self,
        work: &[(Kind, &str)],
        timeout: f64,
        phase: &str,
        result: &mut serde_json::Map<String, Value>,
    ) -> anyhow::Result<()> {
        let before = Activity::read(&self.db).await?;
        let start = Instant::now();
        let (ids, statuses) = self.batch(work).await;
        let submit_s = start.elapsed().as_secs_f64();
        let (done, errors) = self.wait(&ids, start, timeout).await?;
        let elapsed = start.elapsed().as_secs_f64();
        tokio::time::sleep(STATS_FLUSH).await;
        let after = Activity::read(&self.db).await?;
        let mut rejected: Vec<u16> = statuses
            .into_iter()
            .filter(|s| !matches!(s, 200 | 202))
            .collect();
        rejected.sort_unstable();
        rejected.dedup();
        let span: Option<f64> = sqlx::query_scalar(
            "SELECT extract(epoch FROM max(completed_at) - min(created_at))::float8
               FROM gdpr_requests WHERE id = ANY($1)",
        )
        .bind(&ids)
        .fetch_one(&self.db)
        .await?;
        let jobs: i64 =
            sqlx::query_scalar("SELECT count(*) FROM gdpr_jobs WHERE request_id = ANY($1)")
                .bind(&ids)
                .fetch_one(&self.db)
                .await?;
        let mut put = |key: &str, value: Value| result.insert(format!("{phase}_{key}"), value);
        put("requests", json!(work.len()));
        put("accepted", json!(ids.len()));
        put("rejected_statuses", json!(rejected));
        put("submit_s", json!(submit_s));
        put("wall_s", json!(elapsed));
        put("done", json!(done));
        put("errors", json!(errors));
        put("timed_out", json!(done < ids.len() as i64));
        put("db_span_s", json!(span));
        put(
            "completed_per_s",
            json!((elapsed > 0.0).then(|| done as f64 / elapsed)),
        );
        put("jobs", json!(jobs));
        before.record(&after, done as usize, phase, result);
        Ok(())
    }

    /// Polls a request through the API every 10 ms until it is COMPLETED or ERROR (or 30 s
    /// passed).
    async fn wait_one(&self, id: Uuid, start: Instant) -> anyhow::Result<()> {
        let url = format!("{}/api/v2/gdpr/requests/{id}", self.base);
        loop {
            let body: Value = self
                .http
                .get(&url)
                .bearer_auth(&self.token)
                .send()
                .await?
                .json()
                .await?;
            let status = body["status"].as_str().unwrap_or_default();
            if matches!(status, "COMPLETED" | "ERROR") || start.elapsed().as_secs() >= 30 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The first `n` of `people` to erasures, the next `n` to exports.
fn mix<'a>(people: &[&'a str], n: usize) -> Vec<(Kind, &'a str)> {
    let (erased, exported) = people.split_at(n);
    let erasures = erased.iter().map(|e| (Kind::Delete, *e));
    erasures
        .chain(exported[..n].iter().map(|e| (Kind::Export, *e)))
        .collect()
}

fn percentile(xs: &[f64], p: f64) -> Option<f64> {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    let last = xs.len().checked_sub(1)?;
    let k = ((p / 100.0 * last as f64).round() as usize).min(last);
    Some(xs[k])
}

fn main() -> anyhow::Result<()> {
    // Threads named apart from the server's (tokio's default name), so that a profile of the
    // whole machine (bench/profile.sh) tells the load client from gdprd.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-pipeline")
        .build()?
        .block_on(run(Args::parse()))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.emails)
        .with_context(|| format!("cannot read {}", args.emails.display()))?;
    let emails: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let needed = 2 * args.warmup + 2 * args.batch + args.erasures + args.singles;
    anyhow::ensure!(
        emails.len() >= needed,
        "{} holds {} addresses; this run needs {needed}",
        args.emails.display(),
        emails.len()
    );
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let options: PgConnectOptions = url.parse()?;
    let db = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    // Plain HTTP on the loopback; reqwest still wants a TLS provider chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .timeout(Duration::from_secs(30))
        .build()?;
    let client = Client {
        http,
        base: args.base_url.trim_end_matches('/').to_owned(),
        token: args.token.clone(),
        db,
    };
    let (warm, emails) = emails.split_at(2 * args.warmup);

    let mut result = serde_json::Map::new();
    result.insert("warmup_requests".into(), json!(warm.len()));
    if !warm.is_empty() {
        let (ids, _) = client.batch(&mix(warm, args.warmup)).await;
        client.wait(&ids, Instant::now(), args.timeout).await?;
        // The database is new: the worker planned its statements (once per connection) while
        // the job queue held nothing, and a plan made then reads the whole queue table once it
        // has grown. A running service has had its queue tables analyzed by autovacuum, which
        // also has such plans made again; this does the same before the measured batch.
        sqlx::query("ANALYZE gdpr_jobs, gdpr_requests")
            .execute(&client.db)
            .await?;
        tokio::time::sleep(STATS_FLUSH).await;
    }

    let (mixed, emails) = emails.split_at(2 * args.batch);
    client
        .measure(&mix(mixed, args.batch), args.timeout, "batch", &mut result)
        .await?;
    let (erased, emails) = emails.split_at(args.erasures);
    if !erased.is_empty() {
        let work: Vec<(Kind, &str)> = erased.iter().map(|e| (Kind::Delete, *e)).collect();
        client
            .measure(&work, args.timeout, "erasures", &mut result)
            .await?;
    }

    let before = Activity::read(&client.db).await?;
    let (mut latencies, mut server_ms) = (Vec::new(), Vec::new());
    for email in &emails[..args.singles] {
        let start = Instant::now();
        let (_, Some(id)) = client.submit(Kind::Delete, email).await else {
            continue;
        };
        client.wait_one(id, start).await?;
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        let server: Option<f64> = sqlx::query_scalar(
            "SELECT (extract(epoch FROM completed_at - created_at) * 1000)::float8
               FROM gdpr_requests WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&client.db)
        .await?;
        server_ms.push(server.unwrap_or(f64::NAN));
    }
    tokio::time::sleep(STATS_FLUSH).await;
    let after = Activity::read(&client.db).await?;
    result.insert("single_n".into(), json!(latencies.len()));
    result.insert("single_p50_ms".into(), json!(percentile(&latencies, 50.0)));
    result.insert("single_p99_ms".into(), json!(percentile(&latencies, 99.0)));
    result.insert(
        "single_server_p50_ms".into(),
        json!(percentile(&server_ms, 50.0)),
    );
    before.record(&after, latencies.len(), "single", &mut result);
    println!("{}", Value::Object(result));
    Ok(())
}
