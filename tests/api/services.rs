//! Data services beyond gdprd's own database: HTTP data services (a real receiver on a
//! loopback port, checking every signature) and tables in an external PostgreSQL database.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use gdprd::catalog::Catalog;
use gdprd::config::{HttpSettings, WorkerSettings};
use gdprd::index::Normalizer;
use gdprd::outbound::signing::{self, Secrets};
use gdprd::secrets::ServerKey;
use gdprd::worker::Worker;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{ALL_PERMISSIONS, TestApp, expect_error, fast_worker};

const EMAIL: &str = "lena.berg@example.org";
const PHONE: &str = "+15550109999";

/// What the receiver answers to call number `n` (from 0).
#[derive(Clone)]
enum Reply {
    Status(u16, Value),
    /// Answers 200 with the value after a pause.
    Slow(Duration, Value),
    /// 202: the result follows by callback.
    Accept,
    /// Posts the result to the callback URL first (the answer recorded here), then answers 202.
    CallBackFirst(Value),
}

/// One call the receiver got.
#[derive(Clone, Debug)]
struct Call {
    message: Value,
    webhook_id: String,
    /// The signature verified with the service's secret.
    signed: bool,
}

#[derive(Clone)]
struct Receiver {
    secrets: Secrets,
    script: Arc<dyn Fn(usize) -> Reply + Send + Sync>,
    calls: Arc<Mutex<Vec<Call>>>,
    /// Statuses gdprd answered the receiver's own callbacks with.
    callbacks: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    /// Starts a receiver on a loopback port and returns it with its URL.
    async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> (Receiver, String) {
        let receiver = Receiver {
            secrets: Secrets::parse(&Secrets::generate()).unwrap(),
            script: Arc::new(script),
            calls: Arc::default(),
            callbacks: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/gdpr/jobs", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/gdpr/jobs", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    async fn wait_for_calls(&self, n: usize) -> Vec<Call> {
        for _ in 0..300 {
            let calls = self.calls();
            if calls.len() >= n {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the receiver got {} calls, expected {n}",
            self.calls().len()
        );
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let signed = receiver.secrets.verify(&headers, &body).is_ok();
    let call = Call {
        message: serde_json::from_slice(&body).unwrap_or(Value::Null),
        webhook_id: headers
            .get(signing::HEADER_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        signed,
    };
    let callback = call.message["callbackUrl"].as_str().map(str::to_owned);
    let n = {
        let mut calls = receiver.calls.lock().unwrap();
        calls.push(call);
        calls.len() - 1
    };
    if !signed {
        return (AxumStatus::UNAUTHORIZED, "bad signature").into_response();
    }
    match (receiver.script)(n) {
        Reply::Status(status, body) => {
            (AxumStatus::from_u16(status).unwrap(), axum::Json(body)).into_response()
        }
        Reply::Slow(pause, body) => {
            tokio::time::sleep(pause).await;
            axum::Json(body).into_response()
        }
        Reply::Accept => AxumStatus::ACCEPTED.into_response(),
        Reply::CallBackFirst(result) => {
            let answer = call_back(&callback.unwrap(), &receiver.secrets, &result).await;
            receiver
                .callbacks
                .lock()
                .unwrap()
                .push(answer.status().as_u16());
            AxumStatus::ACCEPTED.into_response()
        }
    }
}

/// The demo catalog followed by `more` (TOML).
fn demo_and(more: &str) -> Catalog {
    let demo = std::fs::read_to_string("catalog/demo.toml").unwrap();
    format!("{demo}\n{more}").parse().unwrap()
}

async fn app_with(pool: PgPool, catalog: Catalog) -> TestApp {
    TestApp::spawn_with_catalog(pool, HttpSettings::default(), Some(fast_worker()), catalog).await
}

/// The demo catalog plus an HTTP service `crm` at `url`.
fn catalog_with_crm(url: &str, secrets: &Secrets, extra: &str) -> Catalog {
    let secret = &secrets.written()[0];
    demo_and(&format!(
        r#"
[[service]]
name = "crm"
erasure = "delete"
purpose = "Customer relationship management"
categories = ["name", "email address", "phone number", "purchase history"]
retention = "Three years after the last purchase"
http = {{ url = "{url}", secrets = ["{secret}"], timeout_secs = 1, identifiers = ["EMAIL", "PHONE", "NAME"] {extra} }}
"#
    ))
}

async fn app_with_crm(pool: PgPool, receiver: &Receiver, url: &str) -> (TestApp, String) {
    let app = app_with(pool, catalog_with_crm(url, &receiver.secrets, "")).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    (app, token)
}

fn lena() -> Value {
    json!({"emailAddresses": [EMAIL], "phoneNumbers": [PHONE], "name": "Lena Berg"})
}

/// Submits an erasure of Lena and waits until it is finished.
async fn erase_lena(app: &TestApp, token: &str) -> Value {
    let request = app
        .accepted(
            token,
            json!({"requestType": "GDPR_DELETE", "subject": lena()}),
        )
        .await;
    app.finished(token, request["id"].as_str().unwrap()).await
}

fn crm_job(request: &Value) -> Value {
    request["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["service"] == "crm")
        .cloned()
        .unwrap_or_else(|| panic!("no crm job: {request}"))
}

#[sqlx::test]
async fn a_bundle_goes_where_the_workers_catalog_sends_its_services(pool: PgPool) {
    // The API's catalog is the demo's, every service in gdprd's database: the erasure is queued
    // as one bundle.
    let app = TestApp::spawn_without_worker(pool.clone()).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let request = app
        .accepted(
            &token,
            json!({"requestType": "GDPR_DELETE", "subject": lena()}),
        )
        .await;
    // The worker's catalog has journeys behind HTTP.
    let (receiver, url) =
        Receiver::start(|_| Reply::Status(200, json!({"matched": 3, "deleted": 3}))).await;
    let demo = std::fs::read_to_string("catalog/demo.toml").unwrap();
    let others: Vec<&str> = demo
        .split("\n[[service]]\n")
        .filter(|block| !block.starts_with("name = \"journeys\""))
        .collect();
    assert_eq!(others.len(), demo.split("\n[[service]]\n").count() - 1);
    let secret = &receiver.secrets.written()[0];
    let catalog: Catalog = format!(
        r#"{}
[[service]]
name = "journeys"
erasure = "delete"
purpose = "Web analytics"
categories = ["tracking cookie"]
retention = "Thirteen months after the last visit"
http = {{ url = "{url}", secrets = ["{secret}"], timeout_secs = 1, identifiers = ["EMAIL", "PHONE", "NAME"] }}
"#,
        others.join("\n[[service]]\n")
    )
    .parse()
    .unwrap();
    let settings = WorkerSettings {
        callback_base_url: Some(app.address.clone()),
        ..fast_worker()
    };
    let worker = Worker::new(
        pool.clone(),
        Arc::new(catalog),
        ServerKey::load_or_create(&pool).await.unwrap(),
        Normalizer::new("US").unwrap(),
        settings,
    );
    let stop = CancellationToken::new();
    tokio::spawn(worker.run(stop.clone()));
    let _stop = stop.drop_guard();

    // The bundle became its jobs, queued, and each ran where the worker's catalog says.
    let done = app.finished(&token, request["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(
        receiver.calls.lock().unwrap().len(),
        1,
        "journeys went over HTTP"
    );
    let journeys = done["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["service"] == "journeys")
        .cloned()
        .unwrap();
    assert_eq!(
        (&journeys["status"], &journeys["deleted"]),
        (&json!("COMPLETED"), &json!(3))
    );
    for job in done["jobs"].as_array().unwrap() {
        assert_eq!(
            job["attempts"], 1,
            "the bundle's attempt counted once: {job}"
        );
    }
}

#[sqlx::test]
async fn an_erasure_reaches_an_http_service_signed_and_its_counts_are_reported(pool: PgPool) {
    let (receiver, url) =
        Receiver::start(|_| Reply::Status(200, json!({"matched": 4, "deleted": 4}))).await;
    let (app, token) = app_with_crm(pool, &receiver, &url).await;
    let request = app
        .accepted(
            &token,
            json!({"requestType": "GDPR_DELETE", "subject": lena()}),
        )
        .await;
    let id = request["id"].as_str().unwrap();
    let done = app.finished(&token, id).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let job = crm_job(&done);
    assert_eq!(job["status"], "COMPLETED");
    assert_eq!(
        (job["matched"].clone(), job["deleted"].clone()),
        (json!(4), json!(4))
    );

    let calls = receiver.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert!(
        call.signed,
        "the call carries a valid Standard Webhooks signature"
    );
    let message = &call.message;
    assert_eq!(message["type"], "gdpr.job");
    assert_eq!(message["requestId"], id);
    assert_eq!(message["requestType"], "GDPR_DELETE");
    assert_eq!(message["action"], "delete");
    assert_eq!(message["service"], "crm");
    assert_eq!(
        call.webhook_id,
        format!(
            "msg_{}",
            message["jobId"].as_str().unwrap().replace('-', "")
        )
    );
    let identifiers = message["identifiers"].as_array().unwrap();
    let email = identifiers.iter().find(|i| i["type"] == "EMAIL").unwrap();
    assert_eq!(email["value"], EMAIL);
    assert_eq!(email["weak"], false);
    let phone = identifiers.iter().find(|i| i["type"] == "PHONE").unwrap();
    assert_eq!(phone["value"], PHONE);
    let name = identifiers.iter().find(|i| i["type"] == "NAME").unwrap();
    assert_eq!(name["weak"], true);
    assert_eq!(name["spellings"], json!(["Lena Berg"]));
}

#[sqlx::test]
async fn an_export_from_an_http_service_lands_in_the_archive(pool: PgPool) {
    let orders = json!([
        {"orderId": "A-1001", "total": "49.90", "email": EMAIL},
        {"orderId": "A-1002", "total": "12.00", "email": EMAIL}
    ]);
    let answer = json!({"matched": 2, "export": {"orders": orders}});
    let (receiver, url) = Receiver::start(move |_| Reply::Status(200, answer.clone())).await;
    let (app, token) = app_with_crm(pool, &receiver, &url).await;
    let request = app
        .accepted(
            &token,
            json!({"requestType": "GDPR_EXPORT", "subject": lena()}),
        )
        .await;
    let done = app.finished(&token, request["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(receiver.calls()[0].message["action"], "export");

    let bytes = reqwest::get(done["resultsUrl"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut json = String::new();
    zip.by_name("crm.json")
        .unwrap()
        .read_to_string(&mut json)
        .unwrap();
    let data: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(data["orders"], orders);
    let csv_name = zip
        .file_names()
        .filter_map(Result::ok)
        .find(|n| n.starts_with("crm/") && n.contains("orders"))
        .unwrap()
        .into_owned();
    let mut csv = String::new();
    zip.by_name(&csv_name)
        .unwrap()
        .read_to_string(&mut csv)
        .unwrap();
    assert_eq!(csv.lines().count(), 3, "a header and two orders: {csv}");
    assert!(csv.contains("A-1002"));
}

#[sqlx::test]
async fn a_slow_service_times_out_and_the_next_attempt_succeeds(pool: PgPool) {
    // The catalog gives the service 1 s; the first answer takes 3 s.
    let (receiver, url) = Receiver::start(|n| {
        let answer = json!({"matched": 1, "deleted": 1});
        if n == 0 {
            Reply::Slow(Duration::from_secs(3), answer)
        } else {
            Reply::Status(200, answer)
        }
    })
    .await;
    let (app, token) = app_with_crm(pool, &receiver, &url).await;
    let done = erase_lena(&app, &token).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let job = crm_job(&done);
    assert_eq!(job["attempts"], 2);
    assert_eq!(job["deleted"], 1);
    let calls = receiver.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        calls[0].webhook_id, calls[1].webhook_id,
        "a retry is the same message, so a receiver can drop duplicates"
    );
    assert_eq!(calls[1].message["attempt"], 2);
}

#[sqlx::test]
async fn a_failing_service_is_retried_with_backoff_until_it_succeeds(pool: PgPool) {
    let (receiver, url) = Receiver::start(|n| {
        if n < 2 {
            Reply::Status(503, json!({"message": "maintenance"}))
        } else {
            Reply::Status(200, json!({"matched": 1, "deleted": 1}))
        }
    })
    .await;
    let (app, token) = app_with_crm(pool, &receiver, &url).await;
    let done = erase_lena(&app, &token).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(crm_job(&done)["attempts"], 3);
    assert_eq!(receiver.calls().len(), 3);
}

#[sqlx::test]
async fn a_service_that_keeps_failing_puts_its_reason_on_the_job(pool: PgPool) {
    let (receiver, url) =
        Receiver::start(|_| Reply::Status(500, json!({"message": "CRM database is down"}))).await;
    let (app, token) = app_with_crm(pool, &receiver, &url).await;
    let done = erase_lena(&app, &token).await;
    assert_eq!(done["status"], "ERROR", "{done}");
    let job = crm_job(&done);
    assert_eq!(job["status"], "ERROR");
    let max = fast_worker().job_max_attempts;
    assert_eq!(job["attempts"], max);
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("500") && error.contains("CRM database is down"),
        "{error}"
    );
    assert_eq!(receiver.calls().len(), max as usize);
    // The other services did their part.
    let others = done["jobs"].as_array().unwrap();
    assert!(
        others
            .iter()
            .filter(|j| j["service"] != "crm")
            .all(|j| j["status"] == "COMPLETED")
    );
}

#[sqlx::test]
async fn a_service_refusing_the_job_fails_it_at_once_with_its_reason(pool: PgPool) {
    let (receiver, url) = Receiver::start(|_| {
        Reply::Status(
            200,
            json!({"error": "legal hold on this customer until 2027-03-01"}),
        )
    })
    .await;
    let (app, token) = app_with_crm(pool, &receiver, &url).await;
    let done = erase_lena(&app, &token).await;
    assert_eq!(done["status"], "ERROR", "{done}");
    let job = crm_job(&done);
    assert_eq!(job["attempts"], 1, "no retry for a refusal");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("legal hold on this customer until 2027-03-01")
    );
}

/// Posts a job result to gdprd's callback URL, signed with `secrets`.
async fn call_back(url: &str, secrets: &Secrets, body: &Value) -> reqwest::Response {
    let body = serde_json::to_vec(body).unwrap();
    let id = format!("msg_{}", Uuid::new_v4().simple());
    let ts = chrono::Utc::now().timestamp();
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header(signing::HEADER_ID, &id)
        .header(signing::HEADER_TIMESTAMP, ts.to_string())
        .header(signing::HEADER_SIGNATURE, secrets.sign(&id, ts, &body))
        .body(body)
        .send()
        .await
        .unwrap()
}

#[sqlx::test]
async fn an_asynchronous_service_answers_by_a_signed_callback(pool: PgPool) {
    let (receiver, url) = Receiver::start(|_| Reply::Accept).await;
    let (app, token) = app_with_crm(pool, &receiver, &url).await;
    let request = app
        .accepted(
            &token,
            json!({"requestType": "GDPR_DELETE", "subject": lena()}),
        )
        .await;
    let id = request["id"].as_str().unwrap();
    let message = receiver.wait_for_calls(1).await[0].message.clone();
    let callback = message["callbackUrl"].as_str().unwrap().to_owned();
    assert!(callback.starts_with(&app.address), "{callback}");

    // The job waits for the service: the request cannot finish without it.
    let mut waiting = Value::Null;
    for _ in 0..100 {
        waiting = app.request(&token, id).await;
        if crm_job(&waiting)["status"] == "AWAITING_CALLBACK" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        crm_job(&waiting)["status"],
        "AWAITING_CALLBACK",
        "{waiting}"
    );
    assert_ne!(waiting["status"], "COMPLETED");

    let result = json!({"matched": 2, "deleted": 1, "retained": 1,
                        "retainedReason": "open invoice (tax law)"});
    // Signed with another secret: refused, and nothing changes.
    let stranger = Secrets::parse(&Secrets::generate()).unwrap();
    let refused = call_back(&callback, &stranger, &result).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "bad.credentials");
    assert_eq!(
        crm_job(&app.request(&token, id).await)["status"],
        "AWAITING_CALLBACK"
    );

    // Unsigned: refused too.
    let unsigned = reqwest::Client::new()
        .post(&callback)
        .json(&result)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);

    let accepted = call_back(&callback, &receiver.secrets, &result).await;
    assert_eq!(accepted.status(), StatusCode::NO_CONTENT);
    let done = app.finished(&token, id).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let job = crm_job(&done);
    assert_eq!(
        (
            job["matched"].clone(),
            job["deleted"].clone(),
            job["retained"].clone()
        ),
        (json!(2), json!(1), json!(1))
    );
    assert_eq!(job["retainedReason"], "open invoice (tax law)");

    // A second result for the same job is refused.
    let again = call_back(&callback, &receiver.secrets, &result).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(receiver.calls().len(), 1, "the job was sent once");
}

#[sqlx::test]
async fn an_asynchronous_service_can_report_failure_by_callback(pool: PgPool) {
    let (receiver, url) = Receiver::start(|_| Reply::Accept).await;
    let (app, token) = app_with_crm(pool, &receiver, &url).await;
    let request = app
        .accepted(
            &token,
            json!({"requestType": "GDPR_GET", "subject": lena()}),
        )
        .await;
    let message = receiver.wait_for_calls(1).await[0].message.clone();
    assert_eq!(message["action"], "summarize");
    let callback = message["callbackUrl"].as_str().unwrap();
    let failed = call_back(
        callback,
        &receiver.secrets,
        &json!({"error": "mailbox archive offline"}),
    )
    .await;
    assert_eq!(failed.status(), StatusCode::NO_CONTENT);
    let done = app.finished(&token, request["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "ERROR");
    let job = crm_job(&done);
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("mailbox archive offline"),
        "{job}"
    );
}

#[sqlx::test]
async fn callbacks_for_unknown_jobs_and_bad_bodies_get_clear_errors(pool: PgPool) {
    let (receiver, url) = Receiver::start(|_| Reply::Accept).await;
    let (app, token) = app_with_crm(pool, &receiver, &url).await;
    // Only a caller signing as a service learns that a job does not exist; anyone else gets
    // 401 whether it exists or not.
    let unknown = app.url(&format!("/api/v2/gdpr/callbacks/jobs/{}", Uuid::new_v4()));
    let signed = call_back(&unknown, &receiver.secrets, &json!({"matched": 1})).await;
    assert_eq!(signed.status(), StatusCode::NOT_FOUND);
    let stranger = Secrets::parse(&Secrets::generate()).unwrap();
    for url in [
        unknown.clone(),
        app.url("/api/v2/gdpr/callbacks/jobs/not-a-job"),
    ] {
        let forged = call_back(&url, &stranger, &json!({"matched": 1})).await;
        expect_error(forged, 401, "bad.credentials").await;
    }
    app.accepted(
        &token,
        json!({"requestType": "GDPR_DELETE", "subject": lena()}),
    )
    .await;
    let message = receiver.wait_for_calls(1).await[0].message.clone();
    let callback = message["callbackUrl"].as_str().unwrap();
    // A value of the wrong type: the answer names the field and does not quote what it held.
    let quoted = json!({"matched": "lena.berg@example.com"});
    let bad = call_back(callback, &receiver.secrets, &quoted).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("matched"), "{body}");
    assert!(!message.contains("lena.berg"), "{body}");
}

#[sqlx::test]
async fn an_http_service_url_to_an_internal_address_is_refused_at_start(pool: PgPool) {
    let secrets = Secrets::parse(&Secrets::generate()).unwrap();
    let catalog = catalog_with_crm("https://169.254.169.254/latest", &secrets, "");
    let strict = gdprd::outbound::GuardSettings::default();
    let error = catalog.check_outbound(&strict).unwrap_err().to_string();
    assert!(
        error.contains("crm") && error.contains("link-local"),
        "{error}"
    );
    let catalog = catalog_with_crm("http://127.0.0.1:9/x", &secrets, "");
    let error = catalog.check_outbound(&strict).unwrap_err().to_string();
    assert!(error.contains("https"), "{error}");
    drop(pool);
}

async fn organization(pool: &PgPool, name: &str) -> Uuid {
    let mut conn = pool.acquire().await.unwrap();
    gdprd::org::get_or_create(&mut conn, name).await.unwrap()
}

/// A fresh database standing in for the controller's application database.
struct ExternalDb {
    admin: PgPool,
    name: String,
    url: String,
}

impl ExternalDb {
    async fn create(pool: &PgPool) -> ExternalDb {
        let name = format!("gdprd_ext_{}", Uuid::new_v4().simple());
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(pool)
            .await
            .unwrap();
        let options = pool.connect_options().as_ref().clone().database(&name);
        let url = format!(
            "postgres://{}@{}:{}/{name}",
            options.get_username(),
            options.get_host(),
            options.get_port()
        );
        ExternalDb {
            admin: pool.clone(),
            name,
            url,
        }
    }

    /// A catalog service `shop` with `tables` in this database, holding `org_id`'s data.
    fn service(&self, org_id: Uuid, tables: &str) -> String {
        format!(
            r#"
[[service]]
name = "shop"
erasure = "delete"
purpose = "Selling products online"
categories = ["name", "email address", "phone number", "orders"]
retention = "Ten years for invoices"
organization = "{org_id}"
database_url = "{url}"
{tables}"#,
            url = self.url
        )
    }

    async fn drop(self) {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&self.admin)
        .await;
    }
}

#[sqlx::test]
async fn a_service_in_an_external_database_is_erased_there(pool: PgPool) {
    let external = ExternalDb::create(&pool).await;
    let shop = PgPool::connect(&external.url).await.unwrap();
    sqlx::raw_sql(
        "CREATE SCHEMA shop;
         CREATE TABLE shop.customers (id bigint PRIMARY KEY, email text, phone text, name text);
         CREATE TABLE shop.orders (id bigint PRIMARY KEY,
                                   customer_id bigint REFERENCES shop.customers (id),
                                   total numeric NOT NULL);
         INSERT INTO shop.customers VALUES
           (1, 'Lena.Berg@Example.org', '(555) 010-9999', 'Lena Berg'),
           (2, 'someone.else@example.org', '555-010-1234', 'Lena Berg');
         INSERT INTO shop.orders VALUES (10, 1, 49.90), (11, 1, 12.00), (12, 2, 5.00);",
    )
    .execute(&shop)
    .await
    .unwrap();

    let org_id = organization(&pool, "demo").await;
    let tables = r#"
[[service.table]]
name = "shop.customers"
match = { email = "EMAIL", phone = "PHONE", name = "NAME" }

[[service.table]]
name = "shop.orders"
link = { column = "customer_id", parent = "shop.customers", parent_column = "id" }
"#;
    let app = app_with(pool.clone(), demo_and(&external.service(org_id, tables))).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;

    // The matching functions were created in the external database at start.
    let functions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_proc WHERE proname IN ('gdpr_fold', 'gdpr_digits')",
    )
    .fetch_one(&shop)
    .await
    .unwrap();
    assert_eq!(functions, 2);

    let done = erase_lena(&app, &token).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let job = done["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["service"] == "shop")
        .unwrap()
        .clone();
    assert_eq!(job["matched"], 3, "her customer row and two orders: {job}");
    assert_eq!(job["deleted"], 3);

    let left: Vec<(i64,)> = sqlx::query_as("SELECT id FROM shop.customers ORDER BY id")
        .fetch_all(&shop)
        .await
        .unwrap();
    assert_eq!(left, vec![(2,)], "her namesake with another email stays");
    let orders: Vec<(i64,)> = sqlx::query_as("SELECT id FROM shop.orders ORDER BY id")
        .fetch_all(&shop)
        .await
        .unwrap();
    assert_eq!(orders, vec![(12,)]);

    shop.close().await;
    drop(app);
    external.drop().await;
}

#[sqlx::test]
async fn an_external_database_serves_its_organization_only(pool: PgPool) {
    let external = ExternalDb::create(&pool).await;
    let shop = PgPool::connect(&external.url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE customers (id bigint PRIMARY KEY, email text)")
        .execute(&shop)
        .await
        .unwrap();
    let other_org = organization(&pool, "acme").await;
    let tables = "[[service.table]]\nname = \"customers\"\nmatch = { email = \"EMAIL\" }\n";
    let app = app_with(pool.clone(), demo_and(&external.service(other_org, tables))).await;
    let demo_token = app.token("demo", ALL_PERMISSIONS).await;
    let acme_token = app.token("acme", ALL_PERMISSIONS).await;
    let subject = json!({"emailAddresses": [EMAIL]});
    let demo_request = app
        .accepted(
            &demo_token,
            json!({"requestType": "GDPR_GET", "subject": subject}),
        )
        .await;
    let services: Vec<&str> = demo_request["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["service"].as_str().unwrap())
        .collect();
    assert!(!services.contains(&"shop"), "{services:?}");
    let acme_request = app
        .accepted(
            &acme_token,
            json!({"requestType": "GDPR_GET", "subject": subject}),
        )
        .await;
    assert!(
        acme_request["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["service"] == "shop")
    );
    shop.close().await;
    drop(app);
    external.drop().await;
}

#[test]
fn a_catalog_with_an_external_database_needs_its_organization() {
    let error = r#"
[[service]]
name = "shop"
erasure = "delete"
purpose = "p"
categories = ["c"]
retention = "r"
database_url = "postgres://shop@db.internal/shop"

[[service.table]]
name = "customers"
match = { email = "EMAIL" }
"#
    .parse::<Catalog>()
    .unwrap_err()
    .to_string();
    assert!(error.contains("organization"), "{error}");

    let error = r#"
[[service]]
name = "crm"
erasure = "delete"
purpose = "p"
categories = ["c"]
retention = "r"
http = { url = "https://crm.example.com/gdpr", secrets = ["not-a-secret"] }
"#
    .parse::<Catalog>()
    .unwrap_err()
    .to_string();
    assert!(error.contains("whsec_"), "{error}");
}

#[sqlx::test]
async fn a_services_answer_quoting_the_subject_is_stored_redacted(pool: PgPool) {
    let (receiver, url) = Receiver::start(|_| {
        Reply::Status(
            422,
            json!({"message": format!("customer {} (Lena Berg) is on legal hold", EMAIL.to_uppercase())}),
        )
    })
    .await;
    let (app, token) = app_with_crm(pool, &receiver, &url).await;
    let done = erase_lena(&app, &token).await;
    let error = crm_job(&done)["error"].as_str().unwrap().to_owned();
    assert!(error.contains("is on legal hold"), "{error}");
    assert!(
        !error.to_lowercase().contains(EMAIL) && !error.contains("Lena Berg"),
        "{error}"
    );
    let stored: String = sqlx::query_scalar(
        "SELECT last_error FROM gdpr_jobs WHERE request_id = $1::uuid AND service = 'crm'",
    )
    .bind(done["id"].as_str().unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, error);
}

#[sqlx::test]
async fn a_callback_arriving_before_the_202_is_recorded_counts(pool: PgPool) {
    // The service posts its result while gdprd is still waiting for the answer to its call.
    let (receiver, url) =
        Receiver::start(|_| Reply::CallBackFirst(json!({"matched": 1, "deleted": 1}))).await;
    let (app, token) = app_with_crm(pool, &receiver, &url).await;
    let done = erase_lena(&app, &token).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let job = crm_job(&done);
    assert_eq!(
        (job["deleted"].clone(), job["attempts"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(*receiver.callbacks.lock().unwrap(), vec![204]);
    assert_eq!(receiver.calls().len(), 1, "the job was sent once");
}
