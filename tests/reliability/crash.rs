//! A `gdprd worker` killed with SIGKILL in the middle of a batch: its leases run out, the next
//! worker takes its jobs over, every request finishes, and every job has done its work exactly
//! once.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{ALL_PERMISSIONS, TestApp, seed};
use crate::support::{
    Gdprd, all_finished, audit, batch, database_url, eventually, install_audit, people,
    quiet_settings, submit,
};

#[sqlx::test]
async fn a_worker_killed_mid_batch_loses_nothing_and_runs_no_job_twice(pool: PgPool) {
    let figures = kill_cycles(pool, 24, 1).await;
    assert_eq!(figures.kills, 1, "{figures:?}");
}

/// `scripts/reliability.sh`: GDPRD_RELIABILITY_REQUESTS requests, GDPRD_RELIABILITY_KILLS kills.
#[sqlx::test]
#[ignore = "heavy; scripts/reliability.sh runs it"]
async fn repeated_worker_kills_lose_nothing(pool: PgPool) {
    let requests = env_number("GDPRD_RELIABILITY_REQUESTS", 150);
    let kills = env_number("GDPRD_RELIABILITY_KILLS", 10);
    kill_cycles(pool, requests, kills).await;
}

pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug)]
#[allow(dead_code)] // read through Debug
struct Figures {
    requests: usize,
    jobs: i64,
    kills: usize,
    jobs_in_hand_at_kills: i64,
    takeovers: i64,
    max_attempts: i32,
    finished_after_last_kill_ms: u128,
}

async fn kill_cycles(pool: PgPool, requests: usize, kills: usize) -> Figures {
    // About 60 % of seeded people are a single external contact.
    seed(&pool, (requests * 2 + 10) as u64).await;
    let emails = people(&pool, requests).await;
    install_audit(&pool, 20).await;
    let url = database_url(&pool);
    let app = TestApp::spawn_with_options(pool.clone(), quiet_settings(), None).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;

    let bodies = batch(&emails);
    let mut ids = Vec::new();
    for body in &bodies {
        ids.push(submit(&app.http, &app.address, &token, body).await);
    }
    let total = ids.len() as i64;
    // A job held at a kill is claimed again, and a claim is an attempt: enough of them that
    // the kills, not a job's attempt budget, are what is tested.
    sqlx::query("UPDATE gdpr_jobs SET max_attempts = $1")
        .bind(kills as i32 + 5)
        .execute(&pool)
        .await
        .unwrap();
    // Started once the jobs are set up: a worker running a request's jobs together holds
    // several of their rows, and this bulk update would deadlock with it.
    let mut worker = Gdprd::worker(&url, &[]);

    let mut killed = 0;
    let mut in_hand = 0;
    let mut last_kill = Instant::now();
    // A kill that happens to catch the worker between two jobs is not counted: the test wants
    // `kills` kills of a worker with jobs in hand.
    let mut attempts = 0;
    while killed < kills && attempts < kills + 5 {
        attempts += 1;
        let done_before = finished(&pool).await;
        let prefix = worker.lease_prefix();
        let (db, lease) = (&pool, prefix.as_str());
        eventually(
            Duration::from_secs(60),
            "the worker is mid-work",
            move || async move {
                let done = finished(db).await;
                done == total || (done > done_before && held(db, lease).await > 0)
            },
        )
        .await;
        if finished(&pool).await == total {
            break;
        }
        worker.sigkill();
        last_kill = Instant::now();
        // The dead worker's last statements may still be running in its backends; what they
        // leave held is what the next worker finds.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let holding = held(&pool, &prefix).await;
        if holding > 0 {
            killed += 1;
            in_hand += holding;
        }
        worker = Gdprd::worker(&url, &[]);
    }
    all_finished(&pool, Duration::from_secs(90)).await;
    let finished_after_last_kill_ms = last_kill.elapsed().as_millis();
    drop(worker);

    let audit = audit(&pool).await;
    audit.assert_exactly_once();
    assert!(
        in_hand > 0,
        "the kills should catch jobs in hand: {audit:?}"
    );
    assert!(audit.takeovers >= in_hand, "{audit:?}");
    assert!(
        audit.writing_transactions > 0,
        "the erasures wrote: {audit:?}"
    );

    let mut erased = Vec::new();
    for (id, body) in ids.iter().zip(&bodies) {
        let request = app.request(&token, id).await;
        assert_eq!(request["status"], "COMPLETED", "{request}");
        match body["requestType"].as_str() {
            Some("GDPR_DELETE") => {
                let acted: i64 = jobs_sum(&request, &["deleted", "anonymized"]);
                assert!(acted > 0, "the person had data: {request}");
                erased.push(body["subject"].clone());
            }
            Some("GDPR_EXPORT") => assert!(request["resultsUrl"].is_string(), "{request}"),
            _ => assert!(request["accessSummary"].is_array(), "{request}"),
        }
    }
    assert_nothing_left(&app, &token, &pool, &erased).await;

    let figures = Figures {
        requests,
        jobs: audit.jobs,
        kills: killed,
        jobs_in_hand_at_kills: in_hand,
        takeovers: audit.takeovers,
        max_attempts: audit.max_attempts,
        finished_after_last_kill_ms,
    };
    println!("figures: {figures:?}");
    figures
}

/// No service is half-erased: an access summary of each erased person finds nothing left in
/// any service.
async fn assert_nothing_left(app: &TestApp, token: &str, pool: &PgPool, subjects: &[Value]) {
    let worker = Gdprd::worker(&database_url(pool), &[]);
    let mut checks = Vec::new();
    for subject in subjects {
        let body = json!({"requestType": "GDPR_GET", "subject": subject});
        checks.push(submit(&app.http, &app.address, token, &body).await);
    }
    all_finished(pool, Duration::from_secs(60)).await;
    for id in checks {
        let summary = app.request(token, &id).await;
        assert_eq!(summary["status"], "COMPLETED", "{summary}");
        assert_eq!(jobs_sum(&summary, &["matched"]), 0, "{summary}");
    }
    drop(worker);
}

fn jobs_sum(request: &Value, fields: &[&str]) -> i64 {
    request["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|job| fields.iter().map(move |f| job[*f].as_i64().unwrap_or(0)))
        .sum()
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Requests done, or failed for good.
async fn finished(pool: &PgPool) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM gdpr_requests WHERE status IN ('COMPLETED', 'ERROR')",
    )
    .await
}

/// Jobs (bundles included) the worker process with this lease prefix holds.
async fn held(pool: &PgPool, prefix: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM gdpr_jobs WHERE status = 'running' AND locked_by LIKE $1",
    )
    .bind(prefix)
    .fetch_one(pool)
    .await
    .unwrap()
}
