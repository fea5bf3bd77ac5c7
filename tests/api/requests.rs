use std::io::Read;

use gdprd::seed::story;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{ALL_PERMISSIONS, TestApp, expect_error, fast_worker, seed};

async fn seeded(pool: PgPool) -> (TestApp, String) {
    seed(&pool, 40).await;
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    (app, token)
}

fn ana() -> Value {
    json!({
        "emailAddresses": [story::ANA_EMAIL, story::ANA_ALT_EMAIL],
        "phoneNumbers": [story::ANA_PHONE]
    })
}

fn job<'a>(request: &'a Value, service: &str) -> &'a Value {
    request["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["service"] == service)
        .unwrap_or_else(|| panic!("no job for {service}: {request}"))
}

#[sqlx::test]
async fn a_request_is_accepted_with_the_genesys_fields(pool: PgPool) {
    // No worker: what is stored is read as the API left it, before any worker could take it.
    seed(&pool, 40).await;
    let app = TestApp::spawn_without_worker(pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let request = app
        .accepted(
            &token,
            json!({"requestType": "GDPR_EXPORT", "subject": ana(), "name": "DSAR 42"}),
        )
        .await;
    assert_eq!(request["status"], "INITIATED");
    assert_eq!(request["requestType"], "GDPR_EXPORT");
    assert_eq!(request["name"], "DSAR 42");
    assert_eq!(request["subject"], ana());
    let id = request["id"].as_str().unwrap();
    assert_eq!(request["selfUri"], format!("/api/v2/gdpr/requests/{id}"));
    assert_eq!(request["createdBy"]["name"], "test client");
    let created = request["createdDate"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() == 24, "{created}");
    let due = chrono::DateTime::parse_from_rfc3339(request["dueDate"].as_str().unwrap()).unwrap();
    let created = chrono::DateTime::parse_from_rfc3339(created).unwrap();
    let days = (due - created).num_days();
    assert!((28..=31).contains(&days), "due in {days} days");
    assert!(request.get("resultsUrl").is_none() && request.get("error").is_none());
    assert_eq!(request["jobs"].as_array().unwrap().len(), 7);
    for job in request["jobs"].as_array().unwrap() {
        assert_eq!(job["action"], "export");
    }
    // The demo services all keep their tables in gdprd's database: their jobs are queued as
    // one bundle, which names them.
    let stored: Vec<(String, String, Vec<String>)> = sqlx::query_as(
        "SELECT service, status, ARRAY(SELECT j->>0 FROM jsonb_array_elements(bundle_jobs) j)
           FROM gdpr_jobs WHERE request_id = $1::uuid",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let services: Vec<&str> = request["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["service"].as_str().unwrap())
        .collect();
    assert_eq!(
        stored.len(),
        1,
        "the seven service jobs are durable, as one bundle"
    );
    let (service, status, bundle) = &stored[0];
    assert_eq!((service.as_str(), status.as_str()), ("_bundle", "queued"));
    let mut bundle: Vec<&str> = bundle.iter().map(String::as_str).collect();
    bundle.sort_unstable();
    assert_eq!(bundle, services);
}

#[sqlx::test]
async fn an_access_summary_says_where_the_data_is(pool: PgPool) {
    let (app, token) = seeded(pool).await;
    let done = app
        .completed(&token, json!({"requestType": "GDPR_GET", "subject": ana()}))
        .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert!(done["completedDate"].as_str().unwrap().ends_with('Z'));
    let summary = done["accessSummary"].as_array().unwrap();
    let contacts = summary
        .iter()
        .find(|s| s["service"] == "externalContacts")
        .unwrap();
    assert_eq!(contacts["records"], 2);
    assert_eq!(contacts["erasure"], "delete");
    assert!(!contacts["purpose"].as_str().unwrap().is_empty());
    assert!(!contacts["categories"].as_array().unwrap().is_empty());
    let consent = summary.iter().find(|s| s["service"] == "consent").unwrap();
    assert_eq!(consent["erasure"], "anonymize");
    assert!(consent["records"].as_i64().unwrap() >= 1);
    // A dry run: nothing changed.
    let still: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM demo.external_contacts WHERE work_email = $1 OR personal_email = $1",
    )
    .bind(story::ANA_EMAIL)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(still >= 1);
}

