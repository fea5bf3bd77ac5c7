//! The data-service catalog against a real PostgreSQL: the shipped catalog fits the migrated
//! database, broken catalogs are refused, and every action finds, changes and leaves alone
//! exactly the rows it should.

use gdprd::catalog::{self, Action, Catalog, CatalogError, Erasure, Outcome};
use gdprd::index::normalize::fold_text;
use gdprd::requests::terms::{Replacement, TermKind, Terms};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

const KEY: &[u8] = b"catalog test key";

fn demo() -> Catalog {
    Catalog::load(concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/demo.toml"))
        .expect("the demo catalog parses")
}

fn terms(list: &[(TermKind, &str, &str)]) -> Terms {
    let mut terms = Terms::default();
    for (kind, value, raw) in list {
        terms.add(*kind, (*value).to_owned(), raw);
    }
    terms
}

/// Ana García as a request created from her email address knows her: the email, her phone
/// number and her name (which must not select rows, since something stronger is known).
fn ana() -> Terms {
    terms(&[
        (
            TermKind::Email,
            "ana.garcia@example.com",
            "Ana.Garcia@Example.com",
        ),
        (TermKind::Phone, "+15550100001", "+1 (555) 010-0001"),
        (TermKind::Name, "ana garcia", "Ana García"),
        (TermKind::JourneyCookie, "ck-ana", "ck-ana"),
    ])
}

async fn run(
    pool: &PgPool,
    service: &str,
    org: Uuid,
    terms: &Terms,
    action: Action<'_>,
) -> Outcome {
    let catalog = demo();
    let service = catalog.service(service).expect("a demo service");
    let mut tx = pool.begin().await.unwrap();
    let outcome = catalog::execute(&mut tx, service, org, terms, action, KEY)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tx.commit().await.unwrap();
    outcome
}

async fn run_all(pool: &PgPool, org: Uuid, terms: &Terms, action: Action<'_>) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for service in demo().services {
        outcomes.push(run(pool, &service.name, org, terms, action).await);
    }
    outcomes
}

/// The rows of the fixture that gdprd's own tables do not hold, in a stable order, to compare
/// the demo schema before and after.
async fn snapshot(conn: &mut PgConnection) -> Vec<String> {
    let mut all = Vec::new();
    for table in [
        "directory_users",
        "external_contacts",
        "dialer_contacts",
        "conversations",
        "conversation_participants",
        "transcript_lines",
        "attachments",
        "journey_visitors",
        "journey_sessions",
        "journey_events",
        "consent_records",
    ] {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT to_jsonb(t)::text FROM demo.{table} t ORDER BY 1"
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        all.extend(rows.into_iter().map(|r| format!("{table}: {r}")));
    }
    all
}

struct Fixture {
    org: Uuid,
    other_org: Uuid,
    /// Ana's former account: inactive.
    ana_user: Uuid,
    /// An agent who is still employed.
    bo_user: Uuid,
    ana_contact: Uuid,
    namesake_contact: Uuid,
    conversation: Uuid,
    namesake_conversation: Uuid,
}

async fn org(conn: &mut PgConnection, name: &str) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO organizations (id, name) VALUES ($1, $2)")
        .bind(id)
        .bind(name)
        .execute(&mut *conn)
        .await
        .unwrap();
    id
}

/// Ana García in every service, spelled the many ways real tables spell her; a namesake with
/// another email address and number; Bo, the agent who served her; and a second organization
/// holding Ana's very identifiers.
async fn fixture(pool: &PgPool) -> Fixture {
    let mut conn = pool.acquire().await.unwrap();
    let org_id = org(&mut conn, "Acme").await;
    let other_org = org(&mut conn, "Other").await;
    let mut people = Vec::new();
    for o in [org_id, other_org] {
        people.push(people_of(&mut conn, o).await);
    }
    let (ana_user, bo_user, ana_contact, namesake_contact, conversation, namesake_conversation) =
        people[0];
    Fixture {
        org: org_id,
        other_org,
        ana_user,
        bo_user,
        ana_contact,
        namesake_contact,
        conversation,
        namesake_conversation,
    }
}

