use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, expect_error, ids, people};

async fn app_with_people(pool: PgPool) -> (TestApp, String) {
    let app = TestApp::spawn(pool).await;
    let token = app
        .token("demo", &["gdpr:subject:view", "gdpr:index:write"])
        .await;
    app.index(&token, people()).await;
    (app, token)
}

#[sqlx::test]
async fn phone_numbers_in_any_spelling_find_the_same_records(pool: PgPool) {
    let (app, token) = app_with_people(pool).await;
    for spelling in [
        "+1 (555) 010-0001",
        "555-010-0001",
        "+15550100001",
        "(555) 010 0001",
    ] {
        let found = app.found(&token, "PHONE", spelling).await;
        assert_eq!(ids(&found), ["ec-ana-1", "ec-ana-2"], "{spelling}");
    }
}

#[sqlx::test]
async fn email_search_ignores_case_and_surrounding_space(pool: PgPool) {
    let (app, token) = app_with_people(pool).await;
    let found = app.found(&token, "EMAIL", "ANA.GARCIA@Example.com ").await;
    assert_eq!(ids(&found), ["anagarciacookie0000000000a", "ec-ana-1"]);
}

#[sqlx::test]
async fn name_search_folds_accents_case_and_space(pool: PgPool) {
    let (app, token) = app_with_people(pool).await;
    let found = app.found(&token, "NAME", "ana  garcia").await;
    assert_eq!(ids(&found), ["ec-ana-1", "ec-ana-2", "ec-other-ana"]);
    let found = app.found(&token, "NAME", "SOREN ORSTED").await;
    assert_eq!(ids(&found), ["dc-1"]);
}

#[sqlx::test]
async fn handles_are_found_without_at_sign_and_case(pool: PgPool) {
    let (app, token) = app_with_people(pool).await;
    assert_eq!(
        ids(&app.found(&token, "TWITTER", "@AnaG").await),
        ["ec-ana-1"]
    );
    assert_eq!(
        ids(&app.found(&token, "TWITTER", "anag").await),
        ["ec-ana-1"]
    );
    assert!(app.found(&token, "INSTAGRAM", "anag").await.is_empty());
    assert_eq!(
        ids(&app.found(&token, "WHATSAPP", "+442079460018").await),
        ["dc-1"]
    );
}

#[sqlx::test]
async fn every_search_type_finds_its_record(pool: PgPool) {
    let (app, token) = app_with_people(pool).await;
    app.index(
        &token,
        json!([
            {"externalContactId": "ig", "socialHandle": {"type": "INSTAGRAM", "value": "@Ig.User"}},
            {"externalContactId": "fb", "socialHandle": {"type": "FACEBOOK", "value": "FB.User"}},
            {"externalContactId": "am", "socialHandle": {"type": "APPLE_MESSAGES", "value": "urn:mbid:ABC"}}
        ]),
    )
    .await;
    let cases = [
        ("NAME", "Jonas Muller", "u-jonas"),
        ("ADDRESS", "12 calle mayor,  MADRID", "ec-ana-1"),
        ("PHONE", "555 010 0003", "u-jonas"),
        ("EMAIL", "Jonas.Mueller@corp.example", "u-jonas"),
        ("TWITTER", "@anag", "ec-ana-1"),
        ("INSTAGRAM", "ig.user", "ig"),
        ("FACEBOOK", "@fb.user", "fb"),
        ("APPLE_MESSAGES", "URN:MBID:abc", "am"),
        ("WHATSAPP", "+44 20 7946 0018", "dc-1"),
        ("EXTERNAL_ID", " CRM-000001 ", "ec-ana-1"),
    ];
    for (search_type, value, id) in cases {
        assert_eq!(
            ids(&app.found(&token, search_type, value).await),
            [id],
            "{search_type}"
        );
    }
}

