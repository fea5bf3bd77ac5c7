use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{TestApp, expect_error};

#[sqlx::test]
async fn unknown_routes_are_a_404_error_body(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for path in [
        "/nope",
        "/api/v2/gdpr/subjects/extra",
        "/api/v2/gdpr/../../etc/passwd",
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        expect_error(response, 404, "not.found").await;
    }
}

#[sqlx::test]
async fn wrong_methods_are_a_405_error_body(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let response = app
        .http
        .patch(app.url("/api/v2/gdpr/subjects"))
        .send()
        .await
        .unwrap();
    let body = expect_error(response, 405, "method.not.allowed").await;
    assert!(body["message"].as_str().unwrap().contains("GET"));
}

#[sqlx::test]
async fn a_client_correlation_id_is_echoed(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let response = app
        .http
        .get(app.url("/api/v2/gdpr/subjects"))
        .header("ININ-Correlation-Id", "my-trace-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["inin-correlation-id"], "my-trace-0001");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["contextId"], "my-trace-0001");

    let hostile = app
        .http
        .get(app.url("/healthz"))
        .header("ININ-Correlation-Id", "x\u{7f}<script>")
        .send()
        .await;
    // A value a header cannot carry is replaced, never echoed.
    if let Ok(response) = hostile {
        assert_ne!(response.headers()["inin-correlation-id"], "x\u{7f}<script>");
    }
}

#[sqlx::test]
async fn successful_responses_carry_a_correlation_id_too(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let response = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()["inin-correlation-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
}

#[sqlx::test]
async fn health_and_readiness(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let health: Value = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "UP");
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap()["database"], "UP");
}

#[sqlx::test]
async fn readiness_fails_when_the_database_is_gone(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.pool.close().await;
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    expect_error(ready, 503, "service.unavailable").await;
    let token_call = app
        .http
        .get(app.url("/api/v2/gdpr/subjects?searchType=EMAIL&searchValue=a@b.c"))
        .bearer_auth("whatever")
        .send()
        .await
        .unwrap();
    expect_error(token_call, 503, "service.unavailable").await;
}

#[sqlx::test]
async fn malformed_query_strings_and_bodies_are_400s(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app
        .token("demo", &["gdpr:subject:view", "gdpr:index:write"])
        .await;
    for query in [
        "searchType=EMAIL&searchType=PHONE&searchValue=x",
        "searchType=EMAIL&searchValue=%FF%FE",
    ] {
        let response = app
            .http
            .get(app.url(&format!("/api/v2/gdpr/subjects?{query}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        expect_error(response, 400, "bad.request").await;
    }
    let not_json = app
        .http
        .put(app.url("/api/v2/gdpr/index/subjects/users/u1"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"userId\": \"u1\"} trailing")
        .send()
        .await
        .unwrap();
    let body = expect_error(not_json, 400, "bad.request").await;
    assert!(body["message"].as_str().unwrap().contains("not valid JSON"));
    let put_body = |body: String| {
        app.http
            .put(app.url("/api/v2/gdpr/index/subjects/users/u1"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let deep = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
    expect_error(put_body(deep).await.unwrap(), 400, "bad.request").await;
    let huge = format!("{{\"userId\": \"{}\"}}", "u".repeat(300 * 1024));
    let body = expect_error(
        put_body(huge).await.unwrap(),
        413,
        "request.entity.too.large",
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("262144"));
    let no_type = app
        .http
        .put(app.url("/api/v2/gdpr/index/subjects/users/u1"))
        .bearer_auth(&token)
        .body("{\"userId\": \"u1\"}")
        .send()
        .await
        .unwrap();
    expect_error(no_type, 415, "unsupported.media.type").await;
}