#[sqlx::test]
async fn an_export_archive_holds_every_record_of_the_person(pool: PgPool) {
    let (app, token) = seeded(pool).await;
    let mut subject = ana();
    subject["journeyCustomer"] = json!({"type": "cookie", "id": story::ANA_COOKIE});
    let done = app
        .completed(
            &token,
            json!({"requestType": "GDPR_EXPORT", "subject": subject}),
        )
        .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let url = done["resultsUrl"].as_str().unwrap();
    assert!(url.starts_with(&app.address), "absolute URL: {url}");
    assert_eq!(done["resultsUrls"], json!([url]));

    // No bearer token: the signed link is the credential.
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let bytes = response.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut manifest = String::new();
    zip.by_name("manifest.json")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    let manifest: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest["requestId"], done["id"]);

    // Every row the seed wrote for her, table by table, counted in the database itself.
    let expected = [
        (
            "externalContacts",
            "external_contacts",
            "SELECT count(*) FROM demo.external_contacts WHERE lower(work_email) = ANY($1) OR lower(personal_email) = ANY($1) OR regexp_replace(coalesce(cell_phone, '') || coalesce(work_phone, ''), '\\D', '', 'g') LIKE '%5550100001%'",
        ),
        (
            "dialer",
            "dialer_contacts",
            "SELECT count(*) FROM demo.dialer_contacts WHERE lower(email) = ANY($1) OR regexp_replace(coalesce(phone, '') || coalesce(alt_phone, ''), '\\D', '', 'g') LIKE '%5550100001%'",
        ),
        (
            "journeys",
            "journey_visitors",
            "SELECT count(*) FROM demo.journey_visitors WHERE cookie_id = 'anagarciacookie0000000000a' OR lower(email) = ANY($1)",
        ),
        (
            "journeys",
            "journey_events",
            "SELECT count(*) FROM demo.journey_events WHERE cookie_id = 'anagarciacookie0000000000a'",
        ),
        (
            "consent",
            "consent_records",
            "SELECT count(*) FROM demo.consent_records WHERE lower(email) = ANY($1) OR regexp_replace(coalesce(phone, ''), '\\D', '', 'g') LIKE '%5550100001%' OR cookie_id = 'anagarciacookie0000000000a'",
        ),
        (
            "conversations",
            "transcript_lines",
            "SELECT count(*) FROM demo.transcript_lines WHERE conversation_id IN (SELECT conversation_id FROM demo.conversation_participants WHERE purpose = 'customer' AND (lower(address) = ANY($1) OR regexp_replace(address, '\\D', '', 'g') LIKE '%5550100001%'))",
        ),
        (
            "attachments",
            "attachments",
            "SELECT count(*) FROM demo.attachments WHERE lower(uploaded_by) = ANY($1)",
        ),
    ];
    let emails = vec![story::ANA_EMAIL.to_owned(), story::ANA_ALT_EMAIL.to_owned()];
    for (service, table, sql) in expected {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&emails)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        assert!(count > 0, "the seed gave her rows in {table}");
        let mut json = String::new();
        zip.by_name(&format!("{service}.json"))
            .unwrap()
            .read_to_string(&mut json)
            .unwrap();
        let data: Value = serde_json::from_str(&json).unwrap();
        let rows = data[format!("demo.{table}")]
            .as_array()
            .or_else(|| data[table].as_array())
            .unwrap_or_else(|| panic!("{table} missing from {service}.json: {data}"));
        assert_eq!(rows.len() as i64, count, "{table}");
        let csv_name = zip
            .file_names()
            .filter_map(Result::ok)
            .find(|n| n.starts_with(&format!("{service}/")) && n.contains(table))
            .unwrap()
            .into_owned();
        let mut csv = String::new();
        zip.by_name(&csv_name)
            .unwrap()
            .read_to_string(&mut csv)
            .unwrap();
        assert_eq!(
            csv.lines().count() as i64,
            count + 1,
            "{csv_name}: header and rows"
        );
    }
}

#[sqlx::test]
async fn result_links_cannot_be_forged_altered_or_used_after_expiry(pool: PgPool) {
    let (app, token) = seeded(pool).await;
    let request = app
        .accepted(
            &token,
            json!({"requestType": "GDPR_EXPORT", "subject": ana()}),
        )
        .await;
    let id = request["id"].as_str().unwrap();
    let done = app.finished(&token, id).await;
    let url = done["resultsUrl"].as_str().unwrap().to_owned();
    let file = format!("gdpr-export-{id}.zip");

    let tampered = url.replace("signature=", "signature=00");
    expect_error(
        reqwest::get(&tampered).await.unwrap(),
        403,
        "not.authorized",
    )
    .await;
    let (base, _) = url.split_once("?expires=").unwrap();
    let later = format!(
        "{base}?expires=9999999999&signature={}",
        url.rsplit_once("signature=").unwrap().1
    );
    expect_error(reqwest::get(&later).await.unwrap(), 403, "not.authorized").await;
    let unsigned = base.to_owned();
    expect_error(
        reqwest::get(&unsigned).await.unwrap(),
        403,
        "not.authorized",
    )
    .await;

    let key = gdprd::secrets::ServerKey::load_or_create(&app.pool)
        .await
        .unwrap();
    let past = chrono::Utc::now().timestamp() - 1;
    let signature = gdprd::requests::store::sign(&key, id.parse().unwrap(), &file, past);
    let expired = format!("{base}?expires={past}&signature={signature}");
    let body = expect_error(reqwest::get(&expired).await.unwrap(), 403, "not.authorized").await;
    assert!(body["message"].as_str().unwrap().contains("expired"));

    let other_request = url.replace(id, &uuid::Uuid::new_v4().to_string());
    expect_error(
        reqwest::get(&other_request).await.unwrap(),
        403,
        "not.authorized",
    )
    .await;
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::OK);
}

