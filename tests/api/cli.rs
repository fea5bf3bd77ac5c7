//! The `gdprd` binary itself: its subcommands and the real server process.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{TestApp, TestClient, ids};

/// The URL of the test's own database.
fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let mut url = reqwest::Url::parse(&base).unwrap();
    url.set_path(&database);
    url.to_string()
}

fn gdprd(pool: &PgPool, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gdprd"))
        .args(args)
        .env("DATABASE_URL", database_url(pool))
        .env("GDPRD_LOG", "warn")
        .output()
        .unwrap()
}

#[sqlx::test]
async fn clients_create_prints_credentials_that_work(pool: PgPool) {
    let out = gdprd(
        &pool,
        &[
            "clients",
            "create",
            "--name",
            "dpo tool",
            "--permissions",
            "gdpr:subject:view,gdpr:index:write",
            "--org",
            "acme",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let org_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM organizations WHERE name = 'acme'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(created["orgId"], org_id.to_string());
    assert_eq!(
        created["permissions"],
        serde_json::json!(["gdpr:subject:view", "gdpr:index:write"])
    );
    let app = TestApp::spawn(pool).await;
    let client = TestClient {
        id: created["clientId"].as_str().unwrap().to_owned(),
        secret: created["clientSecret"].as_str().unwrap().to_owned(),
    };
    let token = app.token_for(&client).await;
    assert_eq!(
        app.search(&token, "EMAIL", "a@example.com").await.status(),
        StatusCode::OK
    );
}

#[sqlx::test]
async fn clients_create_refuses_unknown_permissions(pool: PgPool) {
    let out = gdprd(
        &pool,
        &[
            "clients",
            "create",
            "--name",
            "x",
            "--permissions",
            "gdpr:everything",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown permission") && stderr.contains("gdpr:request:add"),
        "{stderr}"
    );
    let clients: i64 = sqlx::query_scalar("SELECT count(*) FROM api_clients")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(clients, 0);
}

#[sqlx::test]
async fn index_import_loads_ndjson_all_or_nothing(pool: PgPool) {
    let mut file = tempfile();
    for i in 0..2_500 {
        writeln!(
            file.1,
            r#"{{"externalContactId":"ec-{i}","name":"Person {i}","emailAddresses":["p{i}@example.com"],"phoneNumbers":["(555) 01{:01}-{:04}"]}}"#,
            i % 10,
            i
        )
        .unwrap();
    }
    file.1.flush().unwrap();
    let out = gdprd(
        &pool,
        &["index", "import", file.0.to_str().unwrap(), "--quiet"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"written":2500}"#
    );

    let app = TestApp::spawn(pool.clone()).await;
    let token = app.token("demo", &["gdpr:subject:view"]).await;
    assert_eq!(
        ids(&app.found(&token, "EMAIL", "P1234@example.com").await),
        ["ec-1234"]
    );

    // Importing the same file again replaces its records: they keep their ids, and have the
    // same identifiers, once each.
    let snapshot = || async {
        sqlx::query_as::<_, (String, String)>(
            "SELECT (SELECT md5(string_agg(id::text || kind || ref_key, ',' ORDER BY id))
                       FROM subjects),
                    (SELECT md5(string_agg(subject_id::text || id_type || value, ','
                                           ORDER BY subject_id, id_type, value))
                       FROM subject_identifiers)",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let first = snapshot().await;
    let out = gdprd(
        &pool,
        &["index", "import", file.0.to_str().unwrap(), "--quiet"],
    );
    assert!(out.status.success());
    assert_eq!(snapshot().await, first);
    let identifiers: i64 = sqlx::query_scalar("SELECT count(*) FROM subject_identifiers")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(identifiers, 2_500 * 3);

    let mut bad = tempfile();
    writeln!(bad.1, r#"{{"externalContactId":"new-1","name":"New"}}"#).unwrap();
    writeln!(
        bad.1,
        r#"{{"externalContactId":"new-2","emailAddresses":["broken"]}}"#
    )
    .unwrap();
    bad.1.flush().unwrap();
    let out = gdprd(
        &pool,
        &["index", "import", bad.0.to_str().unwrap(), "--quiet"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2: emailAddresses[0]"), "{stderr}");
    assert!(app.found(&token, "NAME", "New").await.is_empty());
}

#[test]
fn help_lists_every_environment_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_gdprd"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "DATABASE_URL",
        "GDPRD_LISTEN",
        "GDPRD_DEFAULT_REGION",
        "GDPRD_TOKEN_TTL_SECS",
        "GDPRD_LOG_FORMAT",
        "GDPRD_DB_MAX_CONNECTIONS",
        "GDPRD_INDEX_MAX_BODY_BYTES",
    ] {
        assert!(help.contains(var), "{var} missing from serve --help");
    }
}

/// The real server process: it starts, serves, logs as JSON without identifier values, and stops
/// on SIGTERM.
#[sqlx::test]
async fn the_server_process_never_logs_identifier_values(pool: PgPool) {
    let port = free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_gdprd"))
        .args(["serve"])
        .env("DATABASE_URL", database_url(&pool))
        .env("GDPRD_LISTEN", format!("127.0.0.1:{port}"))
        .env("GDPRD_LOG_FORMAT", "json")
        .env("GDPRD_LOG", "debug,sqlx=debug,hyper=info,h2=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "server did not start");

    let client = TestApp::spawn(pool.clone())
        .await
        .create_client("demo", &["gdpr:subject:view", "gdpr:index:write"])
        .await;
    let token: Value = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let secrets = [
        "Zuzanna Wójcik",
        "zuzanna.wojcik@example.net",
        "5550100077",
        "ZuzaW",
        "7 Rue des Lilas",
        "ZW-CRM-77",
    ];
    let record = serde_json::json!([{
        "externalContactId": "ec-zw",
        "name": secrets[0],
        "emailAddresses": [secrets[1]],
        "phoneNumbers": ["(555) 010-0077"],
        "socialHandle": {"type": "TWITTER", "value": secrets[3]},
        "addresses": [secrets[4]],
        "externalId": secrets[5]
    }]);
    let written = http
        .post(format!("{base}/api/v2/gdpr/index/subjects"))
        .bearer_auth(token)
        .json(&record)
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), StatusCode::OK);
    for (search_type, value) in [
        ("NAME", secrets[0]),
        ("EMAIL", secrets[1]),
        ("PHONE", "(555) 010-0077"),
        ("TWITTER", secrets[3]),
        ("ADDRESS", secrets[4]),
        ("EXTERNAL_ID", secrets[5]),
        ("PHONE", "not a phone zuzanna.wojcik@example.net"),
    ] {
        http.get(format!("{base}/api/v2/gdpr/subjects"))
            .bearer_auth(token)
            .query(&[("searchType", search_type), ("searchValue", value)])
            .send()
            .await
            .unwrap();
    }

    // SIGTERM: the process exits by itself, promptly.
    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = server.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = exited.expect("server did not stop within 10 s of SIGTERM");
    assert!(status.success(), "{status}");

    let mut logs = String::new();
    std::io::Read::read_to_string(server.stderr.as_mut().unwrap(), &mut logs).unwrap();
    assert!(
        logs.contains("\"route\":\"/api/v2/gdpr/subjects\""),
        "request spans are logged"
    );
    let lower = logs.to_lowercase();
    for secret in secrets
        .iter()
        .chain(["wojcik", "wójcik", "zuzanna", "+15550100077", "010-0077"].iter())
    {
        assert!(
            !lower.contains(&secret.to_lowercase()),
            "log contains {secret}"
        );
    }
}

/// A plain-text dump of the test's database, as an attacker with a backup would read it.
pub fn pg_dump(pool: &PgPool) -> String {
    let out = Command::new("pg_dump")
        .args(["--data-only", "--no-owner", &database_url(pool)])
        .output()
        .expect("pg_dump is installed with PostgreSQL");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("gdprd-test-{}.ndjson", uuid::Uuid::new_v4()));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}
