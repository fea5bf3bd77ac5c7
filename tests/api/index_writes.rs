use gdprd::config::HttpSettings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, expect_error, ids, people};

const WRITE: &[&str] = &["gdpr:subject:view", "gdpr:index:write"];

async fn post_ndjson(app: &TestApp, token: &str, body: &str) -> reqwest::Response {
    app.http
        .post(app.url("/api/v2/gdpr/index/subjects"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn index_size(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM subjects")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn ndjson_records_are_written_and_searchable(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", WRITE).await;
    let body = people()
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let response = post_ndjson(&app, &token, &format!("{body}\n\n")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"written": 6})
    );
    assert_eq!(index_size(&app).await, 6);
    assert_eq!(
        ids(&app.found(&token, "PHONE", "555 010 0002").await),
        ["ec-other-ana"]
    );
}

#[sqlx::test]
async fn a_bad_line_names_line_and_field_and_writes_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", WRITE).await;
    let body = [
        json!({"externalContactId": "a", "emailAddresses": ["a@example.com"]}).to_string(),
        json!({"externalContactId": "b", "phoneNumbers": ["+15550100009", "not a phone"]})
            .to_string(),
    ]
    .join("\n");
    let response = post_ndjson(&app, &token, &body).await;
    let error = expect_error(response, 400, "invalid.value").await;
    let message = error["message"].as_str().unwrap();
    assert!(message.starts_with("line 2: phoneNumbers[1]:"), "{message}");
    assert_eq!(error["details"][0]["fieldName"], "phoneNumbers[1]");
    assert_eq!(error["details"][0]["entityName"], "line 2");
    assert_eq!(index_size(&app).await, 0);
}

#[sqlx::test]
async fn json_array_errors_name_the_record_and_field(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", WRITE).await;
    let cases = [
        (
            json!([{"userId": "u1"}, {"userId": "u2", "emailAddress": ["x@example.com"]}]),
            "record 2: emailAddress:",
        ),
        (
            json!([{"userId": "u1", "phoneNumbers": "+15550100001"}]),
            "record 1: phoneNumbers:",
        ),
        (json!([{"name": "Nobody"}]), "record 1: subject:"),
        (
            json!([{"userId": "u1", "externalContactId": "e1"}]),
            "record 1: subject:",
        ),
        (
            json!([{"userId": "u1", "canonicalContactId": "c"}]),
            "record 1: canonicalContactId:",
        ),
        (
            json!([{"userId": "u1", "socialHandle": {"type": "MYSPACE", "value": "x"}}]),
            "record 1: socialHandle.type:",
        ),
        (
            json!([{"dialerContactId": {"id": "d1"}}]),
            "record 1: dialerContactId.contactListId:",
        ),
        (
            json!([{"userId": "u1"}, {"userId": " u1 "}]),
            "record 2: subject: the same user is also given at record 1",
        ),
        (json!({"userId": "u1"}), "line 1: body:"),
    ];
    for (records, expected) in cases {
        let response = app.write_index(&token, &records).await;
        let error = expect_error(response, 400, "invalid.value").await;
        let message = error["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{message} / {expected}");
    }
    assert_eq!(index_size(&app).await, 0);
}

#[sqlx::test]
async fn bulk_writes_have_a_record_limit_and_a_size_limit(pool: PgPool) {
    let settings = HttpSettings {
        index_max_records: 2,
        index_max_body_bytes: 4096,
        ..HttpSettings::default()
    };
    let app = TestApp::spawn_with(pool, settings).await;
    let token = app.token("demo", WRITE).await;
    let three = json!([{"userId": "1"}, {"userId": "2"}, {"userId": "3"}]);
    let error = expect_error(app.write_index(&token, &three).await, 400, "bad.request").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("at most 2 records")
    );

    let big: Vec<Value> = (0..2)
        .map(|i| json!({"userId": format!("u{i}"), "name": "x".repeat(3000)}))
        .collect();
    let error = expect_error(
        app.write_index(&token, &Value::Array(big)).await,
        413,
        "request.entity.too.large",
    )
    .await;
    assert!(error["message"].as_str().unwrap().contains("4096"));
    assert_eq!(index_size(&app).await, 0);
}