/// Rows holding a phone number (given by its 10 national digits) in an updatable column of
/// each service, whatever the spelling.
async fn phone_rows(pool: &PgPool, digits: &str) -> Vec<i64> {
    let tables: [(&str, &[&str]); 6] = [
        ("demo.external_contacts", &["work_phone", "cell_phone"]),
        ("demo.dialer_contacts", &["phone", "alt_phone"]),
        ("demo.journey_visitors", &["phone"]),
        ("demo.consent_records", &["phone"]),
        ("demo.conversation_participants", &["address"]),
        ("demo.directory_users", &["phone"]),
    ];
    let mut counts = Vec::new();
    for (table, columns) in tables {
        let condition = columns
            .iter()
            .map(|c| {
                format!("regexp_replace(coalesce({c}, ''), '\\D', '', 'g') IN ($1, '1' || $1)")
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        let sql = format!("SELECT count(*) FROM {table} WHERE {condition}");
        counts.push(
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(digits)
                .fetch_one(pool)
                .await
                .unwrap(),
        );
    }
    counts
}

#[sqlx::test]
async fn an_update_is_applied_in_every_service_and_the_index(pool: PgPool) {
    let (app, token) = seeded(pool).await;
    let before = phone_rows(&app.pool, "5550100001").await;
    assert!(
        before.iter().filter(|c| **c > 0).count() >= 4,
        "the seed spreads her number: {before:?}"
    );
    let request = app
        .accepted(
            &token,
            json!({
                "requestType": "GDPR_UPDATE",
                "subject": {"phoneNumbers": [story::ANA_PHONE]},
                "replacementTerms": [{"type": "PHONE", "existingValue": "555.010.0001", "updatedValue": "+1 555 010 0099"}]
            }),
        )
        .await;
    assert_eq!(
        request["replacementTerms"][0]["updatedValue"],
        "+1 555 010 0099"
    );
    let done = app.finished(&token, request["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let updated: i64 = done["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["updated"].as_i64().unwrap())
        .sum();
    assert_eq!(updated, before.iter().sum::<i64>(), "{done}");

    assert_eq!(
        phone_rows(&app.pool, "5550100001").await,
        vec![0; before.len()]
    );
    assert_eq!(phone_rows(&app.pool, "5550100099").await, before);
    assert!(
        app.found(&token, "PHONE", story::ANA_PHONE)
            .await
            .is_empty()
    );
    let found = app.found(&token, "PHONE", "555-010-0099").await;
    assert!(
        found.len() >= 2,
        "both records of her merge set and her dialer contact: {found:?}"
    );
    assert!(found.iter().all(|r| {
        r["phoneNumbers"]
            .as_array()
            .unwrap()
            .contains(&json!("+1 555 010 0099"))
    }));
}

#[sqlx::test]
async fn an_erasure_leaves_no_plain_text_trace_in_the_database(pool: PgPool) {
    let (app, token) = seeded(pool).await;
    // First an export, whose stored request and archive name her too.
    let export = app
        .completed(
            &token,
            json!({"requestType": "GDPR_EXPORT", "subject": ana()}),
        )
        .await;

    let subject = json!({
        "emailAddresses": [story::ANA_EMAIL, story::ANA_ALT_EMAIL],
        "phoneNumbers": [story::ANA_PHONE],
        "journeyCustomer": {"type": "cookie", "id": story::ANA_COOKIE}
    });
    let request = app
        .accepted(
            &token,
            json!({"requestType": "GDPR_DELETE", "subject": subject}),
        )
        .await;
    let done = app.finished(&token, request["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(job(&done, "externalContacts")["action"], "delete");
    assert!(job(&done, "externalContacts")["deleted"].as_i64().unwrap() >= 2);
    assert_eq!(job(&done, "conversations")["action"], "anonymize");
    assert!(job(&done, "conversations")["anonymized"].as_i64().unwrap() >= 1);
    assert_eq!(
        done["subject"]["emailAddresses"][0],
        "a*********@example.com"
    );

    assert!(
        app.found(&token, "EMAIL", story::ANA_EMAIL)
            .await
            .is_empty()
    );
    assert!(
        app.found(&token, "PHONE", story::ANA_PHONE)
            .await
            .is_empty()
    );
    let export_now = app.request(&token, export["id"].as_str().unwrap()).await;
    assert!(
        export_now.get("resultsUrl").is_none(),
        "the earlier export's archive is gone"
    );

    let dump = crate::cli::pg_dump(&app.pool);
    let lower = dump.to_lowercase();
    for secret in [
        story::ANA_EMAIL,
        story::ANA_ALT_EMAIL,
        story::ANA_PHONE,
        story::ANA_ALT_PHONE,
        story::ANA_DIALER_PHONE,
        story::ANA_PHONE_E164,
        story::ANA_COOKIE,
        "555.010.0001",
        "555 010 0001",
    ] {
        assert!(
            !lower.contains(&secret.to_lowercase()),
            "{secret} is still in the database"
        );
    }
    // Her namesake is untouched.
    assert!(lower.contains(story::OTHER_ANA_EMAIL));
}

/// Each erasure looks up the stored requests naming its subject through the index of their term
/// hashes: a new request's hashes go straight into that index (migration 0012), not into a
/// pending list that every lookup would read in full until VACUUM merges it.
#[sqlx::test]
async fn stored_requests_terms_are_indexed_without_a_pending_list(pool: PgPool) {
    let (app, token) = seeded(pool).await;
    let request = app
        .completed(
            &token,
            json!({"requestType": "GDPR_EXPORT", "subject": ana()}),
        )
        .await;
    let options: Option<Vec<String>> = sqlx::query_scalar(
        "SELECT reloptions FROM pg_class WHERE oid = 'gdpr_requests_term_hashes'::regclass",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(options, Some(vec!["fastupdate=off".to_owned()]));
    // The lookup of erasures finds the request by its hashes.
    let found: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM gdpr_requests
          WHERE term_hashes && (SELECT term_hashes FROM gdpr_requests WHERE id = $1)",
    )
    .bind(Uuid::parse_str(request["id"].as_str().unwrap()).unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(found, 1);
}

#[sqlx::test]
async fn an_active_employee_keeps_the_directory_record_and_loses_the_rest(pool: PgPool) {
    let (app, token) = seeded(pool).await;
    let user_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM demo.directory_users WHERE email = $1")
            .bind(story::JONAS_EMAIL)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let done = app
        .completed(
            &token,
            json!({"requestType": "GDPR_DELETE", "subject": {"userId": user_id.to_string()}}),
        )
        .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let directory = job(&done, "directory");
    assert_eq!(directory["retained"], 1);
    assert!(
        directory["retainedReason"]
            .as_str()
            .unwrap()
            .contains("active")
    );
    assert_eq!(directory["anonymized"], 0);
    let kept: String = sqlx::query_scalar("SELECT email FROM demo.directory_users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(kept, story::JONAS_EMAIL);
    let conversations = job(&done, "conversations");
    assert!(conversations["anonymized"].as_i64().unwrap() >= 1, "{done}");
    let agent_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM demo.conversation_participants WHERE name = $1")
            .bind(story::JONAS_NAME)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(agent_rows, 0);
}

#[sqlx::test]
async fn a_merge_set_request_fans_out_and_members_finish_independently(pool: PgPool) {
    let (app, token) = seeded(pool).await;
    let members: Vec<(uuid::Uuid, Option<String>)> = sqlx::query_as(
        "SELECT id, personal_email FROM demo.external_contacts
          WHERE canonical_contact_id = (SELECT canonical_contact_id FROM demo.external_contacts WHERE work_email = $1 OR personal_email = $1 LIMIT 1)
          ORDER BY id",
    )
    .bind(story::ANA_EMAIL)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(members.len(), 2);
    // A record known only by the second member's own email is under a legal hold: the
    // database itself refuses to delete it.
    let held = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO demo.external_contacts (id, org_id, name, personal_email)
         SELECT $1, org_id, 'Held', $2 FROM demo.external_contacts WHERE id = $3",
    )
    .bind(held)
    .bind(story::ANA_ALT_EMAIL)
    .bind(members[0].0)
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'legal hold on this contact'; END $$;
         CREATE TRIGGER hold BEFORE DELETE ON demo.external_contacts
           FOR EACH ROW WHEN (OLD.id = '{held}') EXECUTE FUNCTION refuse();"
    )))
    .execute(&app.pool)
    .await
    .unwrap();
    let request = app
        .accepted(&token, json!({"requestType": "GDPR_DELETE", "subject": {"externalContactId": members[0].0.to_string()}}))
        .await;
    let related = request["relatedRequests"].as_array().unwrap().clone();
    assert_eq!(related.len(), 2, "{request}");
    assert!(request["jobs"].as_array().unwrap().is_empty());
    let done = app.finished(&token, request["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "ERROR", "{done}");
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 of 2")
    );

    let mut statuses = Vec::new();
    for r in &related {
        let child = app.finished(&token, r["id"].as_str().unwrap()).await;
        statuses.push((
            child["subject"]["externalContactId"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            child["status"].as_str().unwrap().to_owned(),
            child.clone(),
        ));
    }
    let failed: Vec<_> = statuses.iter().filter(|s| s.1 == "ERROR").collect();
    let completed: Vec<_> = statuses.iter().filter(|s| s.1 == "COMPLETED").collect();
    assert_eq!((failed.len(), completed.len()), (1, 1), "{statuses:?}");
    let reason = failed[0].2["error"]["message"].as_str().unwrap();
    assert!(
        reason.contains("externalContacts") && reason.contains("legal hold"),
        "{reason}"
    );
    let contacts = job(&failed[0].2, "externalContacts");
    assert_eq!(contacts["status"], "ERROR");
    assert_eq!(contacts["attempts"], 5);
    // What the job found before the database refused the delete is kept with the failure: the
    // held record at least (the member's own may already be gone with the other member's
    // erasure, which shares identifiers with it).
    assert!(contacts["matched"].as_i64() >= Some(1), "{contacts}");
    let mut all = members.iter().map(|m| m.0).collect::<Vec<_>>();
    all.push(held);
    let remaining: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM demo.external_contacts WHERE id = ANY($1)")
            .bind(&all)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        remaining,
        [held],
        "the merge set is erased; the held record is whole"
    );
}

#[sqlx::test]
async fn a_job_that_fails_twice_then_succeeds_completes(pool: PgPool) {
    let (app, token) = seeded(pool).await;
    // The consent store fails whatever runs during the job's first two attempts: the bundle's
    // own run, which then becomes the services' jobs, and theirs (a run of a request's jobs
    // may run an action twice in one attempt: see `Worker::run_together`).
    fail_while(
        &app.pool,
        "coalesce((SELECT max(attempts) FROM gdpr_jobs WHERE service = 'consent'), 0) <= 2",
        "UPDATE ON demo.consent_records FOR EACH STATEMENT",
        "consent store briefly unavailable",
    )
    .await;
    let request = app
        .accepted(
            &token,
            json!({"requestType": "GDPR_DELETE", "subject": ana()}),
        )
        .await;
    let done = app.finished(&token, request["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let consent = job(&done, "consent");
    assert_eq!(consent["attempts"], 3);
    assert_eq!(consent["status"], "COMPLETED");
    assert!(consent["anonymized"].as_i64().unwrap() >= 1);
    assert!(consent.get("error").is_none());
    // The request's other jobs ran in the same transaction as consent's first attempt; its
    // failure left their work to commit, so none of them ran twice.
    assert_completed_at_first_attempt(&done, &["consent"]);
}

/// Makes the statements that fire the trigger `on` (`UPDATE ON table FOR EACH STATEMENT`, …)
/// fail with `message` while `condition` holds.
async fn fail_while(pool: &PgPool, condition: &str, on: &str, message: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION flaky() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF {condition} THEN RAISE EXCEPTION '{message}'; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER flaky BEFORE {on} EXECUTE FUNCTION flaky();"
    )))
    .execute(pool)
    .await
    .unwrap();
}

/// Every job of `request` but those of the `except` services completed at its first attempt.
fn assert_completed_at_first_attempt(request: &Value, except: &[&str]) {
    for job in request["jobs"].as_array().unwrap() {
        if !except.iter().any(|s| job["service"] == *s) {
            assert_eq!(
                (&job["status"], &job["attempts"]),
                (&json!("COMPLETED"), &json!(1)),
                "{job}"
            );
        }
    }
}

/// An app without a worker, over seeded data, and email addresses of `n` of its people, each
/// the only subject with that address.
async fn people_waiting(pool: PgPool, n: i64) -> (TestApp, String, Vec<String>) {
    seed(&pool, 40).await;
    let app = TestApp::spawn_without_worker(pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let emails: Vec<String> = sqlx::query_scalar(
        "SELECT c.work_email FROM demo.external_contacts c
          WHERE (SELECT count(DISTINCT i.subject_id) FROM subject_identifiers i
                  WHERE i.id_type = 'EMAIL' AND i.value = lower(c.work_email)) = 1
          ORDER BY c.work_email LIMIT $1",
    )
    .bind(n)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(emails.len() as i64, n);
    (app, token, emails)
}

/// Those of `emails` that a contact's work address still holds.
async fn contacts_left(pool: &PgPool, emails: &[String]) -> Vec<String> {
    sqlx::query_scalar("SELECT work_email FROM demo.external_contacts WHERE work_email = ANY($1)")
        .bind(emails)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Submits an erasure of the person with email address `email`; returns its id.
async fn erase(app: &TestApp, token: &str, email: &str) -> String {
    let request = app
        .accepted(
            token,
            json!({"requestType": "GDPR_DELETE", "subject": {"emailAddresses": [email]}}),
        )
        .await;
    request["id"].as_str().unwrap().to_owned()
}

#[sqlx::test]
async fn requests_waiting_together_are_run_by_one_transaction(pool: PgPool) {
    let (app, token, emails) = people_waiting(pool, 4).await;
    // An export of the first person, then erasures of the three others.
    let export = app
        .accepted(
            &token,
            json!({"requestType": "GDPR_EXPORT", "subject": {"emailAddresses": [emails[0]]}}),
        )
        .await;
    let export = export["id"].as_str().unwrap().to_owned();
    let mut ids = vec![export.clone()];
    for email in &emails[1..] {
        ids.push(erase(&app, &token, email).await);
    }
    // The worker's first claim finds the four bundles waiting: one unit of work.
    let _worker = app.start_worker(fast_worker()).await;
    for id in &ids {
        let done = app.finished(&token, id).await;
        assert_eq!(done["status"], "COMPLETED", "{done}");
        assert_eq!(done["jobs"].as_array().unwrap().len(), 7, "{done}");
        assert_completed_at_first_attempt(&done, &[]);
        if *id != export {
            let contacts = job(&done, "externalContacts");
            assert!(contacts["deleted"].as_i64() >= Some(1), "{contacts}");
        }
    }
    let uuids: Vec<Uuid> = ids.iter().map(|id| id.parse().unwrap()).collect();
    let transactions: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT xmin::text) FROM gdpr_requests WHERE id = ANY($1)",
    )
    .bind(&uuids)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(transactions, 1, "the four were finished by one transaction");
    let left = contacts_left(&app.pool, &emails).await;
    assert_eq!(
        left,
        [emails[0].clone()],
        "the three erased, the exported one kept"
    );

    // The export holds its own person, and nobody erased beside it in the same transaction.
    let done = app.finished(&token, &export).await;
    let url = done["resultsUrl"].as_str().unwrap();
    let bytes = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut everything = String::new();
    for i in 0..zip.len() {
        zip.by_index(i)
            .unwrap()
            .read_to_string(&mut everything)
            .unwrap();
    }
    let lower = everything.to_lowercase();
    assert!(
        lower.contains(&emails[0].to_lowercase()),
        "the exported person is in it"
    );
    for erased in &emails[1..] {
        assert!(
            !lower.contains(&erased.to_lowercase()),
            "{erased} is not in it"
        );
    }
}

#[sqlx::test]
async fn of_erasures_run_together_one_that_fails_fails_alone(pool: PgPool) {
    let (app, token, emails) = people_waiting(pool, 3).await;
    // The contact store refuses to delete the second person's contact, every time.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF OLD.work_email = '{}' THEN RAISE EXCEPTION 'contact store refused the row'; END IF;
           RETURN OLD;
         END $$;
         CREATE TRIGGER refuse BEFORE DELETE ON demo.external_contacts
           FOR EACH ROW EXECUTE FUNCTION refuse();",
        emails[1]
    )))
    .execute(&app.pool)
    .await
    .unwrap();
    let mut ids = Vec::new();
    for email in &emails {
        ids.push(erase(&app, &token, email).await);
    }
    let _worker = app.start_worker(fast_worker()).await;
    let mut finished = Vec::new();
    for id in &ids {
        finished.push(app.finished(&token, id).await);
    }
    // The others completed, each at its first attempt, as if the refusal had not happened.
    for done in [&finished[0], &finished[2]] {
        assert_eq!(done["status"], "COMPLETED", "{done}");
        assert_completed_at_first_attempt(done, &[]);
    }
    // The refused one failed, for the reason its service gave, and its other services' work
    // stands.
    let failed = &finished[1];
    assert_eq!(failed["status"], "ERROR", "{failed}");
    let contacts = job(failed, "externalContacts");
    assert_eq!(contacts["status"], "ERROR", "{contacts}");
    assert!(
        contacts["error"]
            .to_string()
            .contains("contact store refused the row"),
        "{contacts}"
    );
    assert_completed_at_first_attempt(failed, &["externalContacts"]);
    let left = contacts_left(&app.pool, &emails).await;
    assert_eq!(
        left,
        [emails[1].clone()],
        "only the refused contact is left"
    );
}