async fn people_of(conn: &mut PgConnection, org: Uuid) -> (Uuid, Uuid, Uuid, Uuid, Uuid, Uuid) {
    let ids: [Uuid; 6] = std::array::from_fn(|_| Uuid::now_v7());
    let [
        ana_user,
        bo_user,
        ana_contact,
        namesake_contact,
        conv,
        namesake_conv,
    ] = ids;
    let list = Uuid::now_v7();
    let session = Uuid::now_v7();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO demo.directory_users (id, org_id, name, email, phone, title, active) VALUES
           ('{ana_user}', '{org}', 'Ana García', 'ana.garcia@example.com', '555-010-0001',
            'Analyst', false),
           ('{bo_user}', '{org}', 'Bo Lindqvist', 'bo@corp.example', '+46 8 123 456 78',
            'Agent', true);
         INSERT INTO demo.external_contacts (id, org_id, name, work_email, cell_phone, address,
                                             twitter_handle) VALUES
           ('{ana_contact}', '{org}', 'Ana García', 'Ana.Garcia@Example.com', '+1 555 010 0001',
            '1 Calle Mayor, Madrid', '@AnaG'),
           ('{namesake_contact}', '{org}', 'Ana García', 'ana.g@other.example', '+1 555 010 9999',
            NULL, NULL);
         INSERT INTO demo.contact_lists (id, org_id, name) VALUES ('{list}', '{org}', 'Spring');
         INSERT INTO demo.dialer_contacts (id, org_id, contact_list_id, name, phone, alt_phone,
                                           email) VALUES
           (gen_random_uuid(), '{org}', '{list}', 'ANA GARCIA', '(555) 010-0001', NULL, NULL),
           (gen_random_uuid(), '{org}', '{list}', 'A. García', '011 1 555 010 0001', NULL, NULL),
           (gen_random_uuid(), '{org}', '{list}', 'Ana García', '+1 555 010 9999', NULL,
            'ana.g@other.example');
         INSERT INTO demo.conversations (id, org_id, channel, queue_name, started_at) VALUES
           ('{conv}', '{org}', 'voice', 'Billing', '2025-06-01T10:00:00Z'),
           ('{namesake_conv}', '{org}', 'email', 'Billing', '2025-06-02T10:00:00Z');
         INSERT INTO demo.conversation_participants (id, org_id, conversation_id, purpose, name,
                                                     address, user_id) VALUES
           (gen_random_uuid(), '{org}', '{conv}', 'customer', 'Ana García', '+15550100001', NULL),
           (gen_random_uuid(), '{org}', '{conv}', 'agent', 'Bo Lindqvist', 'bo@corp.example',
            '{bo_user}'),
           (gen_random_uuid(), '{org}', '{namesake_conv}', 'customer', 'Ana García',
            'ana.g@other.example', NULL);
         INSERT INTO demo.transcript_lines (id, org_id, conversation_id, seq, speaker, body)
         VALUES
           (gen_random_uuid(), '{org}', '{conv}', 1, 'agent',
            'Thank you for calling, this is Bo. How can I help?'),
           (gen_random_uuid(), '{org}', '{conv}', 2, 'customer',
            'Hi, this is Ana García, my number is (555) 010-0001.'),
           (gen_random_uuid(), '{org}', '{conv}', 3, 'customer',
            'Call me back on 555.010.0001 or +1 555 010 0001, or mail ANA.GARCIA@EXAMPLE.COM.'),
           (gen_random_uuid(), '{org}', '{conv}', 4, 'customer',
            'Ana   García here again, at Ana.Garcia@Example.com.'),
           (gen_random_uuid(), '{org}', '{namesake_conv}', 1, 'customer',
            'Hi, this is Ana García, I am writing from ana.g@other.example.');
         INSERT INTO demo.attachments (id, org_id, conversation_id, uploaded_by, file_name,
                                       content_type, content) VALUES
           (gen_random_uuid(), '{org}', '{conv}', 'Ana.Garcia@Example.com', 'invoice.pdf',
            'application/pdf', 'Invoice for Ana García'),
           (gen_random_uuid(), '{org}', '{conv}', '555 010 0001', 'photo.png', 'image/png',
            'A photo'),
           (gen_random_uuid(), '{org}', '{namesake_conv}', 'ana.g@other.example', 'id.png',
            'image/png', 'Ana García');
         INSERT INTO demo.journey_visitors (org_id, cookie_id, name, email, phone, first_seen,
                                            last_seen) VALUES
           ('{org}', 'ck-ana', NULL, NULL, NULL, '2025-05-01T00:00:00Z', '2025-05-02T00:00:00Z'),
           ('{org}', 'ck-ana-form', 'Ana García', ' ana.garcia@example.com', NULL,
            '2025-05-03T00:00:00Z', '2025-05-03T00:00:00Z'),
           ('{org}', 'ck-namesake', 'Ana García', 'ana.g@other.example', NULL,
            '2025-05-01T00:00:00Z', '2025-05-01T00:00:00Z');
         INSERT INTO demo.journey_sessions (id, org_id, cookie_id, started_at, ip_address) VALUES
           ('{session}', '{org}', 'ck-ana', '2025-05-01T00:00:00Z', '192.0.2.1'),
           (gen_random_uuid(), '{org}', 'ck-ana-form', '2025-05-03T00:00:00Z', '192.0.2.1'),
           (gen_random_uuid(), '{org}', 'ck-namesake', '2025-05-01T00:00:00Z', '198.51.100.7');
         INSERT INTO demo.journey_events (id, org_id, session_id, cookie_id, event_type,
                                          input_text, created_at) VALUES
           (gen_random_uuid(), '{org}', '{session}', 'ck-ana', 'page_view', NULL,
            '2025-05-01T00:00:00Z'),
           (gen_random_uuid(), '{org}', '{session}', 'ck-ana', 'search', 'Ana García',
            '2025-05-01T00:01:00Z');
         INSERT INTO demo.consent_records (id, org_id, email, phone, cookie_id, purpose, granted,
                                           source, recorded_at) VALUES
           (gen_random_uuid(), '{org}', 'ana.garcia@example.com ', NULL, NULL, 'newsletter',
            true, 'web form', '2025-01-01T00:00:00Z'),
           (gen_random_uuid(), '{org}', 'ANA.GARCIA@example.com', NULL, NULL, 'marketing',
            false, 'agent', '2025-02-01T00:00:00Z'),
           (gen_random_uuid(), '{org}', NULL, '(555) 010-0001', NULL, 'sms', true, 'agent',
            '2025-03-01T00:00:00Z'),
           (gen_random_uuid(), '{org}', NULL, NULL, 'ck-ana', 'analytics', true, 'banner',
            '2025-04-01T00:00:00Z'),
           (gen_random_uuid(), '{org}', 'ana.g@other.example', NULL, NULL, 'newsletter', true,
            'web form', '2025-01-01T00:00:00Z');"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    (
        ana_user,
        bo_user,
        ana_contact,
        namesake_contact,
        conv,
        namesake_conv,
    )
}