#[sqlx::test]
async fn results_carry_every_field_and_the_listing_envelope(pool: PgPool) {
    let (app, token) = app_with_people(pool).await;
    let response = app.search(&token, "EXTERNAL_ID", "CRM-000001").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["entities"][0],
        json!({
            "externalContactId": "ec-ana-1",
            "canonicalContactId": "ec-ana-1",
            "name": "Ana García",
            "emailAddresses": ["ana.garcia@example.com"],
            "phoneNumbers": ["(555) 010-0001"],
            "addresses": ["12 Calle Mayor, Madrid"],
            "socialHandle": {"type": "TWITTER", "value": "@AnaG"},
            "externalId": "CRM-000001"
        })
    );
    assert_eq!(body["total"], 1);
    assert_eq!(body["pageNumber"], 1);
    assert_eq!(body["pageCount"], 1);
    assert_eq!(body["pageSize"], 100);
    let self_uri = body["selfUri"].as_str().unwrap();
    assert!(
        self_uri.starts_with("/api/v2/gdpr/subjects?searchType=EXTERNAL_ID&searchValue=CRM-000001")
    );
    assert_eq!(body["firstUri"], body["lastUri"]);
    assert!(body.get("nextUri").is_none() && body.get("previousUri").is_none());
}

#[sqlx::test]
async fn members_of_a_merge_set_come_back_one_by_one(pool: PgPool) {
    let (app, token) = app_with_people(pool).await;
    let found = app.found(&token, "PHONE", "+15550100001").await;
    assert_eq!(found.len(), 2);
    for member in &found {
        assert_eq!(member["canonicalContactId"], "ec-ana-1");
    }
}

#[sqlx::test]
async fn pages_of_a_large_result(pool: PgPool) {
    let (app, token) = app_with_people(pool).await;
    let body = app.search_page(&token, "NAME", "Ana García", 2, 2).await;
    assert_eq!(ids(body["entities"].as_array().unwrap()), ["ec-other-ana"]);
    assert_eq!(body["total"], 3);
    assert_eq!(body["pageCount"], 2);
    assert!(
        body["previousUri"]
            .as_str()
            .unwrap()
            .ends_with("pageNumber=1")
    );
}

#[sqlx::test]
async fn a_common_name_pages_through_every_record_in_kind_and_key_order(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app
        .token("demo", &["gdpr:subject:view", "gdpr:index:write"])
        .await;
    let record = |kind: &str, n: usize| {
        let (field, key) = match kind {
            "user" => ("userId", format!("u-{n:02}")),
            _ => ("externalContactId", format!("ec-{n:02}")),
        };
        json!({field: key, "name": "Kim Lee", "emailAddresses": [format!("{key}@example.com")]})
    };
    // A first import goes straight into the index, a later one through the merge (which
    // replaces known records and adds new ones): both write the identifiers.
    let first: Vec<Value> = (0..20)
        .rev()
        .filter(|n| n % 2 == 0)
        .flat_map(|n| [record("user", n), record("externalContact", n)])
        .collect();
    app.index(&token, Value::Array(first)).await;
    let second: Vec<Value> = (0..20)
        .flat_map(|n| [record("externalContact", n), record("user", n)])
        .collect();
    app.index(&token, Value::Array(second)).await;

    let mut seen = Vec::new();
    for page in 1..=6 {
        let body = app.search_page(&token, "NAME", "kim  LEE", 7, page).await;
        assert_eq!(body["total"], 40, "page {page}");
        assert_eq!(body["pageCount"], 6, "page {page}");
        let entities = body["entities"].as_array().unwrap();
        assert_eq!(entities.len(), if page < 6 { 7 } else { 5 }, "page {page}");
        for e in entities {
            let key = e["externalContactId"].as_str().or(e["userId"].as_str());
            seen.push(key.unwrap().to_owned());
        }
    }
    // External contacts before users (the kinds' order), each kind by its key.
    let expected: Vec<String> = (0..20)
        .map(|n| format!("ec-{n:02}"))
        .chain((0..20).map(|n| format!("u-{n:02}")))
        .collect();
    assert_eq!(seen, expected);
}