#[sqlx::test]
async fn a_finalization_that_fails_with_the_last_service_job_is_retried_on_its_own(pool: PgPool) {
    let (app, token) = seeded(pool).await;
    // The archive write fails in the transaction that completes the request's service jobs
    // (their completion time is its start time), however often the unit tries: their work must
    // stay, and the finalization run again by itself.
    fail_while(
        &app.pool,
        "EXISTS (SELECT 1 FROM gdpr_jobs WHERE request_id = NEW.request_id
                    AND service <> '_finalize' AND completed_at = now())",
        "INSERT ON export_archives FOR EACH ROW",
        "archive store briefly unavailable",
    )
    .await;
    let done = app
        .completed(
            &token,
            json!({"requestType": "GDPR_EXPORT", "subject": ana()}),
        )
        .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert!(done["resultsUrl"].is_string(), "{done}");
    assert_completed_at_first_attempt(&done, &[]);
    let apart: bool = sqlx::query_scalar(
        "SELECT f.completed_at > (SELECT max(completed_at) FROM gdpr_jobs
                                   WHERE service <> '_finalize')
           FROM gdpr_jobs f WHERE f.service = '_finalize'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(apart, "the finalization ran in a transaction of its own");
    let finalize: (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM gdpr_jobs WHERE service = '_finalize'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(finalize, ("completed".to_owned(), 1));
}