#[sqlx::test]
async fn the_demo_catalog_fits_the_migrated_database(pool: PgPool) {
    let catalog = demo();
    catalog.validate(&pool).await.unwrap();
    let services: Vec<(&str, Erasure)> = catalog
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.erasure))
        .collect();
    assert_eq!(
        services,
        [
            ("directory", Erasure::Anonymize),
            ("externalContacts", Erasure::Delete),
            ("dialer", Erasure::Delete),
            ("conversations", Erasure::Anonymize),
            ("attachments", Erasure::Delete),
            ("journeys", Erasure::Delete),
            ("consent", Erasure::Anonymize),
        ]
    );
    let directory = catalog.service("directory").unwrap();
    assert!(directory.can_update(TermKind::Email));
    assert!(!directory.can_update(TermKind::Twitter));
    assert!(
        catalog
            .service("externalContacts")
            .unwrap()
            .can_update(TermKind::Twitter)
    );
}

/// A one-service catalog around the consent table; `table` is the body of its table entry.
fn consent_catalog(erasure: &str, table: &str) -> String {
    format!(
        "[[service]]
         name = \"consent\"
         erasure = \"{erasure}\"
         purpose = \"Proving consent\"
         categories = [\"email address\"]
         retention = \"For the limitation period\"

         [[service.table]]
         {table}"
    )
}

async fn refused(pool: &PgPool, text: &str) -> String {
    let error = match text.parse::<Catalog>() {
        Ok(catalog) => catalog
            .validate(pool)
            .await
            .expect_err("the catalog is refused"),
        Err(e) => e,
    };
    assert!(
        matches!(
            error,
            CatalogError::Entry { .. } | CatalogError::Syntax(_) | CatalogError::Empty
        ),
        "{error:?}"
    );
    error.to_string()
}

#[sqlx::test]
async fn broken_catalogs_are_refused_naming_the_entry(pool: PgPool) {
    let cases = [
        (
            consent_catalog(
                "delete",
                "name = \"demo.consent_recs\"\nmatch = { email = \"EMAIL\" }",
            ),
            "catalog service \"consent\", table demo.consent_recs: no such table",
        ),
        (
            consent_catalog(
                "delete",
                "name = \"demo.consent_records\"\nmatch = { emial = \"EMAIL\" }",
            ),
            "catalog service \"consent\", table demo.consent_records: unknown column \"emial\"",
        ),
        (
            consent_catalog(
                "delete",
                "name = \"demo.consent_records\"\nmatch = { email = \"EMIAL\" }",
            ),
            "catalog service \"consent\", table demo.consent_records: unknown identifier type \
             \"EMIAL\" for column \"email\"",
        ),
        (
            consent_catalog(
                "delete",
                "name = \"demo.consent_records\"\nmatch = { email = \"EMAIL\" }\n\
                 anonymize = { email = \"hash\" }",
            ),
            "catalog service \"consent\", table demo.consent_records: anonymize rules on a \
             service whose erasure is \"delete\"",
        ),
        (
            consent_catalog(
                "anonymize",
                "name = \"demo.consent_records\"\nmatch = { email = \"EMAIL\", phone = \"PHONE\" }\n\
                 anonymize = { email = \"hash\" }",
            ),
            "match column \"phone\" has no anonymize rule",
        ),
        (
            consent_catalog(
                "anonymize",
                "name = \"demo.consent_records\"\nmatch = { email = \"EMAIL\" }\n\
                 anonymize = { email = \"shred\" }",
            ),
            "unknown anonymize rule \"shred\" for column \"email\"",
        ),
        (
            consent_catalog(
                "anonymize",
                "name = \"demo.consent_records\"\nmatch = { email = \"EMAIL\" }\n\
                 anonymize = { email = \"hash\" }\nretain_when = \"source\"\n\
                 retain_reason = \"kept\"",
            ),
            "retain_when column \"source\" is text, expected boolean",
        ),
        (
            consent_catalog(
                "anonymize",
                "name = \"demo.consent_records\"\nmatch = { email = \"EMAIL\" }\n\
                 anonymize = { email = \"hash\", purpose = \"null\" }",
            ),
            "rule \"null\" on column \"purpose\", which is NOT NULL",
        ),
        (
            consent_catalog(
                "delete",
                "name = \"demo.consent_records\"\nmatch = { email = \"EMAIL\" }\n\
                 update = [\"purpose\"]",
            ),
            "update column \"purpose\" is not a match column",
        ),
        (
            consent_catalog(
                "delete",
                "name = \"demo.consent_records\"\n\
                 link = { column = \"cookie_id\", parent = \"demo.journey_visitors\", \
                 parent_column = \"cookie_id\" }",
            ),
            "links to demo.journey_visitors, which is not a table of this service",
        ),
        (
            consent_catalog(
                "delete",
                "name = \"demo.consent_records\"\nmatch = { email = \"EMAIL\" }\n\
                 retain_wen = \"granted\"",
            ),
            "unknown field `retain_wen`",
        ),
        (
            consent_catalog("erase", "name = \"demo.consent_records\""),
            "unknown erasure \"erase\"",
        ),
        (
            "[[service]]
             name = \"dialer\"
             erasure = \"delete\"
             purpose = \"Campaigns\"
             categories = [\"phone numbers\"]
             retention = \"Six months\"

             [[service.table]]
             name = \"demo.contact_lists\"
             match = { name = \"NAME\" }"
                .to_owned(),
            "demo.dialer_contacts refers to this table without ON DELETE CASCADE or SET NULL",
        ),
    ];
    for (text, expected) in cases {
        let message = refused(&pool, &text).await;
        assert!(
            message.contains(expected),
            "expected {expected:?} in {message:?}"
        );
    }
}

#[sqlx::test]
async fn sql_folding_agrees_with_fold_text(pool: PgPool) {
    let names = [
        "García",
        "Müller",
        "Łukasz Żółć",
        "Søren Straße",
        "Zoë Ørsted",
        "Nguyễn Thị Minh Khai",
        "Ólafsdóttir",
        "Dvořák",
        "  ANA \t GARCÍA ",
        "Ærøskøbing",
        "Đorđe Čolić",
    ];
    for name in names {
        let folded: String = sqlx::query_scalar("SELECT gdpr_fold($1)")
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(folded, fold_text(name), "{name}");
    }
}

/// What gdprd creates in a service's external database is what its own migrations left in its
/// database: running `functions.sql` over a migrated database changes neither function.
#[sqlx::test]
async fn the_external_databases_functions_are_those_of_the_migrations(pool: PgPool) {
    const DEFINITIONS: &str = "SELECT p.proname::text, pg_get_functiondef(p.oid)
                                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                                WHERE n.nspname = 'public'
                                  AND p.proname IN ('gdpr_fold', 'gdpr_digits')
                                ORDER BY p.proname";
    let migrated: Vec<(String, String)> =
        sqlx::query_as(DEFINITIONS).fetch_all(&pool).await.unwrap();
    assert_eq!(migrated.len(), 2);
    sqlx::raw_sql(include_str!("../src/catalog/functions.sql"))
        .execute(&pool)
        .await
        .unwrap();
    let external: Vec<(String, String)> =
        sqlx::query_as(DEFINITIONS).fetch_all(&pool).await.unwrap();
    assert_eq!(external, migrated);
}

/// `gdpr_digits` keeps the ASCII digits of any text, as `phone::variants` spells numbers, and
/// gives what the definition of migration 0004 gave, which indexes built before 0011 hold.
#[sqlx::test]
async fn sql_digits_keep_the_ascii_digits_of_any_text(pool: PgPool) {
    use rand::{Rng, SeedableRng};

    // Digits of other scripts (Arabic-Indic, fullwidth, superscript) are not ASCII digits;
    // control characters, white space and separators of every kind surround the digits.
    let alphabet: Vec<char> = "0123456789 +-().,/#*@abcxyzABC\t\n\r\u{b}\u{c}\u{1}\u{7f}\
                               \u{a0}\u{2003}éßŁ٠١٢٣٤٥٦٧٨٩０１２３²³½😀"
        .chars()
        .collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut texts: Vec<String> = (0..2_000)
        .map(|_| {
            let len = rng.random_range(0..40);
            (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect()
        })
        .collect();
    texts.extend(
        [
            "",
            "+44 (0)20 7946 0018",
            "555.010.0001",
            "ana.garcia@example.com",
            "no digits at all",
        ]
        .map(str::to_owned),
    );
    texts.push("0-".repeat(5_000));

    let rows: Vec<(String, String, String)> = sqlx::query_as(
        r"SELECT v, gdpr_digits(v), regexp_replace(v, '\D', '', 'g')
            FROM unnest($1::text[]) WITH ORDINALITY AS t (v, n) ORDER BY n",
    )
    .bind(&texts)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), texts.len());
    for (text, digits, before) in rows {
        let ascii: String = text.chars().filter(char::is_ascii_digit).collect();
        assert_eq!(digits, ascii, "{text:?}");
        assert_eq!(digits, before, "{text:?}");
    }
}

/// A connection that was open while migration 0011 replaced `gdpr_digits` (a pooled connection
/// of another instance) still finds rows by phone through the index on the function.
#[sqlx::test]
async fn a_connection_open_across_migration_0011_keeps_using_the_phone_indexes(pool: PgPool) {
    const LOOKUP: &str = "EXPLAIN (COSTS OFF) SELECT id FROM demo.conversation_participants
                           WHERE org_id = '7d4e2c1a-0b3f-4c6d-9e8a-5f1b2c3d4e5f'
                             AND gdpr_digits(address) = '15550100001'";
    async fn plan(conn: &mut PgConnection) -> String {
        let lines: Vec<String> = sqlx::query_scalar(LOOKUP)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        lines.join("\n")
    }
    let mut open = pool.acquire().await.unwrap();
    let mut migrator = pool.acquire().await.unwrap();
    // The database as it was before 0011, and a connection that has planned a lookup on it.
    sqlx::raw_sql(
        r"CREATE OR REPLACE FUNCTION gdpr_digits(value text) RETURNS text
              LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
              RETURN pg_catalog.regexp_replace(value, '\D', '', 'g')",
    )
    .execute(&mut *migrator)
    .await
    .unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *open)
        .await
        .unwrap();
    let index = "conversation_participants_match_address_phone";
    assert!(plan(&mut open).await.contains(index));

    sqlx::raw_sql(include_str!("../migrations/0011_digits_by_runs.sql"))
        .execute(&mut *migrator)
        .await
        .unwrap();
    let after = plan(&mut open).await;
    assert!(after.contains(index), "{after}");
    assert!(after.contains(r"'\D+'"), "{after}");
}

#[sqlx::test]
async fn a_summary_counts_the_subjects_rows_in_every_service(pool: PgPool) {
    let f = fixture(&pool).await;
    let outcomes = run_all(&pool, f.org, &ana(), Action::Summarize).await;
    let matched: Vec<i64> = outcomes.iter().map(|o| o.matched).collect();
    // directory: Ana's former account; external contacts: hers; dialer: two spellings of her
    // number; conversations: her participant row, the conversation, its four lines;
    // attachments: by email and by phone; journeys: two cookies (by cookie, by email), their
    // two sessions and the events of the first; consent: two by email, one by phone, one by
    // cookie.
    assert_eq!(matched, [1, 1, 2, 6, 2, 6, 4]);
    assert!(
        outcomes
            .iter()
            .all(|o| o.deleted == 0 && o.anonymized == 0 && o.updated == 0 && o.export.is_none())
    );
    assert_eq!(outcomes[0].retained, 0);
}

#[sqlx::test]
async fn an_export_holds_the_subjects_rows_with_export_columns_only(pool: PgPool) {
    let f = fixture(&pool).await;
    let outcome = run(&pool, "consent", f.org, &ana(), Action::Export).await;
    assert_eq!(outcome.matched, 4);
    let export = exported(&outcome);
    let rows = export["demo.consent_records"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.get("org_id").is_none()));
    let purposes: Vec<&str> = rows
        .iter()
        .map(|r| r["purpose"].as_str().unwrap())
        .collect();
    for purpose in ["newsletter", "marketing", "sms", "analytics"] {
        assert!(purposes.contains(&purpose), "{purposes:?}");
    }

    let outcome = run(&pool, "conversations", f.org, &ana(), Action::Export).await;
    let export = exported(&outcome);
    assert_eq!(
        export["demo.conversation_participants"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        export["demo.conversations"][0]["id"],
        f.conversation.to_string()
    );
    let lines = export["demo.transcript_lines"].as_array().unwrap();
    assert_eq!(lines.len(), 4);
    assert!(lines.iter().any(|l| {
        l["body"]
            .as_str()
            .unwrap()
            .contains("my number is (555) 010-0001")
    }));
}

#[sqlx::test]
async fn an_export_lists_only_the_declared_columns(pool: PgPool) {
    let (_, _, outcome) = export_of(
        &pool,
        "name = \"demo.consent_records\"\nmatch = { email = \"EMAIL\" }\n\
         export = [\"purpose\", \"granted\"]",
    )
    .await;
    let mut rows = exported(&outcome)["demo.consent_records"]
        .as_array()
        .unwrap()
        .clone();
    rows.sort_by_key(|r| r["purpose"].to_string());
    assert_eq!(
        serde_json::Value::Array(rows),
        serde_json::json!([
            { "purpose": "marketing", "granted": false },
            { "purpose": "newsletter", "granted": true },
        ])
    );
}

#[sqlx::test]
async fn an_export_lists_every_table_in_catalog_order_its_rows_in_key_order(pool: PgPool) {
    // None of Ana's dialer contacts holds her email address, that table's only match here: the
    // first table has no rows of hers, and is still listed.
    let (f, mut tx, outcome) = export_of(
        &pool,
        "name = \"demo.dialer_contacts\"\nmatch = { email = \"EMAIL\" }\n\
         export = [\"name\"]\n\
         [[service.table]]\n\
         name = \"demo.consent_records\"\nmatch = { email = \"EMAIL\", phone = \"PHONE\" }\n\
         export = [\"id\", \"purpose\"]\n\
         [[service.table]]\n\
         name = \"demo.directory_users\"\nmatch = { email = \"EMAIL\" }\n\
         export = [\"name\"]",
    )
    .await;
    let mut consent: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, purpose FROM demo.consent_records
          WHERE org_id = $1 AND cookie_id IS NULL
            AND email IS DISTINCT FROM 'ana.g@other.example'",
    )
    .bind(f.org)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    consent.sort();
    assert_eq!(consent.len(), 3, "the fixture's consent records of Ana");
    let consent: Vec<serde_json::Value> = consent
        .iter()
        .map(|(id, purpose)| serde_json::json!({ "id": id, "purpose": purpose }))
        .collect();
    let expected = serde_json::json!({
        "demo.dialer_contacts": [],
        "demo.consent_records": consent,
        "demo.directory_users": [{ "name": "Ana García" }],
    });
    // The text itself, whose order a JSON value would not keep.
    let text = outcome.export.as_ref().expect("an export").get();
    let (dialer, consent_at, directory) = (
        text.find("\"demo.dialer_contacts\"").unwrap(),
        text.find("\"demo.consent_records\"").unwrap(),
        text.find("\"demo.directory_users\"").unwrap(),
    );
    assert!(dialer < consent_at && consent_at < directory, "{text}");
    assert_eq!(exported(&outcome), expected);
    let ids: Vec<&str> = expected["demo.consent_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let positions: Vec<usize> = ids.iter().map(|id| text.find(id).unwrap()).collect();
    assert!(positions.is_sorted(), "rows in key order: {text}");
}

#[sqlx::test]
async fn an_export_of_a_table_with_a_column_named_t_holds_its_whole_rows(pool: PgPool) {
    // The export's statement calls the table `t`: its own column of that name must not stand in
    // for the row.
    sqlx::raw_sql(
        "CREATE TABLE demo.notes (id uuid PRIMARY KEY, org_id uuid NOT NULL REFERENCES organizations (id),
                                  email text, t text)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let org_id = org(&mut conn, "Notes").await;
    let note = Uuid::now_v7();
    sqlx::query("INSERT INTO demo.notes VALUES ($1, $2, 'ana.garcia@example.com', NULL)")
        .bind(note)
        .bind(org_id)
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let (_, outcome) = export_in(
        &pool,
        "name = \"demo.notes\"\nmatch = { email = \"EMAIL\" }",
        org_id,
    )
    .await;
    assert_eq!(
        exported(&outcome),
        serde_json::json!({
            "demo.notes": [{ "id": note, "email": "ana.garcia@example.com", "t": null }],
        })
    );
}

#[sqlx::test]
async fn an_update_rewrites_the_identifier_in_every_service_holding_its_type(pool: PgPool) {
    let f = fixture(&pool).await;
    let replacements = [Replacement {
        kind: TermKind::Email,
        existing: "ana.garcia@example.com".into(),
        existing_raw: "Ana.Garcia@Example.com".into(),
        updated: "ana@new.example".into(),
    }];
    let catalog = demo();
    let mut updated = Vec::new();
    for service in catalog
        .services
        .iter()
        .filter(|s| s.can_update(TermKind::Email))
    {
        let o = run(
            &pool,
            &service.name,
            f.org,
            &ana(),
            Action::Update(&replacements),
        )
        .await;
        updated.push((service.name.as_str(), o.updated));
    }
    assert_eq!(
        updated,
        [
            ("directory", 1),
            ("externalContacts", 1),
            ("dialer", 0),
            ("conversations", 0),
            ("attachments", 1),
            ("journeys", 1),
            ("consent", 2),
        ]
    );
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        count(
            "SELECT count(*) FROM (
                 SELECT email AS v FROM demo.directory_users
                 UNION ALL SELECT work_email FROM demo.external_contacts
                 UNION ALL SELECT uploaded_by FROM demo.attachments
                 UNION ALL SELECT email FROM demo.journey_visitors
                 UNION ALL SELECT email FROM demo.consent_records) x
              WHERE v = 'ana@new.example'"
        )
        .await,
        6
    );
    // The other organization's copy and the namesake's address are as they were.
    assert_eq!(
        count(
            "SELECT count(*) FROM demo.consent_records
              WHERE lower(btrim(email)) = 'ana.garcia@example.com'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM demo.external_contacts WHERE work_email = 'ana.g@other.example'"
        )
        .await,
        2
    );
    // A second run finds nothing left to rewrite.
    let again = run(
        &pool,
        "consent",
        f.org,
        &ana(),
        Action::Update(&replacements),
    )
    .await;
    assert_eq!(again.updated, 0);
}

