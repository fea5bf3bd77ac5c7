//! SIGTERM to a `gdprd serve` that is answering a slow client and working through a batch: the
//! request in flight still gets its answer, the worker finishes what it holds and claims nothing
//! more, the process exits promptly, and a later worker finishes everything that was left.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{ALL_PERMISSIONS, seed};
use crate::support::{
    Gdprd, all_finished, audit, batch, database_url, eventually, install_audit, people, submit,
    token_at,
};

/// The request timeout of the server under test.
const REQUEST_TIMEOUT_SECS: u64 = 3;

/// How long the process may take to exit after SIGTERM: the drain of open connections is
/// bounded by the request timeout plus a second (a client that sent half of its headers holds
/// its connection open until then), and the jobs in hand take well under a second.
const EXIT_BOUND: Duration = Duration::from_secs(REQUEST_TIMEOUT_SECS + 3);

#[sqlx::test]
async fn sigterm_answers_the_request_in_flight_and_leaves_no_job_held(pool: PgPool) {
    seed(&pool, 40).await;
    let emails = people(&pool, 16).await;
    install_audit(&pool, 30).await;
    let url = database_url(&pool);
    let mut server = Gdprd::serve(
        &url,
        true,
        &[
            ("GDPRD_JOB_LEASE_SECS", "60"),
            (
                "GDPRD_REQUEST_TIMEOUT_SECS",
                &REQUEST_TIMEOUT_SECS.to_string(),
            ),
        ],
    )
    .await;
    let token = token_at(&pool, &server.base, "demo", ALL_PERMISSIONS).await;
    gdprd::outbound::install_crypto_provider();
    let http = reqwest::Client::new();
    let (last, rest) = emails.split_last().unwrap();
    for body in batch(rest) {
        submit(&http, &server.base, &token, &body).await;
    }

    // SIGTERM comes while the worker holds jobs and a slow client is sending its request:
    // the headers and half of the body before the signal, the rest after it.
    let (db, lease) = (&pool, server.lease_prefix());
    let lease = lease.as_str();
    eventually(
        Duration::from_secs(30),
        "the worker holds jobs",
        move || async move { held(db, lease).await > 0 },
    )
    .await;

    let body = serde_json::to_vec(&json!({
        "requestType": "GDPR_EXPORT",
        "subject": {"emailAddresses": [last]},
    }))
    .unwrap();
    let mut slow = TcpStream::connect(server.address()).await.unwrap();
    let head = format!(
        "POST /api/v2/gdpr/requests HTTP/1.1\r\nHost: gdprd\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let (first_half, second_half) = body.split_at(body.len() / 2);
    slow.write_all(first_half).await.unwrap();
    // A client that sent half of its headers and then nothing: it must not hold the exit up.
    let mut stalled = TcpStream::connect(server.address()).await.unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gdprd\r\n")
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(100)).await;
    let signalled = Instant::now();
    server.sigterm();
    for chunk in second_half.chunks(4) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        slow.write_all(chunk).await.unwrap();
    }
    let answer = read_answer(&mut slow).await;
    let answered_after = signalled.elapsed();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    let status = server.exited_within(Duration::from_secs(30)).await;
    let exited_after = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running 30 s after SIGTERM"));
    assert!(status.success(), "{status}:\n{}", server.logs());
    assert!(exited_after < EXIT_BOUND, "exited after {exited_after:?}");
    drop(stalled);

    // Nothing is left held: each job is done, or queued and claimable right away.
    let (running, waiting_for_time, done): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'running'),
                count(*) FILTER (WHERE status = 'queued' AND run_at > now()),
                count(*) FILTER (WHERE status = 'completed')
           FROM gdpr_jobs",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((running, waiting_for_time), (0, 0));
    let before_exit = audit(&pool).await;
    assert_eq!(before_exit.takeovers, 0, "{before_exit:?}");

    // Nothing is lost: another worker finishes every request, the one accepted during the
    // shutdown included.
    let worker = Gdprd::worker(&url, &[]);
    all_finished(&pool, Duration::from_secs(60)).await;
    drop(worker);
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM gdpr_requests")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(statuses.len(), emails.len());
    assert!(statuses.iter().all(|s| s == "COMPLETED"), "{statuses:?}");
    let audit = audit(&pool).await;
    audit.assert_exactly_once();
    assert_eq!(audit.takeovers, 0, "{audit:?}");
    println!(
        "figures: in-flight request answered {} ms and process exited {} ms after SIGTERM; \
         {done} of {} jobs done before the exit, the rest left queued",
        answered_after.as_millis(),
        exited_after.as_millis(),
        audit.jobs
    );
}

async fn held(pool: &PgPool, prefix: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM gdpr_jobs WHERE status = 'running' AND locked_by LIKE $1",
    )
    .bind(prefix)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The answer on `stream`, up to the end of its headers and JSON body (or the connection's end).
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&answer);
            if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer within 15 s");
    String::from_utf8_lossy(&answer).into_owned()
}