/// The backends of the app's search connections.
async fn search_backends(pool: &PgPool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = $1 ORDER BY pid",
    )
    .bind(gdprd::db::SEARCH_APPLICATION_NAME)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn a_search_connection_closed_by_postgresql_is_replaced_without_an_error(pool: PgPool) {
    let (app, token) = app_with_people(pool.clone()).await;
    let found = app.found(&token, "EMAIL", "ana.garcia@example.com").await;
    assert_eq!(ids(&found), ["anagarciacookie0000000000a", "ec-ana-1"]);
    let before = search_backends(&pool).await;
    assert_eq!(before.len(), 1, "one search, one connection");
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)")
        .bind(before[0])
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(ended);

    // At once, before the idle check would look at the connection: the search runs again on a
    // new one, and the caller sees nothing of it.
    let found = app.found(&token, "EMAIL", "ana.garcia@example.com").await;
    assert_eq!(ids(&found), ["anagarciacookie0000000000a", "ec-ana-1"]);
    let after = search_backends(&pool).await;
    assert_eq!(after.len(), 1, "the closed connection is gone: {after:?}");
    assert_ne!(after, before);
}

#[sqlx::test]
async fn no_match_is_an_empty_listing(pool: PgPool) {
    let (app, token) = app_with_people(pool).await;
    let response = app.search(&token, "EMAIL", "nobody@example.com").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["entities"], json!([]));
    assert_eq!(body["total"], 0);
    assert_eq!(body["pageCount"], 1);
}

#[sqlx::test]
async fn search_type_is_required_and_must_be_known(pool: PgPool) {
    let (app, token) = app_with_people(pool).await;
    let missing = app
        .http
        .get(app.url("/api/v2/gdpr/subjects?searchValue=x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body = expect_error(missing, 400, "invalid.value").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("NAME, ADDRESS, PHONE, EMAIL")
    );
    assert_eq!(body["details"][0]["fieldName"], "searchType");

    let unknown = app.search(&token, "USER_ID", "x").await;
    let body = expect_error(unknown, 400, "invalid.value").await;
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("[USER_ID]") && message.contains("EXTERNAL_ID"),
        "{message}"
    );
}

#[sqlx::test]
async fn search_value_is_required_and_must_fit_the_type(pool: PgPool) {
    let (app, token) = app_with_people(pool).await;
    let missing = app
        .http
        .get(app.url("/api/v2/gdpr/subjects?searchType=EMAIL"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body = expect_error(missing, 400, "invalid.value").await;
    assert_eq!(body["details"][0]["fieldName"], "searchValue");
    expect_error(
        app.search(&token, "EMAIL", "   ").await,
        400,
        "invalid.value",
    )
    .await;
    let body = expect_error(
        app.search(&token, "PHONE", "call me").await,
        400,
        "invalid.value",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not a phone number")
    );
    expect_error(
        app.search(&token, "EMAIL", "not-an-email").await,
        400,
        "invalid.value",
    )
    .await;
    let huge = "a".repeat(10_000);
    expect_error(
        app.search(&token, "NAME", &huge).await,
        400,
        "invalid.value",
    )
    .await;
    expect_error(
        app.search(&token, "EXTERNAL_ID", "a\u{0}b").await,
        400,
        "invalid.value",
    )
    .await;
}

#[sqlx::test]
async fn paging_parameters_are_validated(pool: PgPool) {
    let (app, token) = app_with_people(pool).await;
    for (size, number) in [
        ("0", "1"),
        ("101", "1"),
        ("ten", "1"),
        ("10", "0"),
        ("10", "-3"),
    ] {
        let response = app
            .http
            .get(app.url("/api/v2/gdpr/subjects"))
            .bearer_auth(&token)
            .query(&[
                ("searchType", "NAME"),
                ("searchValue", "ana"),
                ("pageSize", size),
                ("pageNumber", number),
            ])
            .send()
            .await
            .unwrap();
        expect_error(response, 400, "invalid.value").await;
    }
}