#[sqlx::test]
async fn an_update_of_a_phone_number_finds_it_in_any_spelling(pool: PgPool) {
    let f = fixture(&pool).await;
    let replacements = [Replacement {
        kind: TermKind::Phone,
        existing: "+15550100001".into(),
        existing_raw: "+1 (555) 010-0001".into(),
        updated: "+1 555 010 0002".into(),
    }];
    let o = run(
        &pool,
        "dialer",
        f.org,
        &ana(),
        Action::Update(&replacements),
    )
    .await;
    assert_eq!(o.updated, 2);
    let phones: Vec<String> = sqlx::query_scalar(
        "SELECT phone FROM demo.dialer_contacts WHERE org_id = $1 ORDER BY phone",
    )
    .bind(f.org)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        phones,
        ["+1 555 010 0002", "+1 555 010 0002", "+1 555 010 9999"]
    );
}

async fn transcript(pool: &PgPool, conversation: Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT body FROM demo.transcript_lines WHERE conversation_id = $1 ORDER BY seq",
    )
    .bind(conversation)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn erasure_deletes_or_anonymizes_as_each_service_says(pool: PgPool) {
    let f = fixture(&pool).await;
    let outcomes = run_all(&pool, f.org, &ana(), Action::Erase).await;
    let done: Vec<(i64, i64)> = outcomes.iter().map(|o| (o.deleted, o.anonymized)).collect();
    assert_eq!(
        done,
        [(0, 1), (1, 0), (2, 0), (0, 4), (2, 0), (6, 0), (0, 4)],
        "(deleted, anonymized) per service"
    );

    let remaining: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM demo.external_contacts WHERE id = $1)
              + (SELECT count(*) FROM demo.dialer_contacts WHERE org_id = $2)
              + (SELECT count(*) FROM demo.attachments WHERE org_id = $2)
              + (SELECT count(*) FROM demo.journey_visitors WHERE org_id = $2)
              + (SELECT count(*) FROM demo.journey_sessions WHERE org_id = $2)
              + (SELECT count(*) FROM demo.journey_events WHERE org_id = $2)",
    )
    .bind(f.ana_contact)
    .bind(f.org)
    .fetch_one(&pool)
    .await
    .unwrap();
    // Only the namesake's dialer contact, attachment, visitor and session are left.
    assert_eq!(remaining, 4);

    let (name, email, phone, title): (String, String, Option<String>, String) =
        sqlx::query_as("SELECT name, email, phone, title FROM demo.directory_users WHERE id = $1")
            .bind(f.ana_user)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (name.as_str(), email.as_str(), phone, title.as_str()),
        ("[redacted]", "[redacted]", None, "Analyst")
    );

    let participant: (String, String, Option<Uuid>) = sqlx::query_as(
        "SELECT name, address, user_id FROM demo.conversation_participants
          WHERE conversation_id = $1 AND purpose = 'customer'",
    )
    .bind(f.conversation)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        participant,
        ("[redacted]".into(), "[redacted]".into(), None)
    );

    let lines = transcript(&pool, f.conversation).await;
    assert_eq!(
        lines,
        [
            "Thank you for calling, this is Bo. How can I help?",
            "Hi, this is [redacted], my number is [redacted].",
            "Call me back on [redacted] or [redacted], or mail [redacted].",
            "[redacted] here again, at [redacted].",
        ]
    );
}

