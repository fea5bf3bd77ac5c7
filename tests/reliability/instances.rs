//! Several instances on one database: `gdprd serve --no-worker` processes taking requests and
//! `gdprd worker` processes running them. No job is claimed twice or runs twice, every request
//! completes; and rate limits, being per instance, multiply with the instances (the README says
//! so; this is the figure behind it).

use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use crate::crash::env_number;
use crate::helpers::{ALL_PERMISSIONS, seed};
use crate::support::{
    Gdprd, all_finished, audit, batch, database_url, install_audit, people, submit, token_at,
};

/// Reads per minute and client allowed by each instance in these tests.
const READS_PER_MIN: usize = 20;

#[sqlx::test]
async fn two_apis_and_two_workers_run_every_job_exactly_once(pool: PgPool) {
    instances(pool, 2, 2, 30).await;
}

/// `scripts/reliability.sh`: GDPRD_RELIABILITY_INSTANCES API processes and as many workers,
/// GDPRD_RELIABILITY_REQUESTS requests.
#[sqlx::test]
#[ignore = "heavy; scripts/reliability.sh runs it"]
async fn many_instances_run_every_job_exactly_once(pool: PgPool) {
    let n = env_number("GDPRD_RELIABILITY_INSTANCES", 4);
    let requests = env_number("GDPRD_RELIABILITY_REQUESTS", 150);
    instances(pool, n, n, requests).await;
}

async fn instances(pool: PgPool, apis: usize, workers: usize, requests: usize) {
    seed(&pool, (requests * 2 + 10) as u64).await;
    let emails = people(&pool, requests).await;
    install_audit(&pool, 5).await;
    let url = database_url(&pool);
    let reads = READS_PER_MIN.to_string();
    let settings = [
        ("GDPRD_JOB_LEASE_SECS", "60"),
        ("GDPRD_RATE_READ_PER_MIN", reads.as_str()),
        ("GDPRD_RATE_CREATE_PER_MIN", "100000"),
    ];
    let mut servers = Vec::new();
    for _ in 0..apis {
        servers.push(Gdprd::serve(&url, false, &settings).await);
    }
    let started = Instant::now();
    let running: Vec<Gdprd> = (0..workers)
        .map(|_| Gdprd::worker(&url, &settings))
        .collect();
    let token = token_at(&pool, &servers[0].base, "demo", ALL_PERMISSIONS).await;
    gdprd::outbound::install_crypto_provider();
    let http = reqwest::Client::new();
    let bodies = batch(&emails);
    join_all(bodies.iter().enumerate().map(|(i, body)| {
        let base = servers[i % apis].base.as_str();
        submit(&http, base, &token, body)
    }))
    .await;
    all_finished(&pool, Duration::from_secs(90)).await;
    let elapsed = started.elapsed();
    drop(running);

    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM gdpr_requests")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(statuses.len(), requests);
    assert!(statuses.iter().all(|s| s == "COMPLETED"), "{statuses:?}");
    let audit = audit(&pool).await;
    audit.assert_exactly_once();
    assert_eq!(
        audit.claims, audit.queued,
        "each job or bundle claimed once: {audit:?}"
    );
    assert_eq!(audit.max_attempts, 1, "{audit:?}");
    assert_eq!(audit.takeovers, 0, "{audit:?}");

    // One client reading as fast as it can through every instance in turn.
    let reader = token_at(&pool, &servers[0].base, "demo", &["gdpr:request:view"]).await;
    let calls = READS_PER_MIN * apis * 2;
    let (mut allowed, mut throttled) = (0, 0);
    let reading = Instant::now();
    for i in 0..calls {
        let response = http
            .get(servers[i % apis].url("/api/v2/gdpr/requests"))
            .query(&[("pageSize", "1")])
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap();
        match response.status() {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["code"], "too.many.requests");
                throttled += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let reading = reading.elapsed();
    // Each instance refills one read every 60 / READS_PER_MIN seconds: allow for that.
    let refill = (reading.as_secs_f64() / (60.0 / READS_PER_MIN as f64)).ceil() as usize * apis;
    assert!(
        allowed >= READS_PER_MIN * apis && allowed <= READS_PER_MIN * apis + refill,
        "{allowed} reads allowed"
    );
    assert_eq!(allowed + throttled, calls);
    println!(
        "figures: {apis} API + {workers} worker processes, {requests} requests and {} jobs done \
         in {} ms; claims {}, max attempts {}, overlapping claims {}, jobs per worker process \
         {:?}; rate limit {READS_PER_MIN} reads/min per instance: one client got {allowed} of \
         {calls} reads through {apis} instances in {} ms ({throttled} throttled)",
        audit.jobs,
        elapsed.as_millis(),
        audit.claims,
        audit.max_attempts,
        audit.overlapping_claims,
        audit.per_process,
        reading.as_millis()
    );
}
