//! Completion notifications: each test runs a real receiver on loopback that records what it
//! gets, and checks the Standard Webhooks signatures with the client's secrets.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use gdprd::config::{HttpSettings, WorkerSettings};
use gdprd::outbound::GuardSettings;
use gdprd::outbound::signing::Secrets;
use gdprd::seed::story;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::helpers::{ALL_PERMISSIONS, TestApp, expect_error, fast_worker};

/// One message as the receiver got it.
#[derive(Clone)]
struct Message {
    headers: HeaderMap,
    body: Bytes,
}

impl Message {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> String {
        self.headers[name].to_str().unwrap().to_owned()
    }

    fn status(&self) -> String {
        self.json()["data"]["status"].as_str().unwrap().to_owned()
    }
}

/// A notification receiver: answers each message with the next scripted status (200 once the
/// script is used up, or `fallback`), with a reason in the body when it refuses.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Message>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    fallback: u16,
}

impl Receiver {
    async fn start() -> Receiver {
        Receiver::answering(&[], 200).await
    }

    async fn answering(script: &[u16], fallback: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            url: format!("http://{}/hooks/gdpr", listener.local_addr().unwrap()),
            got: Arc::default(),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            fallback,
        };
        let app = Router::new()
            .route("/hooks/gdpr", post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn messages(&self) -> Vec<Message> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (at most 30 s) until a message announces `status`, and returns all so far.
    async fn until_status(&self, status: &str) -> Vec<Message> {
        for _ in 0..300 {
            let messages = self.messages();
            if messages.iter().any(|m| m.status() == status) {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no notification of {status} within 30 s");
    }

    /// Checks every message's signature with `secret` alone.
    fn verify_all(&self, secret: &str) {
        let secrets = Secrets::parse(secret).unwrap();
        for message in self.messages() {
            secrets
                .verify(&message.headers, &message.body)
                .unwrap_or_else(|e| panic!("signature: {e}"));
        }
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    receiver.got.lock().unwrap().push(Message { headers, body });
    let answer = receiver
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(receiver.fallback);
    let status = StatusCode::from_u16(answer).unwrap();
    let reason = if status.is_success() {
        "ok"
    } else {
        "maintenance window, come back later"
    };
    (status, reason)
}

impl TestApp {
    async fn put_endpoint(&self, token: &str, url: &str) -> reqwest::Response {
        self.http
            .put(self.url("/api/v2/gdpr/notifications/endpoint"))
            .bearer_auth(token)
            .json(&json!({ "url": url }))
            .send()
            .await
            .unwrap()
    }

    /// Registers `url` as the token's client's endpoint, which must succeed.
    async fn endpoint_at(&self, token: &str, url: &str) -> Value {
        let response = self.put_endpoint(token, url).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn endpoint(&self, token: &str) -> reqwest::Response {
        self.http
            .get(self.url("/api/v2/gdpr/notifications/endpoint"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn delivery_log(&self, token: &str, request_id: &str) -> reqwest::Response {
        self.http
            .get(self.url(&format!("/api/v2/gdpr/requests/{request_id}/notifications")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Waits (at most 30 s) until the request's notifications are all delivered or failed and
    /// the last announces a final status; returns them.
    async fn settled_log(&self, token: &str, request_id: &str) -> Vec<Value> {
        for _ in 0..300 {
            let response = self.delivery_log(token, request_id).await;
            assert_eq!(response.status(), StatusCode::OK);
            let log: Value = response.json().await.unwrap();
            let entities = log["entities"].as_array().unwrap().clone();
            let settled = entities
                .iter()
                .all(|n| n["state"] == "DELIVERED" || n["state"] == "FAILED");
            let finished = entities
                .last()
                .is_some_and(|n| n["status"] == "COMPLETED" || n["status"] == "ERROR");
            if settled && finished {
                return entities;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the notifications of {request_id} did not settle within 30 s");
    }
}

fn get_request(email: &str) -> Value {
    json!({"requestType": "GDPR_GET", "subject": {"emailAddresses": [email]}})
}

/// The statuses announced, each message's `previousStatus` being the status before it.
fn statuses_in_order(messages: &[Message]) -> Vec<String> {
    let mut previous = "INITIATED".to_owned();
    messages
        .iter()
        .map(|m| {
            let data = &m.json()["data"];
            assert_eq!(data["previousStatus"], previous.as_str(), "{data}");
            previous = data["status"].as_str().unwrap().to_owned();
            previous.clone()
        })
        .collect()
}

#[sqlx::test]
async fn status_changes_reach_the_clients_endpoint_signed_in_order_without_personal_data(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let hook = Receiver::start().await;
    let endpoint = app.endpoint_at(&token, &hook.url).await;
    assert_eq!(endpoint["url"], hook.url.as_str());
    let secrets = endpoint["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 1, "{endpoint}");
    let secret = secrets[0].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert!(endpoint.get("previousSecretExpiresDate").is_none());
    assert_eq!(
        app.endpoint(&token).await.json::<Value>().await.unwrap(),
        endpoint
    );

    let request = app.accepted(&token, get_request(story::ANA_EMAIL)).await;
    let id = request["id"].as_str().unwrap();
    assert_eq!(app.finished(&token, id).await["status"], "COMPLETED");

    let messages = hook.until_status("COMPLETED").await;
    hook.verify_all(&secret);
    let statuses = statuses_in_order(&messages);
    // Its services all live in gdprd's database: the jobs and the finalization commit at once,
    // and no status that nobody could see is announced.
    assert_eq!(statuses, ["SEARCHING", "COMPLETED"]);
    let mut ids: Vec<String> = messages.iter().map(|m| m.header("webhook-id")).collect();
    ids.dedup();
    assert_eq!(
        ids.len(),
        messages.len(),
        "one message id per status change"
    );
    for message in &messages {
        let text = String::from_utf8_lossy(&message.body).to_string();
        assert!(!text.contains(story::ANA_EMAIL), "{text}");
        let body = message.json();
        assert_eq!(body["type"], "gdpr.request.status");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(body["data"]["id"], id);
        assert_eq!(body["data"]["requestType"], "GDPR_GET");
        assert_eq!(body["data"]["createdDate"], request["createdDate"]);
        assert!(body["data"].get("parentId").is_none());
        assert_eq!(message.header("content-type"), "application/json");
    }

    let log = app.settled_log(&token, id).await;
    assert_eq!(log.len(), messages.len());
    for (entry, message) in log.iter().zip(&messages) {
        assert_eq!(entry["state"], "DELIVERED", "{entry}");
        assert_eq!(entry["status"], message.status().as_str());
        assert_eq!(entry["attempts"], 1);
        assert_eq!(entry["url"], hook.url.as_str());
        assert_eq!(entry["deliveries"][0]["httpStatus"], 200);
        let message_id = format!("msg_{}", entry["id"].as_str().unwrap().replace('-', ""));
        assert_eq!(message.header("webhook-id"), message_id);
    }
}

#[sqlx::test]
async fn a_callback_url_on_the_request_overrides_the_endpoint_and_is_signed_with_the_clients_secret(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let callback = Receiver::start().await;

    // A client without an endpoint gets a secret with its first callbackUrl.
    expect_error(app.endpoint(&token).await, 404, "not.found").await;
    let mut body = get_request(story::ANA_EMAIL);
    body["callbackUrl"] = json!(callback.url);
    let request = app.accepted(&token, body).await;
    let id = request["id"].as_str().unwrap();
    assert_eq!(request["callbackUrl"], callback.url.as_str());
    assert_eq!(
        app.request(&token, id).await["callbackUrl"],
        callback.url.as_str()
    );
    let endpoint: Value = app.endpoint(&token).await.json().await.unwrap();
    assert!(endpoint.get("url").is_none(), "{endpoint}");
    let secret = endpoint["secrets"][0].as_str().unwrap().to_owned();

    let messages = callback.until_status("COMPLETED").await;
    callback.verify_all(&secret);
    assert_eq!(statuses_in_order(&messages).last().unwrap(), "COMPLETED");

    // With an endpoint registered, a request's callbackUrl still wins.
    let endpoint_hook = Receiver::start().await;
    let endpoint = app.endpoint_at(&token, &endpoint_hook.url).await;
    assert_eq!(
        endpoint["secrets"][0],
        secret.as_str(),
        "the secret is kept"
    );
    let mut body = get_request(story::OTHER_ANA_EMAIL);
    body["callbackUrl"] = json!(callback.url);
    let second = app.accepted(&token, body).await;
    let second_id = second["id"].as_str().unwrap();
    app.finished(&token, second_id).await;
    let log = app.settled_log(&token, second_id).await;
    assert!(log.iter().all(|n| n["url"] == callback.url.as_str()));
    assert!(endpoint_hook.messages().is_empty());
    callback.verify_all(&secret);

    // And a request without one goes to the endpoint.
    let third = app
        .accepted(&token, get_request("someone.else@example.net"))
        .await;
    app.finished(&token, third["id"].as_str().unwrap()).await;
    endpoint_hook.until_status("COMPLETED").await;
    endpoint_hook.verify_all(&secret);
}

#[sqlx::test]
async fn a_failing_receiver_is_retried_with_the_same_message_id_and_the_log_shows_each_attempt(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let hook = Receiver::answering(&[500, 500], 200).await;
    let endpoint = app.endpoint_at(&token, &hook.url).await;
    let request = app.accepted(&token, get_request(story::ANA_EMAIL)).await;
    let id = request["id"].as_str().unwrap();
    app.finished(&token, id).await;
    let log = app.settled_log(&token, id).await;

    let first = &log[0];
    assert_eq!(first["state"], "DELIVERED", "{first}");
    assert_eq!(first["attempts"], 3, "{first}");
    let deliveries = first["deliveries"].as_array().unwrap();
    let codes: Vec<i64> = deliveries
        .iter()
        .map(|d| d["httpStatus"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 200]);
    assert_eq!(deliveries[0]["attempt"], 1);
    assert!(
        deliveries[0]["error"]
            .as_str()
            .unwrap()
            .contains("maintenance window"),
        "{first}"
    );
    assert!(deliveries[2].get("error").is_none());
    assert!(first.get("deliveredDate").is_some());
    for later in &log[1..] {
        assert_eq!(later["attempts"], 1, "{later}");
    }

    let messages = hook.until_status("COMPLETED").await;
    let message_id = format!("msg_{}", first["id"].as_str().unwrap().replace('-', ""));
    for message in &messages[..3] {
        assert_eq!(message.header("webhook-id"), message_id);
    }
    assert_ne!(messages[3].header("webhook-id"), message_id);
    hook.verify_all(endpoint["secrets"][0].as_str().unwrap());
    // Later statuses waited for the first: the receiver saw them in order.
    assert_eq!(
        statuses_in_order(&messages[2..]).last().unwrap(),
        "COMPLETED"
    );
}

#[sqlx::test]
async fn a_receiver_that_keeps_failing_ends_failed_with_its_reason(pool: PgPool) {
    let worker = WorkerSettings {
        notify_max_attempts: 3,
        ..fast_worker()
    };
    let app = TestApp::spawn_with_options(pool, HttpSettings::default(), Some(worker)).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let hook = Receiver::answering(&[], 503).await;
    app.endpoint_at(&token, &hook.url).await;
    let request = app.accepted(&token, get_request(story::ANA_EMAIL)).await;
    let id = request["id"].as_str().unwrap();
    assert_eq!(app.finished(&token, id).await["status"], "COMPLETED");

    let log = app.settled_log(&token, id).await;
    for entry in &log {
        assert_eq!(entry["state"], "FAILED", "{entry}");
        assert_eq!(entry["attempts"], 3, "{entry}");
        assert!(entry.get("deliveredDate").is_none());
        let error = entry["lastError"].as_str().unwrap();
        assert!(error.contains("503"), "{error}");
        assert!(error.contains("maintenance window"), "{error}");
        let codes: Vec<&Value> = entry["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| &d["httpStatus"])
            .collect();
        assert_eq!(codes, [&json!(503), &json!(503), &json!(503)]);
    }
    assert_eq!(hook.messages().len(), 3 * log.len());
}

#[sqlx::test]
async fn after_a_rotation_messages_carry_both_signatures_and_verify_with_either_secret(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let rotate = || {
        app.http
            .post(app.url("/api/v2/gdpr/notifications/endpoint/rotate"))
            .bearer_auth(&token)
            .send()
    };
    expect_error(rotate().await.unwrap(), 404, "not.found").await;
    let hook = Receiver::start().await;
    let before = app.endpoint_at(&token, &hook.url).await;
    let old = before["secrets"][0].as_str().unwrap().to_owned();

    let response = rotate().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let rotated: Value = response.json().await.unwrap();
    let secrets: Vec<&str> = rotated["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(secrets.len(), 2, "{rotated}");
    assert_eq!(secrets[1], old, "the old secret comes second");
    let new = secrets[0].to_owned();
    assert_ne!(new, old);
    let expires = chrono::DateTime::parse_from_rfc3339(
        rotated["previousSecretExpiresDate"].as_str().unwrap(),
    )
    .unwrap();
    let hours =
        (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "{hours}");

    let request = app.accepted(&token, get_request(story::ANA_EMAIL)).await;
    app.finished(&token, request["id"].as_str().unwrap()).await;
    let messages = hook.until_status("COMPLETED").await;
    for message in &messages {
        assert_eq!(message.header("webhook-signature").split(' ').count(), 2);
    }
    hook.verify_all(&new);
    hook.verify_all(&old);
}

#[sqlx::test]
async fn a_strict_guard_refuses_loopback_plain_http_and_metadata_urls_naming_the_reason(
    pool: PgPool,
) {
    let strict = WorkerSettings {
        outbound: GuardSettings::default(),
        ..fast_worker()
    };
    let app = TestApp::spawn_with_options(pool, HttpSettings::default(), Some(strict)).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let hook = Receiver::start().await;
    let refused = [
        (hook.url.as_str(), "scheme must be https"),
        ("https://127.0.0.1:9/hooks", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://10.0.0.7/hooks", "private"),
        (
            "https://user:pw@hooks.example.com/",
            "user name or password",
        ),
        ("not a url", "not a valid absolute URL"),
    ];
    for (url, reason) in refused {
        let body = expect_error(app.put_endpoint(&token, url).await, 400, "invalid.value").await;
        assert_eq!(body["details"][0]["fieldName"], "url", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains(reason),
            "{url}: {body}"
        );
    }
    let body = expect_error(app.put_endpoint(&token, "  ").await, 400, "invalid.value").await;
    assert_eq!(body["details"][0]["fieldName"], "url", "{body}");
    expect_error(app.endpoint(&token).await, 404, "not.found").await;

    let mut request = get_request(story::ANA_EMAIL);
    request["callbackUrl"] = json!("https://169.254.169.254/latest/meta-data");
    let body = expect_error(
        app.submit(&token, &request, false).await,
        400,
        "invalid.value",
    )
    .await;
    assert_eq!(body["details"][0]["fieldName"], "callbackUrl", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("link-local"),
        "{body}"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM gdpr_requests")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);

    let accepted = app
        .endpoint_at(&token, "https://hooks.example.com/gdpr?tenant=7")
        .await;
    assert_eq!(accepted["url"], "https://hooks.example.com/gdpr?tenant=7");
}

#[sqlx::test]
async fn endpoints_need_their_permissions_and_logs_stay_in_their_organization(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let viewer = app.token("demo", &["gdpr:request:view"]).await;
    let adder = app.token("demo", &["gdpr:request:add"]).await;
    let other = app.token("other", ALL_PERMISSIONS).await;
    let hook = Receiver::start().await;

    expect_error(
        app.put_endpoint(&viewer, &hook.url).await,
        403,
        "missing.any.permissions",
    )
    .await;
    app.endpoint_at(&adder, &hook.url).await;
    expect_error(app.endpoint(&adder).await, 403, "missing.any.permissions").await;
    // Endpoints are per client.
    expect_error(app.endpoint(&viewer).await, 404, "not.found").await;
    expect_error(app.endpoint(&other).await, 404, "not.found").await;

    let request = app.accepted(&token, get_request(story::ANA_EMAIL)).await;
    let id = request["id"].as_str().unwrap();
    app.finished(&token, id).await;
    let response = app.delivery_log(&token, id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let log: Value = response.json().await.unwrap();
    assert_eq!(log["entities"], json!([]), "this client has no endpoint");
    expect_error(app.delivery_log(&other, id).await, 404, "not.found").await;
    expect_error(
        app.delivery_log(&adder, id).await,
        403,
        "missing.any.permissions",
    )
    .await;
    expect_error(
        app.delivery_log(&token, "not-a-uuid").await,
        404,
        "not.found",
    )
    .await;

    let delete = |token: String| {
        app.http
            .delete(app.url("/api/v2/gdpr/notifications/endpoint"))
            .bearer_auth(token)
            .send()
    };
    expect_error(
        delete(viewer.clone()).await.unwrap(),
        403,
        "missing.any.permissions",
    )
    .await;
    assert_eq!(
        delete(adder.clone()).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    expect_error(delete(adder.clone()).await.unwrap(), 404, "not.found").await;
}

#[sqlx::test]
async fn a_merge_set_parent_and_its_related_requests_are_each_notified(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    app.index(&token, crate::helpers::people()).await;
    let hook = Receiver::start().await;
    let endpoint = app.endpoint_at(&token, &hook.url).await;
    let request = app
        .accepted(
            &token,
            json!({"requestType": "GDPR_GET", "subject": {"externalContactId": "ec-ana-1"}}),
        )
        .await;
    let parent = request["id"].as_str().unwrap();
    let done = app.finished(&token, parent).await;
    let related: Vec<&str> = done["relatedRequests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(related.len(), 2, "{done}");

    for id in related.iter().chain([&parent]) {
        let log = app.settled_log(&token, id).await;
        assert_eq!(log.last().unwrap()["status"], "COMPLETED", "{id}");
        assert!(log.iter().all(|n| n["state"] == "DELIVERED"), "{log:?}");
    }
    let messages = hook.messages();
    hook.verify_all(endpoint["secrets"][0].as_str().unwrap());
    for child in &related {
        let of_child: Vec<Value> = messages
            .iter()
            .map(Message::json)
            .filter(|m| m["data"]["id"] == *child)
            .collect();
        assert!(!of_child.is_empty());
        assert!(of_child.iter().all(|m| m["data"]["parentId"] == parent));
    }
    assert!(
        messages
            .iter()
            .any(|m| m.json()["data"]["id"] == parent && m.status() == "COMPLETED")
    );
}