#[sqlx::test]
async fn consent_keeps_a_keyed_hash_that_proves_it_later(pool: PgPool) {
    let f = fixture(&pool).await;
    let o = run(&pool, "consent", f.org, &ana(), Action::Erase).await;
    assert_eq!((o.matched, o.anonymized), (4, 4));
    // Each of Ana's records holds one identifier; the namesake's record is left as it was.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT purpose, coalesce(email, phone, cookie_id) FROM demo.consent_records
          WHERE org_id = $1 ORDER BY recorded_at, email = 'ana.g@other.example'",
    )
    .bind(f.org)
    .fetch_all(&pool)
    .await
    .unwrap();
    let hmac = |value: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
        mac.update(value.as_bytes());
        format!("hmac:{}", hex::encode(mac.finalize().into_bytes()))
    };
    // The same email address spelled two ways gives the same hash, one anyone holding the key
    // can compute again from the address to prove the consent.
    let email = hmac("ana.garcia@example.com");
    let expected = [
        ("newsletter", email.as_str()),
        ("newsletter", "ana.g@other.example"),
        ("marketing", email.as_str()),
        ("sms", &hmac("+15550100001")),
        ("analytics", &hmac("ck-ana")),
    ];
    let rows: Vec<(&str, &str)> = rows.iter().map(|(p, v)| (p.as_str(), v.as_str())).collect();
    assert_eq!(rows, expected);
}

