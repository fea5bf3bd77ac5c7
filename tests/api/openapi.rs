use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::TestApp;

async fn get(app: &TestApp, path: &str) -> (StatusCode, String, String) {
    let response = app.http.get(app.url(path)).send().await.unwrap();
    let status = response.status();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, content_type, response.text().await.unwrap())
}

#[sqlx::test]
async fn the_served_openapi_yaml_is_the_committed_one(pool: PgPool) {
    let app = TestApp::spawn_without_worker(pool).await;
    let (status, content_type, served) = get(&app, "/openapi.yaml").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/yaml");
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("openapi.yaml at the root of the repository");
    assert!(
        served == committed,
        "GET /openapi.yaml differs from the committed openapi.yaml; regenerate it with \
         UPDATE_OPENAPI=1 cargo test --test openapi"
    );
}

#[sqlx::test]
async fn the_openapi_json_is_the_same_document(pool: PgPool) {
    let app = TestApp::spawn_without_worker(pool).await;
    let (status, content_type, json) = get(&app, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/json");
    let json: Value = serde_json::from_str(&json).unwrap();
    let expected = serde_json::to_value(gdprd::http::openapi::spec()).unwrap();
    assert_eq!(json, expected);
    assert_eq!(json["openapi"], "3.1.0");
    assert_eq!(
        json["components"]["securitySchemes"]["PureCloud OAuth"]["flows"]["clientCredentials"]["tokenUrl"],
        "/oauth/token"
    );
}

#[sqlx::test]
async fn the_api_reference_page_embeds_the_document(pool: PgPool) {
    let app = TestApp::spawn_without_worker(pool).await;
    let (status, content_type, page) = get(&app, "/docs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("<title>gdprd API reference</title>"));
    assert!(page.contains("\"operationId\":\"postGdprRequests\""));
}

/// Every operation the Genesys SDKs call is described, under Genesys' operation ids.
#[test]
fn the_genesys_operations_are_described_under_their_sdk_names() {
    let doc = serde_json::to_value(gdprd::http::openapi::spec()).unwrap();
    for (path, method, id) in [
        ("/api/v2/gdpr/subjects", "get", "getGdprSubjects"),
        ("/api/v2/gdpr/requests", "post", "postGdprRequests"),
        ("/api/v2/gdpr/requests", "get", "getGdprRequests"),
        ("/api/v2/gdpr/requests/{requestId}", "get", "getGdprRequest"),
    ] {
        let operation = &doc["paths"][path][method];
        assert_eq!(operation["operationId"], id, "{method} {path}");
        assert_eq!(
            operation["security"][0]["PureCloud OAuth"],
            Value::Array(vec![]),
            "{method} {path}"
        );
    }
    let statuses = &doc["components"]["schemas"]["Status"]["enum"];
    assert_eq!(
        statuses,
        &serde_json::json!([
            "INITIATED",
            "SEARCHING",
            "UPDATING",
            "DELETING",
            "FINALIZING",
            "COMPLETED",
            "ERROR"
        ])
    );
}