#[sqlx::test]
async fn writing_a_known_record_replaces_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", WRITE).await;
    app.index(&token, people()).await;
    let response = app
        .http
        .put(app.url("/api/v2/gdpr/index/subjects/users/u-jonas"))
        .bearer_auth(&token)
        .json(&json!({
            "userId": "u-jonas",
            "name": "Jonas Müller",
            "emailAddresses": ["jonas@new.example"]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap()["emailAddresses"],
        json!(["jonas@new.example"])
    );
    assert!(
        app.found(&token, "EMAIL", "jonas.mueller@corp.example")
            .await
            .is_empty()
    );
    assert!(
        app.found(&token, "PHONE", "(555) 010-0003")
            .await
            .is_empty()
    );
    assert_eq!(
        ids(&app.found(&token, "EMAIL", "JONAS@new.example").await),
        ["u-jonas"]
    );
    assert_eq!(index_size(&app).await, 6);
}

#[sqlx::test]
async fn put_creates_records_of_every_kind_at_their_path(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", WRITE).await;
    let cases = [
        (
            "externalContacts/ec-9",
            json!({"externalContactId": "ec-9", "name": "Zoë"}),
        ),
        (
            "dialerContacts/list-1:dc-9",
            json!({"dialerContactId": {"id": "dc-9", "contactListId": "list-1"}, "name": "Zoë"}),
        ),
        (
            "journeyCustomers/Cookie:abc",
            json!({"journeyCustomer": {"type": "cookie", "id": "abc"}, "name": "Zoë"}),
        ),
    ];
    for (path, record) in cases {
        let response = app
            .http
            .put(app.url(&format!("/api/v2/gdpr/index/subjects/{path}")))
            .bearer_auth(&token)
            .json(&record)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(app.found(&token, "NAME", "zoe").await.len(), 3);
}

#[sqlx::test]
async fn put_refuses_a_record_that_does_not_match_its_path(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", WRITE).await;
    let put = |path: &'static str, body: Value| {
        app.http
            .put(app.url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let mismatch = put(
        "/api/v2/gdpr/index/subjects/users/u-1",
        json!({"userId": "u-2"}),
    );
    expect_error(mismatch.await.unwrap(), 400, "bad.request").await;
    let wrong_kind = put(
        "/api/v2/gdpr/index/subjects/users/u-1",
        json!({"externalContactId": "u-1"}),
    );
    expect_error(wrong_kind.await.unwrap(), 400, "bad.request").await;
    let unknown_kind = put(
        "/api/v2/gdpr/index/subjects/robots/r-1",
        json!({"userId": "r-1"}),
    );
    expect_error(unknown_kind.await.unwrap(), 404, "not.found").await;
    let bad_value = put(
        "/api/v2/gdpr/index/subjects/users/u-1",
        json!({"userId": "u-1", "emailAddresses": ["nope"]}),
    );
    let error = expect_error(bad_value.await.unwrap(), 400, "invalid.value").await;
    assert_eq!(error["details"][0]["fieldName"], "emailAddresses[0]");
    assert_eq!(index_size(&app).await, 0);
}

#[sqlx::test]
async fn delete_removes_a_record_and_its_identifiers(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", WRITE).await;
    app.index(&token, people()).await;
    let delete = || {
        app.http
            .delete(app.url("/api/v2/gdpr/index/subjects/dialerContacts/list-1:dc-1"))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(delete().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert!(app.found(&token, "NAME", "Søren Ørsted").await.is_empty());
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM subject_identifiers WHERE value = '+442079460018'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(left, 0);
    expect_error(delete().await.unwrap(), 404, "not.found").await;
}

#[sqlx::test]
async fn index_writes_need_a_json_or_ndjson_body(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", WRITE).await;
    let text = app
        .http
        .post(app.url("/api/v2/gdpr/index/subjects"))
        .bearer_auth(&token)
        .header("content-type", "text/csv")
        .body("userId\nu1\n")
        .send()
        .await
        .unwrap();
    let error = expect_error(text, 415, "unsupported.media.type").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("application/x-ndjson")
    );
    let broken = app
        .http
        .post(app.url("/api/v2/gdpr/index/subjects"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("[{\"userId\": ")
        .send()
        .await
        .unwrap();
    expect_error(broken, 400, "invalid.value").await;
    let invalid_utf8 = app
        .http
        .post(app.url("/api/v2/gdpr/index/subjects"))
        .bearer_auth(&token)
        .header("content-type", "application/x-ndjson")
        .body(vec![b'{', 0xff, 0xfe, b'}'])
        .send()
        .await
        .unwrap();
    expect_error(invalid_utf8, 400, "bad.request").await;
}

#[sqlx::test]
async fn a_bulk_write_replaces_known_records_and_adds_new_ones(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", WRITE).await;
    app.index(&token, people()).await;
    let subject_ids = || async {
        sqlx::query_as::<_, (String, uuid::Uuid)>(
            "SELECT kind || '/' || ref_key, id FROM subjects ORDER BY 1",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap()
    };
    let identifiers = || async {
        sqlx::query_as::<_, (String, String, String)>(
            "SELECT s.kind || '/' || s.ref_key, i.id_type, i.value
               FROM subject_identifiers i JOIN subjects s ON s.id = i.subject_id
              ORDER BY 1, 2, 3",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap()
    };
    let before = subject_ids().await;
    let original = identifiers().await;
    let untouched: Vec<_> = identifiers()
        .await
        .into_iter()
        .filter(|(key, _, _)| key != "user/u-jonas")
        .collect();

    // One known record with new identifiers, one new record; the others are left alone.
    app.index(
        &token,
        json!([
            {"userId": "u-jonas", "name": "Jonas Müller", "emailAddresses": ["jonas@new.example"]},
            {"userId": "u-new", "phoneNumbers": ["(555) 010-0003"]}
        ]),
    )
    .await;
    let after = subject_ids().await;
    assert_eq!(after.len(), before.len() + 1);
    for (key, id) in &before {
        assert!(after.contains(&(key.clone(), *id)), "{key} keeps its id");
    }
    let mut expected = untouched;
    expected.extend([
        (
            "user/u-jonas".into(),
            "EMAIL".into(),
            "jonas@new.example".into(),
        ),
        ("user/u-jonas".into(), "NAME".into(), "jonas muller".into()),
        ("user/u-new".into(), "PHONE".into(), "+15550100003".into()),
    ]);
    expected.sort();
    assert_eq!(identifiers().await, expected);
    assert_eq!(
        ids(&app.found(&token, "PHONE", "(555) 010-0003").await),
        ["u-new"]
    );

    // Writing the first records again restores their identifiers; ids stay as they are.
    app.index(&token, people()).await;
    assert_eq!(subject_ids().await, after);
    let mut expected = original;
    expected.push(("user/u-new".into(), "PHONE".into(), "+15550100003".into()));
    expected.sort();
    assert_eq!(identifiers().await, expected);
}

#[sqlx::test]
async fn first_writes_racing_into_an_empty_organization_all_land(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", WRITE).await;
    // A first write goes straight into the index; one beside it must wait and then merge, not
    // collide with it. Both write "u-shared".
    let many = (0..5_000)
        .map(|i| json!({"userId": format!("u-{i}"), "emailAddresses": [format!("p{i}@example.com")]}))
        .chain([json!({"userId": "u-shared", "emailAddresses": ["first@example.com"]})])
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let few = [
        json!({"userId": "u-shared", "emailAddresses": ["second@example.com"]}),
        json!({"externalContactId": "c-1", "phoneNumbers": ["(555) 010-0004"]}),
    ]
    .map(|r| r.to_string())
    .join("\n");
    let (a, b) = tokio::join!(
        post_ndjson(&app, &token, &many),
        post_ndjson(&app, &token, &few)
    );
    for response in [a, b] {
        let status = response.status();
        assert_eq!(status, StatusCode::OK, "{}", response.text().await.unwrap());
    }
    assert_eq!(index_size(&app).await, 5_002);
    // "u-shared" is one record with the identifiers of whichever write came last.
    let shared: Vec<String> = sqlx::query_scalar(
        "SELECT i.value FROM subject_identifiers i JOIN subjects s ON s.id = i.subject_id
          WHERE s.ref_key = 'u-shared'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(shared.len(), 1, "{shared:?}");
    assert_eq!(
        ids(&app.found(&token, "PHONE", "555 010 0004").await),
        ["c-1"]
    );
    assert_eq!(
        ids(&app.found(&token, "EMAIL", "p4999@example.com").await),
        ["u-4999"]
    );
}

#[sqlx::test]
async fn the_index_keeps_no_identifier_without_its_record(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", WRITE).await;
    app.index(&token, people()).await;
    let org: uuid::Uuid = sqlx::query_scalar("SELECT org_id FROM subjects LIMIT 1")
        .fetch_one(&app.pool)
        .await
        .unwrap();

    // An identifier of no record is refused, as a foreign key would refuse it; so is one that
    // names its record with another kind or key than the record's own (the search orders by
    // the identifier's copy of them).
    let user: uuid::Uuid = sqlx::query_scalar("SELECT id FROM subjects WHERE ref_key = 'u-jonas'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    for (subject, kind, key) in [
        (uuid::Uuid::now_v7(), "user", "u-nobody"),
        (user, "externalContact", "u-jonas"),
        (user, "user", "u-someone-else"),
    ] {
        let orphan = sqlx::query(
            "INSERT INTO subject_identifiers (org_id, id_type, value, subject_id, kind, ref_key)
             VALUES ($1, 'EMAIL', 'nobody@example.com', $2, $3, $4)",
        )
        .bind(org)
        .bind(subject)
        .bind(kind)
        .bind(key)
        .execute(&app.pool)
        .await
        .unwrap_err();
        let code = orphan.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("23503"), "{kind} {orphan}");
    }
    // So is moving identifiers to another record, a record to another organization, or giving
    // either another kind or key.
    for change in [
        "UPDATE subject_identifiers SET subject_id = gen_random_uuid()",
        "UPDATE subjects SET org_id = gen_random_uuid()",
        "UPDATE subjects SET ref_key = ref_key || '-2'",
        "UPDATE subjects SET kind = 'user' WHERE kind = 'externalContact'",
        "UPDATE subject_identifiers SET ref_key = ref_key || '-2'",
        "UPDATE subject_identifiers SET kind = 'user' WHERE kind = 'externalContact'",
    ] {
        let error = sqlx::query(change).execute(&app.pool).await.unwrap_err();
        let code = error.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("23503"), "{change}: {error}");
    }

    // Deleting records, however it is done, deletes their identifiers.
    let identifiers = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM subject_identifiers")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    assert!(identifiers().await > 0);
    sqlx::query("DELETE FROM subjects WHERE kind = 'user'")
        .execute(&app.pool)
        .await
        .unwrap();
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM subject_identifiers i
          WHERE NOT EXISTS (SELECT 1 FROM subjects s WHERE s.id = i.subject_id)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    assert!(identifiers().await > 0);
    sqlx::query("TRUNCATE subjects")
        .execute(&app.pool)
        .await
        .unwrap();
    assert_eq!(identifiers().await, 0);
}