#[sqlx::test]
async fn an_active_employee_is_retained_with_the_reason(pool: PgPool) {
    let f = fixture(&pool).await;
    let bo = terms(&[(
        TermKind::UserId,
        &f.bo_user.to_string(),
        &f.bo_user.to_string(),
    )]);
    let summary = run(&pool, "directory", f.org, &bo, Action::Summarize).await;
    assert_eq!((summary.matched, summary.retained), (1, 1));
    let o = run(&pool, "directory", f.org, &bo, Action::Erase).await;
    assert_eq!((o.matched, o.retained, o.anonymized), (1, 1, 0));
    let reason = o.retained_reason.unwrap();
    assert!(reason.starts_with("active employee"), "{reason}");
    let name: String = sqlx::query_scalar("SELECT name FROM demo.directory_users WHERE id = $1")
        .bind(f.bo_user)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(name, "Bo Lindqvist");

    // The agent's data elsewhere is erased all the same.
    let o = run(&pool, "conversations", f.org, &bo, Action::Erase).await;
    assert_eq!((o.matched, o.retained, o.anonymized), (6, 0, 1));
    let agent: (String, String, Option<Uuid>) = sqlx::query_as(
        "SELECT name, address, user_id FROM demo.conversation_participants
          WHERE conversation_id = $1 AND purpose = 'agent'",
    )
    .bind(f.conversation)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(agent, ("[redacted]".into(), "[redacted]".into(), None));

    // An inactive account is anonymized.
    let ana_account = terms(&[(
        TermKind::UserId,
        &f.ana_user.to_string(),
        &f.ana_user.to_string(),
    )]);
    let o = run(&pool, "directory", f.org, &ana_account, Action::Erase).await;
    assert_eq!((o.matched, o.retained, o.anonymized), (1, 0, 1));
    assert_eq!(o.retained_reason, None);
}

