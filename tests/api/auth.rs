use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{ALL_PERMISSIONS, TestApp, expect_error, ids, people};

#[sqlx::test]
async fn client_credentials_give_a_bearer_token(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let client = app.create_client("demo", &["gdpr:subject:view"]).await;
    let response = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 86_400);
    let token = body["access_token"].as_str().unwrap();
    assert!(token.len() >= 40);
    let ok = app.search(token, "EMAIL", "someone@example.com").await;
    assert_eq!(ok.status(), StatusCode::OK);
}

#[sqlx::test]
async fn credentials_in_the_form_body_are_accepted(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let client = app.create_client("demo", &["gdpr:subject:view"]).await;
    let response = app
        .http
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client.id.as_str()),
            ("client_secret", client.secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[sqlx::test]
async fn wrong_credentials_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let client = app.create_client("demo", &["gdpr:subject:view"]).await;
    let token = |id: String, secret: String| {
        app.http
            .post(app.url("/oauth/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    let wrong_secret = token(client.id.clone(), "nope".into()).await.unwrap();
    expect_error(wrong_secret, 401, "bad.credentials").await;
    let unknown_client = token(uuid::Uuid::new_v4().to_string(), client.secret.clone())
        .await
        .unwrap();
    expect_error(unknown_client, 401, "bad.credentials").await;
    let not_a_uuid = token("client".into(), client.secret.clone()).await.unwrap();
    expect_error(not_a_uuid, 401, "bad.credentials").await;

    let no_credentials = app
        .http
        .post(app.url("/oauth/token"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    expect_error(no_credentials, 401, "authentication.required").await;
}

#[sqlx::test]
async fn token_requests_must_be_client_credentials_forms(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let client = app.create_client("demo", &["gdpr:subject:view"]).await;
    let password_grant = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    let body = expect_error(password_grant, 400, "invalid.value").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("client_credentials")
    );
    let json_body = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    expect_error(json_body, 415, "unsupported.media.type").await;
}

#[sqlx::test]
async fn api_calls_need_a_valid_bearer_token(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let url = app.url("/api/v2/gdpr/subjects?searchType=EMAIL&searchValue=a@b.c");
    let none = app.http.get(&url).send().await.unwrap();
    expect_error(none, 401, "authentication.required").await;
    let garbage = app
        .http
        .get(&url)
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    expect_error(garbage, 401, "bad.credentials").await;
    let basic = app
        .http
        .get(&url)
        .basic_auth("user", Some("pass"))
        .send()
        .await
        .unwrap();
    expect_error(basic, 401, "authentication.required").await;
}

#[sqlx::test]
async fn expired_tokens_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", &["gdpr:subject:view"]).await;
    sqlx::query("UPDATE access_tokens SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .unwrap();
    let response = app.search(&token, "EMAIL", "a@example.com").await;
    expect_error(response, 401, "credentials.expired").await;
}

#[sqlx::test]
async fn a_revoked_token_stops_working(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", &["gdpr:subject:view"]).await;
    let revoke = app
        .http
        .delete(app.url("/api/v2/tokens/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    let response = app.search(&token, "EMAIL", "a@example.com").await;
    expect_error(response, 401, "credentials.expired").await;
}

#[sqlx::test]
async fn tokens_and_secrets_are_stored_only_as_digests(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let client = app.create_client("demo", &["gdpr:subject:view"]).await;
    let token = app.token_for(&client).await;
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT encode(token_hash, 'escape') FROM access_tokens
         UNION ALL SELECT encode(secret_hash, 'escape') FROM api_clients",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 2);
    for value in stored {
        assert!(!value.contains(&token) && !value.contains(&client.secret));
    }
}

#[sqlx::test]
async fn a_missing_permission_is_named(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", &["gdpr:request:view"]).await;
    let search = app.search(&token, "EMAIL", "a@example.com").await;
    let body = expect_error(search, 403, "missing.any.permissions").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("gdpr:subject:view")
    );
    assert_eq!(body["messageParams"]["permissions"], "gdpr:subject:view");

    let write = app.write_index(&token, &people()).await;
    let body = expect_error(write, 403, "missing.any.permissions").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("gdpr:index:write")
    );
}

#[sqlx::test]
async fn a_client_never_sees_another_organizations_data(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let acme = app.token("acme", ALL_PERMISSIONS).await;
    let globex = app.token("globex", ALL_PERMISSIONS).await;
    app.index(&acme, people()).await;
    app.index(
        &globex,
        json!([{"externalContactId": "globex-ana", "emailAddresses": ["ana.garcia@example.com"]}]),
    )
    .await;

    let seen_by_acme = app.found(&acme, "EMAIL", "ana.garcia@example.com").await;
    assert_eq!(
        ids(&seen_by_acme),
        ["anagarciacookie0000000000a", "ec-ana-1"]
    );
    let seen_by_globex = app.found(&globex, "EMAIL", "ana.garcia@example.com").await;
    assert_eq!(ids(&seen_by_globex), ["globex-ana"]);
    assert!(app.found(&globex, "NAME", "Ana García").await.is_empty());

    let delete = app
        .http
        .delete(app.url("/api/v2/gdpr/index/subjects/externalContacts/ec-ana-1"))
        .bearer_auth(&globex)
        .send()
        .await
        .unwrap();
    expect_error(delete, 404, "not.found").await;
    assert_eq!(app.found(&acme, "EXTERNAL_ID", "CRM-000001").await.len(), 1);

    // The same record id in two organizations is two records.
    let put = app
        .http
        .put(app.url("/api/v2/gdpr/index/subjects/externalContacts/ec-ana-1"))
        .bearer_auth(&globex)
        .json(&json!({"externalContactId": "ec-ana-1", "name": "Someone Else"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    assert_eq!(ids(&app.found(&acme, "NAME", "ana garcia").await).len(), 3);
    assert!(app.found(&acme, "NAME", "someone else").await.is_empty());
}

#[sqlx::test]
async fn a_searching_client_loses_access_the_moment_the_database_says_so(pool: PgPool) {
    // Searches answer from a token seen before without looking it up separately; what the
    // database says about the token and its client must still hold for the very next call.
    let app = TestApp::spawn(pool).await;
    let token = app
        .token("demo", &["gdpr:subject:view", "gdpr:index:write"])
        .await;
    app.index(&token, people()).await;
    let searches = |token: String| {
        let app = &app;
        async move {
            for _ in 0..3 {
                assert_eq!(
                    ids(&app.found(&token, "EMAIL", "ana.garcia@example.com").await).len(),
                    2
                );
            }
        }
    };
    searches(token.clone()).await;
    let sql = |statement: &'static str| {
        let pool = app.pool.clone();
        async move { sqlx::query(statement).execute(&pool).await.unwrap() }
    };

    // A permission taken away: 403 naming it, at once.
    sql("UPDATE api_clients SET permissions = '{gdpr:index:write}'").await;
    let response = app.search(&token, "EMAIL", "ana.garcia@example.com").await;
    let error = expect_error(response, 403, "missing.any.permissions").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("gdpr:subject:view")
    );
    sql("UPDATE api_clients SET permissions = '{gdpr:subject:view}'").await;
    searches(token.clone()).await;

    // A disabled client: 401 at once, also before a bad query would be pointed out.
    sql("UPDATE api_clients SET disabled_at = now()").await;
    let response = app.search(&token, "EMAIL", "ana.garcia@example.com").await;
    expect_error(response, 401, "credentials.expired").await;
    let response = app.search(&token, "NOPE", "x").await;
    expect_error(response, 401, "credentials.expired").await;
    sql("UPDATE api_clients SET disabled_at = NULL").await;
    searches(token.clone()).await;

    // A revoked or expired token: 401 at once.
    sql("UPDATE access_tokens SET expires_at = now() - interval '1 second'").await;
    let response = app.search(&token, "EMAIL", "ana.garcia@example.com").await;
    expect_error(response, 401, "credentials.expired").await;
    sql("UPDATE access_tokens SET expires_at = now() + interval '1 hour'").await;
    searches(token.clone()).await;
    sql("UPDATE access_tokens SET revoked_at = now()").await;
    let response = app.search(&token, "EMAIL", "ana.garcia@example.com").await;
    expect_error(response, 401, "credentials.expired").await;
    sql("DELETE FROM access_tokens").await;
    let response = app.search(&token, "EMAIL", "ana.garcia@example.com").await;
    expect_error(response, 401, "bad.credentials").await;
}