#[sqlx::test]
async fn concurrent_duplicate_posts_create_exactly_one_request(pool: PgPool) {
    seed(&pool, 10).await;
    let app = TestApp::spawn_without_worker(pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let body = json!({"requestType": "GDPR_EXPORT", "subject": ana()});
    let posts = (0..12).map(|_| app.submit(&token, &body, false));
    let responses = futures::future::join_all(posts).await;
    let mut ids = std::collections::BTreeSet::new();
    let mut accepted = 0;
    for response in responses {
        match response.status() {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::OK => {}
            other => panic!("unexpected {other}"),
        }
        let body: Value = response.json().await.unwrap();
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    assert_eq!((accepted, ids.len()), (1, 1));
    // The same subject spelled differently is the same subject.
    let respelled = json!({"requestType": "GDPR_EXPORT", "subject": {
        "emailAddresses": ["ANA.G@mail.example", " Ana.Garcia@Example.com"],
        "phoneNumbers": ["+1 555 010 0001"]
    }});
    let again = app.submit(&token, &respelled, false).await;
    assert_eq!(again.status(), StatusCode::OK);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM gdpr_requests")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[sqlx::test]
async fn a_duplicate_whose_original_finishes_while_it_is_accepted_is_a_new_request(pool: PgPool) {
    seed(&pool, 10).await;
    let app = TestApp::spawn_without_worker(pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let body = json!({"requestType": "GDPR_EXPORT", "subject": ana()});
    let first = app.accepted(&token, body.clone()).await;
    // From here, an insert into gdpr_requests waits, once it has run, for a lock the test
    // holds: the duplicate's insert has met the first request, and its look-up of that request
    // has yet to run when the first finishes.
    sqlx::raw_sql(
        "CREATE FUNCTION pause_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock(7); RETURN NULL; END $$;
         CREATE TRIGGER pause_after_insert AFTER INSERT ON gdpr_requests
         FOR EACH STATEMENT EXECUTE FUNCTION pause_after_insert();",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let mut holder = app.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(7)")
        .execute(&mut *holder)
        .await
        .unwrap();
    let finish_first = async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT FROM pg_locks
                                 WHERE locktype = 'advisory' AND objid = 7 AND NOT granted
                                   AND database = (SELECT oid FROM pg_database
                                                    WHERE datname = current_database()))",
            )
            .fetch_one(&app.pool)
            .await
            .unwrap();
            if waiting {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the duplicate never reached its insert (did its submission fail?)"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        sqlx::query(
            "UPDATE gdpr_requests SET status = 'COMPLETED', completed_at = now() WHERE id = $1",
        )
        .bind(Uuid::parse_str(first["id"].as_str().unwrap()).unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
        sqlx::query("SELECT pg_advisory_unlock(7)")
            .execute(&mut *holder)
            .await
            .unwrap();
    };
    let (duplicate, ()) = tokio::join!(app.submit(&token, &body, false), finish_first);
    assert_eq!(
        duplicate.status(),
        StatusCode::ACCEPTED,
        "a new request, not a retry later"
    );
    let duplicate: Value = duplicate.json().await.unwrap();
    assert_ne!(duplicate["id"], first["id"]);
    assert_eq!(duplicate["status"], "INITIATED", "{duplicate}");
    let requests: i64 = sqlx::query_scalar("SELECT count(*) FROM gdpr_requests")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(requests, 2);
}

#[sqlx::test]
async fn an_idempotency_key_returns_the_same_request(pool: PgPool) {
    seed(&pool, 10).await;
    let app = TestApp::spawn(pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let post = |body: Value| {
        app.http
            .post(app.url("/api/v2/gdpr/requests"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "order-7")
            .json(&body)
            .send()
    };
    let body = json!({"requestType": "GDPR_GET", "subject": ana()});
    let first = post(body.clone()).await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    app.finished(&token, first["id"].as_str().unwrap()).await;
    let second = post(body).await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(second.json::<Value>().await.unwrap()["id"], first["id"]);
    let different =
        post(json!({"requestType": "GDPR_GET", "subject": {"emailAddresses": ["x@example.com"]}}))
            .await
            .unwrap();
    expect_error(different, 409, "conflict").await;
}

#[sqlx::test]
async fn an_erasure_by_a_shared_name_is_refused_with_the_candidates(pool: PgPool) {
    let (app, token) = seeded(pool).await;
    let response = app
        .submit(
            &token,
            &json!({"requestType": "GDPR_DELETE", "subject": {"name": "ana garcia"}}),
            true,
        )
        .await;
    let body = expect_error(response, 409, "conflict").await;
    let candidates = body["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 2, "{body}");
    let names: Vec<&str> = candidates
        .iter()
        .map(|c| c[0]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&story::ANA_NAME) && names.contains(&story::OTHER_ANA_NAME));
    let ana = candidates
        .iter()
        .find(|c| c[0]["name"] == story::ANA_NAME)
        .unwrap();
    assert!(
        ana.as_array().unwrap().len() >= 2,
        "her merge set counts as one person: {ana}"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM gdpr_requests")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
    // Other request types, and erasures with a strong identifier, are not ambiguous.
    app.accepted(
        &token,
        json!({"requestType": "GDPR_GET", "subject": {"name": "ana garcia"}}),
    )
    .await;
    app.accepted(&token, json!({"requestType": "GDPR_DELETE", "subject": {"name": "ana garcia", "emailAddresses": [story::OTHER_ANA_EMAIL]}})).await;
}

#[sqlx::test]
async fn invalid_requests_get_a_clear_400(pool: PgPool) {
    let (app, token) = seeded(pool).await;
    let cases = [
        (
            json!({"requestType": "GDPR_DELETE", "subject": ana()}),
            false,
            "deleteConfirmed",
        ),
        (
            json!({"requestType": "GDPR_EXPORT", "subject": ana(), "replacementTerms": [{"type": "EMAIL", "existingValue": "a@b.c", "updatedValue": "d@e.f"}]}),
            false,
            "replacementTerms",
        ),
        (
            json!({"requestType": "GDPR_UPDATE", "subject": ana()}),
            false,
            "replacementTerms",
        ),
        (
            json!({"requestType": "GDPR_UPDATE", "subject": ana(), "replacementTerms": [{"type": "EMAIL", "existingValue": "a@b.c", "updatedValue": "nope"}]}),
            false,
            "replacementTerms[0].updatedValue",
        ),
        (
            json!({"requestType": "GDPR_EXPORT", "subject": {}}),
            false,
            "subject",
        ),
        (json!({"requestType": "GDPR_EXPORT"}), false, "subject"),
        (
            json!({"requestType": "GDPR_ERASE", "subject": ana()}),
            false,
            "requestType",
        ),
        (json!({"subject": ana()}), false, "requestType"),
        (
            json!({"requestType": "GDPR_EXPORT", "subject": {"phoneNumbers": ["call me"]}}),
            false,
            "phoneNumbers[0]",
        ),
        (
            json!({"requestType": "GDPR_EXPORT", "subject": {"dialerContactId": {"id": "x"}}}),
            false,
            "dialerContactId.contactListId",
        ),
    ];
    for (body, confirmed, field) in cases {
        let response = app.submit(&token, &body, confirmed).await;
        let error = expect_error(response, 400, "invalid.value").await;
        assert_eq!(error["details"][0]["fieldName"], field, "{error}");
    }
    let bad_flag = app
        .http
        .post(app.url("/api/v2/gdpr/requests?deleteConfirmed=yes"))
        .bearer_auth(&token)
        .json(&json!({"requestType": "GDPR_DELETE", "subject": ana()}))
        .send()
        .await
        .unwrap();
    expect_error(bad_flag, 400, "invalid.value").await;
    let wrong_shape = app
        .submit(
            &token,
            &json!({"requestType": "GDPR_EXPORT", "subject": {"emailAddresses": "a@b.c"}}),
            false,
        )
        .await;
    expect_error(wrong_shape, 400, "bad.request").await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM gdpr_requests")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "nothing half-written");
}

#[sqlx::test]
async fn an_unknown_id_is_a_404(pool: PgPool) {
    let (app, token) = seeded(pool).await;
    for subject in [
        json!({"userId": "no-such-user"}),
        json!({"externalContactId": "no-such-contact"}),
        json!({"journeyCustomer": {"type": "cookie", "id": "nope"}}),
    ] {
        let response = app
            .submit(
                &token,
                &json!({"requestType": "GDPR_EXPORT", "subject": subject}),
                false,
            )
            .await;
        expect_error(response, 404, "not.found").await;
    }
    let missing = app
        .http
        .get(app.url(&format!("/api/v2/gdpr/requests/{}", uuid::Uuid::new_v4())))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect_error(missing, 404, "not.found").await;
    let garbage = app
        .http
        .get(app.url("/api/v2/gdpr/requests/..%2F..%2Fetc"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    expect_error(garbage, 404, "not.found").await;
}

#[sqlx::test]
async fn a_journey_customer_resolves_to_every_identifier_of_the_record(pool: PgPool) {
    let (app, token) = seeded(pool).await;
    let done = app.completed(&token, json!({"requestType": "GDPR_GET", "subject": {"journeyCustomer": {"type": "cookie", "id": story::ANA_COOKIE}}})).await;
    let summary = done["accessSummary"].as_array().unwrap();
    let journeys = summary.iter().find(|s| s["service"] == "journeys").unwrap();
    assert!(journeys["records"].as_i64().unwrap() >= 2);
    // The visitor identified herself by email: her contacts are found through it.
    let contacts = summary
        .iter()
        .find(|s| s["service"] == "externalContacts")
        .unwrap();
    assert!(contacts["records"].as_i64().unwrap() >= 1, "{done}");
}

#[sqlx::test]
async fn requests_are_listed_newest_first_in_pages(pool: PgPool) {
    seed(&pool, 10).await;
    let app = TestApp::spawn_without_worker(pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = json!({"requestType": "GDPR_GET", "subject": {"emailAddresses": [format!("person{i}@example.com")]}});
        ids.push(
            app.accepted(&token, body).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let page = |size: &str, number: &str| {
        app.http
            .get(app.url("/api/v2/gdpr/requests"))
            .bearer_auth(&token)
            .query(&[("pageSize", size), ("pageNumber", number)])
            .send()
    };
    let first: Value = page("2", "1").await.unwrap().json().await.unwrap();
    assert_eq!(first["total"], 3);
    assert_eq!(first["pageCount"], 2);
    assert_eq!(first["entities"][0]["id"], ids[2].as_str());
    assert_eq!(first["entities"][1]["id"], ids[1].as_str());
    assert_eq!(
        first["nextUri"],
        "/api/v2/gdpr/requests?pageSize=2&pageNumber=2"
    );
    let second: Value = page("2", "2").await.unwrap().json().await.unwrap();
    assert_eq!(second["entities"][0]["id"], ids[0].as_str());
    let default: Value = app
        .http
        .get(app.url("/api/v2/gdpr/requests"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(default["pageSize"], 25);
    expect_error(page("101", "1").await.unwrap(), 400, "invalid.value").await;

    let other = app.token("globex", ALL_PERMISSIONS).await;
    let theirs: Value = app
        .http
        .get(app.url("/api/v2/gdpr/requests"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["total"], 0);
    let peek = app
        .http
        .get(app.url(&format!("/api/v2/gdpr/requests/{}", ids[0])))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    expect_error(peek, 404, "not.found").await;
}

#[sqlx::test]
async fn request_endpoints_check_their_permissions(pool: PgPool) {
    let app = TestApp::spawn_without_worker(pool).await;
    let viewer = app.token("demo", &["gdpr:request:view"]).await;
    let response = app
        .submit(
            &viewer,
            &json!({"requestType": "GDPR_GET", "subject": ana()}),
            false,
        )
        .await;
    let body = expect_error(response, 403, "missing.any.permissions").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("gdpr:request:add")
    );
    let adder = app.token("demo", &["gdpr:request:add"]).await;
    let list = app
        .http
        .get(app.url("/api/v2/gdpr/requests"))
        .bearer_auth(&adder)
        .send()
        .await
        .unwrap();
    expect_error(list, 403, "missing.any.permissions").await;
}

#[sqlx::test]
async fn a_parent_completes_when_its_last_two_related_requests_finish_at_once(pool: PgPool) {
    // Two related requests finishing in two transactions at the same moment must not each
    // see the other as still open and leave their merge-set parent unfinished.
    let app = TestApp::spawn(pool.clone()).await;
    app.token("demo", ALL_PERMISSIONS).await;
    let (org, client): (uuid::Uuid, uuid::Uuid) =
        sqlx::query_as("SELECT org_id, id FROM api_clients LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    let [parent, first, second] = [(); 3].map(|()| uuid::Uuid::now_v7());
    for (id, parent_id, status) in [
        (parent, None, "FINALIZING"),
        (first, Some(parent), "FINALIZING"),
        (second, Some(parent), "FINALIZING"),
    ] {
        sqlx::query(
            "INSERT INTO gdpr_requests (id, org_id, client_id, request_type, subject, terms,
                 term_hashes, subject_hash, status, parent_id, created_at, due_date)
             VALUES ($1, $2, $3, 'GDPR_GET', '{}', '[]', '{}', $4, $5, $6, now(), now())",
        )
        .bind(id)
        .bind(org)
        .bind(client)
        .bind(id.as_bytes().to_vec())
        .bind(status)
        .bind(parent_id)
        .execute(&pool)
        .await
        .unwrap();
    }
    let one = finish_related(&pool, first, parent).await;
    let other = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let tx = finish_related(&pool, second, parent).await;
            tx.commit().await.unwrap();
        })
    };
    // The second is under way (and, parent locked, waiting) while the first commits.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    one.commit().await.unwrap();
    other.await.unwrap();
    let status: String = sqlx::query_scalar("SELECT status FROM gdpr_requests WHERE id = $1")
        .bind(parent)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "COMPLETED");
}

/// Marks a related request COMPLETED and refreshes its parent, as a finalization does; the
/// transaction is left open.
async fn finish_related(
    pool: &PgPool,
    id: uuid::Uuid,
    parent: uuid::Uuid,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("UPDATE gdpr_requests SET status = 'COMPLETED' WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    gdprd::worker::queue::refresh_parent(&mut tx, parent)
        .await
        .unwrap();
    tx
}

#[sqlx::test]
async fn the_answer_to_a_creation_is_the_request_as_stored(pool: PgPool) {
    seed(&pool, 10).await;
    // No worker: the stored request stays as it was created.
    let app = TestApp::spawn_without_worker(pool).await;
    let token = app.token("demo", ALL_PERMISSIONS).await;
    let member: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM demo.external_contacts WHERE work_email = $1 OR personal_email = $1 LIMIT 1",
    )
    .bind(story::ANA_EMAIL)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let bodies = [
        json!({"requestType": "GDPR_EXPORT", "subject": ana(), "name": "Ana's export"}),
        json!({
            "requestType": "GDPR_UPDATE",
            "subject": {"phoneNumbers": [story::ANA_PHONE]},
            "replacementTerms": [{"type": "PHONE", "existingValue": "555.010.0001", "updatedValue": "+1 555 010 0099"}]
        }),
        // A member of a merge set: one related request per member, the jobs theirs.
        json!({"requestType": "GDPR_DELETE", "subject": {"externalContactId": member.to_string()}}),
    ];
    for body in bodies {
        let created = app.accepted(&token, body).await;
        assert_eq!(created["status"], "INITIATED", "{created}");
        let stored = app.request(&token, created["id"].as_str().unwrap()).await;
        assert_eq!(created, stored);
    }
}