#[sqlx::test]
async fn erasing_twice_changes_nothing_more(pool: PgPool) {
    let f = fixture(&pool).await;
    run_all(&pool, f.org, &ana(), Action::Erase).await;
    let mut conn = pool.acquire().await.unwrap();
    let before = snapshot(&mut conn).await;
    let again = run_all(&pool, f.org, &ana(), Action::Erase).await;
    assert!(
        again
            .iter()
            .all(|o| o.deleted == 0 && o.anonymized == 0 && o.updated == 0)
    );
    // Anonymized rows no longer carry Ana's identifiers, so nothing is found any more.
    let matched: Vec<i64> = again.iter().map(|o| o.matched).collect();
    assert_eq!(matched, [0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(snapshot(&mut conn).await, before);
}

#[sqlx::test]
async fn a_namesake_is_untouched_when_an_email_is_known(pool: PgPool) {
    let f = fixture(&pool).await;
    run_all(&pool, f.org, &ana(), Action::Erase).await;
    let namesake: (String, String) =
        sqlx::query_as("SELECT name, work_email FROM demo.external_contacts WHERE id = $1")
            .bind(f.namesake_contact)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        namesake,
        ("Ana García".into(), "ana.g@other.example".into())
    );
    assert_eq!(
        transcript(&pool, f.namesake_conversation).await,
        ["Hi, this is Ana García, I am writing from ana.g@other.example."]
    );
    let participant: String = sqlx::query_scalar(
        "SELECT name FROM demo.conversation_participants WHERE conversation_id = $1",
    )
    .bind(f.namesake_conversation)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(participant, "Ana García");
    let visitor: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM demo.journey_visitors WHERE cookie_id = 'ck-namesake'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(visitor, 2);
}

#[sqlx::test]
async fn another_organizations_rows_are_untouched(pool: PgPool) {
    let f = fixture(&pool).await;
    let other_before = {
        let mut conn = pool.acquire().await.unwrap();
        snapshot(&mut conn)
            .await
            .into_iter()
            .filter(|r| r.contains(&f.other_org.to_string()))
            .collect::<Vec<_>>()
    };
    let summary = run_all(&pool, f.other_org, &ana(), Action::Summarize).await;
    assert_eq!(summary[0].matched, 1, "the other org has its own copy");
    run_all(&pool, f.org, &ana(), Action::Erase).await;
    let mut conn = pool.acquire().await.unwrap();
    let other_after: Vec<String> = snapshot(&mut conn)
        .await
        .into_iter()
        .filter(|r| r.contains(&f.other_org.to_string()))
        .collect();
    assert_eq!(other_after, other_before);
}

#[sqlx::test]
async fn a_name_alone_finds_its_folded_spellings(pool: PgPool) {
    let f = fixture(&pool).await;
    let name = terms(&[(TermKind::Name, "ana garcia", "ANA GARCIA")]);
    let o = run(&pool, "dialer", f.org, &name, Action::Summarize).await;
    // "ANA GARCIA" and the namesake's "Ana García"; "A. García" is another spelling.
    assert_eq!(o.matched, 2);
    let o = run(&pool, "externalContacts", f.org, &name, Action::Summarize).await;
    assert_eq!(o.matched, 2);
}

#[sqlx::test]
async fn a_phone_number_matches_national_and_international_spellings(pool: PgPool) {
    let f = fixture(&pool).await;
    let phone = terms(&[(TermKind::Phone, "+15550100001", "+15550100001")]);
    let matched: Vec<i64> = run_all(&pool, f.org, &phone, Action::Summarize)
        .await
        .iter()
        .map(|o| o.matched)
        .collect();
    // directory "555-010-0001"; contact "+1 555 010 0001"; dialer "(555) 010-0001" and
    // "011 1 555 010 0001"; participant "+15550100001" with its conversation and lines;
    // attachment "555 010 0001"; consent "(555) 010-0001".
    assert_eq!(matched, [1, 1, 2, 6, 1, 0, 1]);
}

#[sqlx::test]
async fn a_failure_names_the_table_and_leaves_the_callers_transaction_usable(pool: PgPool) {
    let catalog: Catalog = consent_catalog(
        "delete",
        "name = \"demo.consent_records\"\nmatch = { email = \"EMAIL\", nothing = \"PHONE\" }",
    )
    .parse()
    .unwrap();
    let f = fixture(&pool).await;
    let mut tx = pool.begin().await.unwrap();
    let error = catalog::execute(
        &mut tx,
        &catalog.services[0],
        f.org,
        &ana(),
        Action::Summarize,
        KEY,
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with(
            "service \"consent\", table demo.consent_records: finding the subject's rows failed:"
        ),
        "{message}"
    );
    assert!(message.contains("nothing"), "{message}");
    assert!(
        !message.contains("ana") && !message.contains("555"),
        "{message}"
    );
    assert!(!error.is_transient());
    let alive: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(alive, 1);
}

/// A pool of one connection to `pool`'s database: every run shares the session's working
/// tables.
async fn one_session(pool: &PgPool) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_session_reuses_its_working_tables_without_carrying_rows_over(pool: PgPool) {
    let pool = one_session(&pool).await;
    let f = fixture(&pool).await;
    let catalog = demo();
    let contacts = catalog.service("externalContacts").unwrap();
    let first = run(&pool, "externalContacts", f.org, &ana(), Action::Summarize).await;
    assert!(first.matched > 0);
    // Twice in one transaction: the second run does not count the first one's rows.
    let mut tx = pool.begin().await.unwrap();
    for _ in 0..2 {
        let again = catalog::execute(&mut tx, contacts, f.org, &ana(), Action::Summarize, KEY)
            .await
            .unwrap();
        assert_eq!(again.matched, first.matched);
    }
    tx.commit().await.unwrap();
    // Another subject in a later transaction of the same session finds only its own rows.
    let nobody = terms(&[(TermKind::Email, "nobody@example.com", "nobody@example.com")]);
    let none = run(&pool, "externalContacts", f.org, &nobody, Action::Summarize).await;
    assert_eq!(none.matched, 0);
    // The working tables stay with the session for the next job.
    let mut conn = pool.acquire().await.unwrap();
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()
            AND relname LIKE 'gdpr_m_%'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert!(left > 0, "the session keeps its working tables");
}

#[sqlx::test]
async fn an_action_without_a_savepoint_does_what_the_guarded_one_does(pool: PgPool) {
    let pool = one_session(&pool).await;
    let f = fixture(&pool).await;
    let catalog = demo();
    let unguarded = async |tx: &mut PgConnection, service: &catalog::Service| {
        let terms = ana();
        catalog::execute_unguarded(tx, service, f.org, &terms, Action::Erase, KEY).await
    };

    // A session without working tables: the unguarded action fails and leaves the transaction
    // aborted, to be rolled back; nothing was erased.
    let mut tx = pool.begin().await.unwrap();
    let error = unguarded(&mut tx, &catalog.services[0]).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("finding the subject's rows failed"),
        "{error}"
    );
    assert!(error.is_missing_table(), "{error}");
    assert!(sqlx::query("SELECT 1").execute(&mut *tx).await.is_err());
    tx.rollback().await.unwrap();

    // Once `prepare` has made them on the same session (as the worker does after such a
    // failure), the unguarded action erases what the guarded one erases.
    let mut conn = pool.acquire().await.unwrap();
    for service in &catalog.services {
        catalog::prepare(&mut conn, service).await.unwrap();
    }
    drop(conn);
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL plan_cache_mode = force_generic_plan")
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut done = Vec::new();
    for service in &catalog.services {
        let outcome = unguarded(&mut tx, service)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        done.push((outcome.deleted, outcome.anonymized));
    }
    tx.commit().await.unwrap();
    assert_eq!(
        done,
        [(0, 1), (1, 0), (2, 0), (0, 4), (2, 0), (6, 0), (0, 4)],
        "(deleted, anonymized) per service, as erasure_deletes_or_anonymizes_as_each_service_says"
    );
}

/// Ana's export by a catalog of one service whose tables are `tables`, on the fixture, in a
/// transaction left open for the caller.
async fn export_of(
    pool: &PgPool,
    tables: &str,
) -> (Fixture, sqlx::Transaction<'static, sqlx::Postgres>, Outcome) {
    let f = fixture(pool).await;
    let (tx, outcome) = export_in(pool, tables, f.org).await;
    (f, tx, outcome)
}

/// Ana's export in organization `org` by a catalog of one service whose tables are `tables`,
/// in a transaction left open for the caller.
async fn export_in(
    pool: &PgPool,
    tables: &str,
    org: Uuid,
) -> (sqlx::Transaction<'static, sqlx::Postgres>, Outcome) {
    let catalog: Catalog = consent_catalog("delete", tables).parse().unwrap();
    catalog.validate(pool).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let outcome = catalog::execute(
        &mut tx,
        &catalog.services[0],
        org,
        &ana(),
        Action::Export,
        KEY,
    )
    .await
    .unwrap();
    (tx, outcome)
}

/// An outcome's export, parsed.
fn exported(outcome: &Outcome) -> serde_json::Value {
    serde_json::from_str(outcome.export.as_ref().expect("an export").get()).expect("JSON")
}
