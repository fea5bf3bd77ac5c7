use std::time::Duration;

use gdprd::config::HttpSettings;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use tokio::io::AsyncWriteExt;

use crate::helpers::{ALL_PERMISSIONS, TestApp, expect_error};

fn header(response: &reqwest::Response, name: &str) -> u64 {
    response.headers()[name].to_str().unwrap().parse().unwrap()
}

#[sqlx::test]
async fn every_limited_response_carries_the_genesys_rate_limit_headers(pool: PgPool) {
    // Six a minute: one call's worth comes back every ten seconds, so consecutive calls add up.
    let settings = HttpSettings {
        rate_read_per_min: 6,
        ..HttpSettings::default()
    };
    let app = TestApp::spawn_with_options(pool, settings, None).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let first = app.search(&token, "EMAIL", "a@example.com").await;
    let second = app.search(&token, "EMAIL", "a@example.com").await;
    assert_eq!(header(&first, "inin-ratelimit-allowed"), 6);
    assert_eq!(header(&first, "inin-ratelimit-count"), 1);
    assert_eq!(header(&first, "inin-ratelimit-reset"), 10);
    assert_eq!(
        header(&second, "inin-ratelimit-count"),
        header(&first, "inin-ratelimit-count") + 1
    );
    assert!(header(&second, "inin-ratelimit-reset") >= 1);
    // Errors are counted and labelled too.
    let error = app.search(&token, "NOPE", "x").await;
    assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    assert!(error.headers().contains_key("inin-ratelimit-count"));
}

#[sqlx::test]
async fn request_creation_has_its_own_stricter_limit(pool: PgPool) {
    let settings = HttpSettings {
        rate_create_per_min: 3,
        ..HttpSettings::default()
    };
    let app = TestApp::spawn_with_options(pool, settings, None).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    for i in 0..3 {
        let body = json!({"requestType": "GDPR_GET", "subject": {"emailAddresses": [format!("p{i}@example.com")]}});
        let response = app.submit(&token, &body, false).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&response, "inin-ratelimit-allowed"), 3);
    }
    let body =
        json!({"requestType": "GDPR_GET", "subject": {"emailAddresses": ["p9@example.com"]}});
    let throttled = app.submit(&token, &body, false).await;
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&throttled, "inin-ratelimit-count"), 3);
    let error = expect_error(throttled, 429, "too.many.requests").await;
    assert_eq!(
        error["limit"],
        json!({"key": "gdpr.requests.create.rate.per.minute", "namespace": "gdpr", "value": 3})
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("Retry the request in [")
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM gdpr_requests")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 3, "a throttled request writes nothing");

    // Reads are another class, and another client has its own budget.
    assert_eq!(
        app.search(&token, "EMAIL", "a@example.com").await.status(),
        StatusCode::OK
    );
    let other = app.token("demo", ALL_PERMISSIONS).await;
    assert_eq!(
        app.submit(&other, &body, false).await.status(),
        StatusCode::ACCEPTED
    );
}

#[sqlx::test]
async fn token_requests_are_limited_per_client(pool: PgPool) {
    let settings = HttpSettings {
        rate_token_per_min: 2,
        ..HttpSettings::default()
    };
    let app = TestApp::spawn_with_options(pool, settings, None).await;
    let client = app.create_client("demo", &["gdpr:subject:view"]).await;
    app.token_for(&client).await;
    app.token_for(&client).await;
    let third = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let error = expect_error(third, 429, "too.many.requests").await;
    assert_eq!(
        error["limit"]["key"],
        "client.credentials.token.rate.per.minute"
    );
    let other = app.create_client("demo", &["gdpr:subject:view"]).await;
    app.token_for(&other).await;
}

/// Opens a connection that announces a body and never sends it: a slow client.
async fn stall(app: &TestApp) -> tokio::net::TcpStream {
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant")
        .await
        .unwrap();
    stream
}

#[sqlx::test]
async fn past_the_concurrency_limit_requests_are_shed_with_503(pool: PgPool) {
    let settings = HttpSettings {
        max_in_flight: 1,
        ..HttpSettings::default()
    };
    let app = TestApp::spawn_with_options(pool, settings, None).await;
    let _slow = stall(&app).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shed = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(shed.headers()["retry-after"], "1");
    expect_error(shed, 503, "service.unavailable").await;
}

#[sqlx::test]
async fn a_request_that_takes_too_long_is_answered_504(pool: PgPool) {
    let settings = HttpSettings {
        request_timeout_secs: 1,
        ..HttpSettings::default()
    };
    let app = TestApp::spawn_with_options(pool, settings, None).await;
    let mut slow = stall(&app).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        let n = slow.read(&mut buf).await.unwrap();
        answer.extend_from_slice(&buf[..n]);
    })
    .await;
    assert!(read.is_ok(), "no answer within 10 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(text.contains("\"code\":\"request.timeout\""), "{text}");
}
