//! The security model, end to end: organizations never see or touch each other's data on any
//! endpoint, tokens expire and can be revoked (everywhere at once), signed result links cannot
//! be forged or outlive the person's erasure, and a full run of the real server logs no
//! identifier of the person it worked on.

use std::io::Read;
use std::time::Duration;

use gdprd::config::HttpSettings;
use gdprd::seed::story;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{ALL_PERMISSIONS, TestApp, expect_error, seed};
use crate::support::{Gdprd, database_url, snapshot, token_at};

/// The API in process and a `gdprd worker` process (which, unlike a worker task, lets the test's
/// pool close when the test ends).
async fn app_and_worker(pool: &PgPool) -> (TestApp, Gdprd) {
    let worker = Gdprd::worker(&database_url(pool), &[]);
    (TestApp::spawn_without_worker(pool.clone()).await, worker)
}

/// Ana García's person-records, as the demo organization's index knows them.
struct Ana {
    external_contact: String,
    dialer_contact: String,
    contact_list: String,
    cookie: String,
}

async fn ana_records(app: &TestApp, token: &str) -> Ana {
    let found = app.found(token, "EMAIL", story::ANA_EMAIL).await;
    let field = |path: &[&str]| {
        found
            .iter()
            .find_map(|e| {
                let mut v = e;
                for p in path {
                    v = &v[*p];
                }
                v.as_str().map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no {path:?} in {found:?}"))
    };
    Ana {
        external_contact: field(&["externalContactId"]),
        dialer_contact: field(&["dialerContactId", "id"]),
        contact_list: field(&["dialerContactId", "contactListId"]),
        cookie: field(&["journeyCustomer", "id"]),
    }
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// The text of every file of a ZIP archive.
fn unzip(bytes: &[u8]) -> String {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut text = String::new();
    for i in 0..archive.len() {
        archive
            .by_index(i)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
    }
    text
}

/// The content of the demo data services, and of the demo organization's index.
async fn demo_state(pool: &PgPool) -> (Vec<(String, i64, String)>, String) {
    let services: Vec<_> = snapshot(pool)
        .await
        .into_iter()
        .filter(|(table, _, _)| table.starts_with("demo."))
        .collect();
    let index: Option<String> = sqlx::query_scalar(
        "SELECT md5(string_agg(s::text, '|' ORDER BY s.id)) FROM subjects s
           JOIN organizations o ON o.id = s.org_id WHERE o.name = 'demo'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    (services, index.unwrap_or_default())
}

#[sqlx::test]
async fn every_endpoint_refuses_another_organizations_data(pool: PgPool) {
    seed(&pool, 3).await;
    let (app, _worker) = app_and_worker(&pool).await;
    let demo = app.token("demo", ALL_PERMISSIONS).await;
    let globex = app.token("globex", ALL_PERMISSIONS).await;
    let ana = ana_records(&app, &demo).await;
    let jonas = app.found(&demo, "EMAIL", story::JONAS_EMAIL).await;
    let jonas = jonas[0]["userId"].as_str().unwrap().to_owned();

    let export = app
        .accepted(
            &demo,
            json!({"requestType": "GDPR_EXPORT", "subject": {"emailAddresses": [story::ANA_EMAIL]}}),
        )
        .await;
    let id = export["id"].as_str().unwrap().to_owned();
    let link = app.finished(&demo, &id).await["resultsUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = demo_state(&pool).await;

    // Requests: neither one by one, nor in the listing, nor their results.
    let get = call(
        &app,
        Method::GET,
        &format!("/api/v2/gdpr/requests/{id}"),
        &globex,
        None,
    )
    .await;
    expect_error(get, 404, "not.found").await;
    let listed: Value = call(&app, Method::GET, "/api/v2/gdpr/requests", &globex, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["total"], 0, "{listed}");
    let (base, _) = link.split_once('?').unwrap();
    let forged = app
        .http
        .get(format!(
            "{base}?expires=9999999999&signature={}",
            "0".repeat(64)
        ))
        .bearer_auth(&globex)
        .send()
        .await
        .unwrap();
    expect_error(forged, 403, "not.authorized").await;

    // The index: no search finds her, no write reaches her records.
    for (search_type, value) in [
        ("EMAIL", story::ANA_EMAIL),
        ("PHONE", story::ANA_PHONE),
        ("NAME", story::ANA_NAME),
        ("ADDRESS", story::ANA_ADDRESS),
        ("TWITTER", story::ANA_TWITTER),
        ("EXTERNAL_ID", story::ANA_EXTERNAL_ID),
        ("EMAIL", story::JONAS_EMAIL),
    ] {
        let found = app.found(&globex, search_type, value).await;
        assert!(found.is_empty(), "{search_type}: {found:?}");
    }
    let keys = [
        format!("users/{jonas}"),
        format!("externalContacts/{}", ana.external_contact),
        format!("dialerContacts/{}:{}", ana.contact_list, ana.dialer_contact),
        format!("journeyCustomers/cookie:{}", ana.cookie),
    ];
    for key in &keys {
        let path = format!("/api/v2/gdpr/index/subjects/{key}");
        let delete = call(&app, Method::DELETE, &path, &globex, None).await;
        expect_error(delete, 404, "not.found").await;
    }
    // Requests naming her records by id: unknown here.
    let subjects = [
        json!({"userId": jonas}),
        json!({"externalContactId": ana.external_contact}),
        json!({"dialerContactId": {"id": ana.dialer_contact, "contactListId": ana.contact_list}}),
        json!({"journeyCustomer": {"type": "cookie", "id": ana.cookie}}),
    ];
    for subject in &subjects {
        for request_type in ["GDPR_EXPORT", "GDPR_GET", "GDPR_DELETE"] {
            let body = json!({"requestType": request_type, "subject": subject});
            let response = app.submit(&globex, &body, true).await;
            expect_error(response, 404, "not.found").await;
        }
    }

    // The same id in another organization is another record.
    let put = call(
        &app,
        Method::PUT,
        &format!("/api/v2/gdpr/index/subjects/users/{jonas}"),
        &globex,
        Some(json!({"userId": jonas, "name": "Someone Else"})),
    )
    .await;
    assert_eq!(put.status(), StatusCode::OK);
    let written = app
        .write_index(
            &globex,
            &json!([{"externalContactId": ana.external_contact, "name": "Another Person"}]),
        )
        .await;
    assert_eq!(written.status(), StatusCode::OK);

    // Requests naming her by her identifiers: they run in globex's data, where she is not.
    let ana_terms = json!({
        "emailAddresses": [story::ANA_EMAIL],
        "phoneNumbers": [story::ANA_PHONE],
    });
    let erase = app
        .accepted(
            &globex,
            json!({"requestType": "GDPR_DELETE", "subject": ana_terms}),
        )
        .await;
    let erase = app.finished(&globex, erase["id"].as_str().unwrap()).await;
    assert_eq!(erase["status"], "COMPLETED", "{erase}");
    for job in erase["jobs"].as_array().unwrap() {
        assert_eq!(job["matched"], 0, "{job}");
        assert_eq!(
            job["deleted"].as_i64().unwrap() + job["anonymized"].as_i64().unwrap(),
            0
        );
    }
    let export = app
        .accepted(
            &globex,
            json!({"requestType": "GDPR_EXPORT", "subject": ana_terms}),
        )
        .await;
    let export = app.finished(&globex, export["id"].as_str().unwrap()).await;
    let archive = reqwest::get(export["resultsUrl"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let text = unzip(&archive);
    for leak in [
        "García",
        "Calle Mayor",
        story::ANA_EXTERNAL_ID,
        "AnaG",
        &ana.cookie,
    ] {
        assert!(!text.contains(leak), "globex's export holds {leak}");
    }

    // An Idempotency-Key belongs to its client: another organization's use of it is its own.
    let keyed = |token: &str, email: &str| {
        app.http
            .post(app.url("/api/v2/gdpr/requests"))
            .bearer_auth(token)
            .header("Idempotency-Key", "shared-key-1")
            .json(&json!({"requestType": "GDPR_GET", "subject": {"emailAddresses": [email]}}))
            .send()
    };
    let first = keyed(&demo, story::OTHER_ANA_EMAIL).await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let second = keyed(&globex, "someone@example.net").await.unwrap();
    assert_eq!(second.status(), StatusCode::ACCEPTED);
    let second: Value = second.json().await.unwrap();
    assert_ne!(first["id"], second["id"]);

    // Nothing of the demo organization changed, and it still finds her.
    assert_eq!(demo_state(&pool).await, before);
    assert_eq!(app.found(&demo, "EMAIL", story::ANA_EMAIL).await.len(), 3);
    let jonas_now = app.found(&demo, "EMAIL", story::JONAS_EMAIL).await;
    assert_eq!(jonas_now[0]["name"], story::JONAS_NAME);
    assert_eq!(reqwest::get(&link).await.unwrap().status(), StatusCode::OK);
}

/// Every kind of call a token can make, for checking that a dead token fails on all of them.
async fn every_call(app: &TestApp, token: &str) -> Vec<(String, reqwest::Response)> {
    let request_body =
        json!({"requestType": "GDPR_GET", "subject": {"emailAddresses": ["x@example.com"]}});
    let record = json!({"userId": "u-1", "name": "Someone"});
    let calls: Vec<(Method, &str, Option<Value>)> = vec![
        (
            Method::GET,
            "/api/v2/gdpr/subjects?searchType=EMAIL&searchValue=x@example.com",
            None,
        ),
        (Method::GET, "/api/v2/gdpr/requests", None),
        (
            Method::GET,
            "/api/v2/gdpr/requests/01a2047b-41c6-77d9-8cde-1422fc27f336",
            None,
        ),
        (Method::POST, "/api/v2/gdpr/requests", Some(request_body)),
        (
            Method::POST,
            "/api/v2/gdpr/index/subjects",
            Some(json!([record.clone()])),
        ),
        (
            Method::PUT,
            "/api/v2/gdpr/index/subjects/users/u-1",
            Some(record),
        ),
        (
            Method::DELETE,
            "/api/v2/gdpr/index/subjects/users/u-1",
            None,
        ),
        (Method::DELETE, "/api/v2/tokens/me", None),
    ];
    let mut out = Vec::new();
    for (method, path, body) in calls {
        let name = format!("{method} {path}");
        out.push((name, call(app, method, path, token, body).await));
    }
    out
}

/// What a call with an expired or revoked token gets: `credentials.expired`, except revoking it
/// (again), which finds no live token to revoke.
fn dead_token_code(call: &str) -> &'static str {
    if call.ends_with("/api/v2/tokens/me") {
        "bad.credentials"
    } else {
        "credentials.expired"
    }
}

#[sqlx::test]
async fn tokens_expire_by_themselves_and_revocation_is_per_token_and_everywhere(pool: PgPool) {
    let short = HttpSettings {
        token_ttl_secs: 2,
        ..HttpSettings::default()
    };
    let app = TestApp::spawn_with_options(pool.clone(), short, None).await;
    let client = app.create_client("demo", ALL_PERMISSIONS).await;
    let issued: Value = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(issued["expires_in"], 2);
    let expiring = issued["access_token"].as_str().unwrap().to_owned();
    let revoked = app.token_for(&client).await;
    assert_eq!(
        app.search(&expiring, "EMAIL", "x@example.com")
            .await
            .status(),
        StatusCode::OK
    );

    let revoke = call(&app, Method::DELETE, "/api/v2/tokens/me", &revoked, None).await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    for (name, response) in every_call(&app, &revoked).await {
        expect_error(response, 401, dead_token_code(&name)).await;
    }

    tokio::time::sleep(Duration::from_millis(2_200)).await;
    for (name, response) in every_call(&app, &expiring).await {
        expect_error(response, 401, dead_token_code(&name)).await;
    }
    // The client itself still works: a fresh token does.
    let fresh = app.token_for(&client).await;
    assert_eq!(
        app.search(&fresh, "EMAIL", "x@example.com").await.status(),
        StatusCode::OK
    );

    // A disabled client: its live tokens stop working and it gets no new one.
    sqlx::query("UPDATE api_clients SET disabled_at = now() WHERE id = $1::uuid")
        .bind(&client.id)
        .execute(&pool)
        .await
        .unwrap();
    let refused = app.search(&fresh, "EMAIL", "x@example.com").await;
    expect_error(refused, 401, "credentials.expired").await;
    let denied = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    expect_error(denied, 401, "bad.credentials").await;
}

#[sqlx::test]
async fn a_revoked_token_leaves_the_clients_other_tokens_working(pool: PgPool) {
    let app = TestApp::spawn_without_worker(pool).await;
    let client = app.create_client("demo", ALL_PERMISSIONS).await;
    let first = app.token_for(&client).await;
    let second = app.token_for(&client).await;
    let revoke = call(&app, Method::DELETE, "/api/v2/tokens/me", &first, None).await;
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    expect_error(
        app.search(&first, "EMAIL", "x@example.com").await,
        401,
        "credentials.expired",
    )
    .await;
    assert_eq!(
        app.search(&second, "EMAIL", "x@example.com").await.status(),
        StatusCode::OK
    );
}

#[sqlx::test]
async fn result_links_resist_tampering_and_die_with_the_erasure(pool: PgPool) {
    seed(&pool, 3).await;
    let (app, _worker) = app_and_worker(&pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let ana = ana_records(&app, &token).await;
    let export = app
        .accepted(
            &token,
            json!({"requestType": "GDPR_EXPORT", "subject": {"emailAddresses": [story::ANA_EMAIL]}}),
        )
        .await;
    let id = export["id"].as_str().unwrap().to_owned();
    let link = app.finished(&token, &id).await["resultsUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(reqwest::get(&link).await.unwrap().status(), StatusCode::OK);
    let (path, query) = link.split_once('?').unwrap();
    let signature = query.rsplit_once("signature=").unwrap().1;
    let expires = query
        .split('&')
        .find_map(|p| p.strip_prefix("expires="))
        .unwrap();
    let (dir, _) = path.rsplit_once('/').unwrap();
    for tampered in [
        format!("{dir}/other.zip?{query}"),
        format!("{dir}/..%2F..%2F..%2Fetc%2Fpasswd?{query}"),
        format!("{dir}/gdpr-export-{id}.zip%00.txt?{query}"),
        format!("{path}?expires={expires}&signature={}", &signature[..32]),
        format!("{path}?expires={expires}&signature="),
        format!("{path}?expires={expires}&signature=zz{}", &signature[2..]),
        format!(
            "{path}?expires={expires}&signature={signature}{}",
            "0".repeat(10_000)
        ),
        format!("{path}?expires={expires}1&signature={signature}"),
        format!("{path}?expires=-{expires}&signature={signature}"),
        format!("{path}?signature={signature}"),
    ] {
        let response = reqwest::get(&tampered).await.unwrap();
        expect_error(response, 403, "not.authorized").await;
    }

    // Once she is erased, her archive is gone, link or no link.
    let erase = app
        .accepted(
            &token,
            json!({"requestType": "GDPR_DELETE", "subject": {"externalContactId": ana.external_contact}}),
        )
        .await;
    let erase = app.finished(&token, erase["id"].as_str().unwrap()).await;
    assert_eq!(erase["status"], "COMPLETED", "{erase}");
    let gone = reqwest::get(&link).await.unwrap();
    expect_error(gone, 404, "not.found").await;
    assert!(
        app.found(&token, "EMAIL", story::ANA_EMAIL)
            .await
            .is_empty()
    );
}

/// Every identifier of Ana García, in every spelling seen in requests, searches and data.
fn ana_identifiers(records: &Ana, new_email: &str) -> Vec<String> {
    let mut out: Vec<String> = [
        story::ANA_NAME,
        "Ana Garcia",
        "García",
        "Garcia",
        "garcia",
        story::ANA_EMAIL,
        story::ANA_ALT_EMAIL,
        new_email,
        story::ANA_PHONE,
        story::ANA_DIALER_PHONE,
        story::ANA_ALT_PHONE,
        story::ANA_PHONE_E164,
        "5550100001",
        "010-0001",
        "010 0001",
        story::ANA_ADDRESS,
        "Calle Mayor",
        "calle mayor",
        story::ANA_TWITTER,
        "AnaG",
        "\"anag\"",
        story::ANA_EXTERNAL_ID,
        "crm-000001",
        story::ANA_COOKIE,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    out.extend([
        records.external_contact.clone(),
        records.dialer_contact.clone(),
        records.cookie.clone(),
    ]);
    out
}

#[sqlx::test]
async fn a_full_run_of_the_server_logs_no_identifier_of_the_person(pool: PgPool) {
    seed(&pool, 3).await;
    let server = Gdprd::serve(
        &database_url(&pool),
        true,
        &[
            ("GDPRD_LOG", "debug"),
            ("GDPRD_LOG_FORMAT", "json"),
            ("GDPRD_JOB_LEASE_SECS", "60"),
        ],
    )
    .await;
    let mut server = server;
    let token = token_at(&pool, &server.base, "demo", ALL_PERMISSIONS).await;
    gdprd::outbound::install_crypto_provider();
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let get = |path: String| http.get(format!("{base}{path}")).bearer_auth(&token).send();

    // Search her by every identifier type.
    let mut records = None;
    for (search_type, value) in [
        ("EMAIL", story::ANA_EMAIL),
        ("EMAIL", story::ANA_ALT_EMAIL),
        ("PHONE", story::ANA_PHONE),
        ("PHONE", story::ANA_DIALER_PHONE),
        ("NAME", story::ANA_NAME),
        ("ADDRESS", story::ANA_ADDRESS),
        ("TWITTER", story::ANA_TWITTER),
        ("EXTERNAL_ID", story::ANA_EXTERNAL_ID),
    ] {
        let query =
            serde_urlencoded::to_string([("searchType", search_type), ("searchValue", value)])
                .unwrap();
        let found: Value = get(format!("/api/v2/gdpr/subjects?{query}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            found["total"].as_i64().unwrap() > 0,
            "{search_type}: {found}"
        );
        if search_type == "EMAIL" && records.is_none() {
            let find = |path: &[&str]| {
                found["entities"].as_array().unwrap().iter().find_map(|e| {
                    let mut v = e;
                    for p in path {
                        v = &v[*p];
                    }
                    v.as_str().map(str::to_owned)
                })
            };
            records = Some(Ana {
                external_contact: find(&["externalContactId"]).unwrap(),
                dialer_contact: find(&["dialerContactId", "id"]).unwrap(),
                contact_list: find(&["dialerContactId", "contactListId"]).unwrap(),
                cookie: find(&["journeyCustomer", "id"]).unwrap(),
            });
        }
    }
    let records = records.unwrap();

    // Ask what is held, export it, rectify an address, erase her.
    let new_email = "ana.renamed@example.net";
    let subject = json!({
        "emailAddresses": [story::ANA_EMAIL],
        "journeyCustomer": {"type": "cookie", "id": story::ANA_COOKIE},
    });
    let steps = [
        (
            json!({"requestType": "GDPR_GET", "subject": subject}),
            false,
        ),
        (
            json!({"requestType": "GDPR_EXPORT", "subject": subject}),
            false,
        ),
        (
            json!({
                "requestType": "GDPR_UPDATE",
                "subject": {"emailAddresses": [story::ANA_ALT_EMAIL]},
                "replacementTerms": [{"type": "EMAIL", "existingValue": story::ANA_ALT_EMAIL,
                                      "updatedValue": new_email}],
            }),
            false,
        ),
        (
            json!({"requestType": "GDPR_DELETE",
                   "subject": {"externalContactId": records.external_contact}}),
            true,
        ),
    ];
    for (body, confirmed) in steps {
        let mut post = http
            .post(format!("{base}/api/v2/gdpr/requests"))
            .bearer_auth(&token)
            .json(&body);
        if confirmed {
            post = post.query(&[("deleteConfirmed", "true")]);
        }
        let created = post.send().await.unwrap();
        assert_eq!(created.status(), StatusCode::ACCEPTED, "{body}");
        let created: Value = created.json().await.unwrap();
        let id = created["id"].as_str().unwrap();
        let mut done = Value::Null;
        for _ in 0..300 {
            done = get(format!("/api/v2/gdpr/requests/{id}"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if done["status"] == "COMPLETED" || done["status"] == "ERROR" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(done["status"], "COMPLETED", "{done}");
        if let Some(url) = done["resultsUrl"].as_str() {
            let archive = reqwest::get(url).await.unwrap();
            assert_eq!(archive.status(), StatusCode::OK);
        }
    }

    server.sigterm();
    let exited = server.exited_within(Duration::from_secs(30)).await;
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
    let logs = server.logs();
    assert!(
        logs.contains("\"job done\""),
        "the worker's jobs are logged"
    );
    assert!(
        logs.contains("/api/v2/gdpr/requests"),
        "the API calls are logged"
    );
    let lower = logs.to_lowercase();
    for identifier in ana_identifiers(&records, new_email) {
        assert!(!logs.contains(&identifier), "the log holds {identifier}");
        // "anag" is also part of ordinary words ("management"); its quoted form is checked.
        if identifier != "AnaG" {
            let folded = identifier.to_lowercase();
            assert!(
                !lower.contains(&folded),
                "the log holds {identifier} (as {folded})"
            );
        }
    }
    println!(
        "figures: {} log lines, no identifier among them",
        logs.lines().count()
    );
}
