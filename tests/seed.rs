//! `gdprd seed`: deterministic people across every demo service, coherent with the subject index.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use gdprd::config::SeedArgs;
use gdprd::index::{Normalizer, SearchType, store};
use gdprd::seed::{self, story};
use gdprd::wire::{GdprSubject, Page};
use sqlx::{AssertSqlSafe, PgPool, Row};
use uuid::Uuid;

const PEOPLE: u64 = 300;

fn normalizer() -> Normalizer {
    Normalizer::new("US").expect("US is a region")
}

fn args(subjects: u64) -> SeedArgs {
    SeedArgs {
        subjects,
        seed: 1,
        org: "demo".into(),
        force: false,
        quiet: true,
    }
}

async fn seed(pool: &PgPool, args: &SeedArgs) -> anyhow::Result<()> {
    seed::run(pool, &normalizer(), args).await
}

async fn org_id(pool: &PgPool, name: &str) -> anyhow::Result<Uuid> {
    Ok(
        sqlx::query_scalar("SELECT id FROM organizations WHERE name = $1")
            .bind(name)
            .fetch_one(pool)
            .await?,
    )
}

async fn count(pool: &PgPool, sql: &'static str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(pool).await?)
}

/// The index records whose normalized identifier of `kind` is `raw`, as the API searches them.
async fn search(pool: &PgPool, kind: SearchType, raw: &str) -> anyhow::Result<Vec<GdprSubject>> {
    let org = org_id(pool, "demo").await?;
    let value = normalizer().normalize(kind, raw)?;
    let page = Page {
        size: 100,
        number: 1,
    };
    let (found, _) = store::search(&mut *pool.acquire().await?, org, kind, &value, page, None)
        .await?
        .expect("a search without a token to confirm always answers");
    // The records go out as stored: each must read as a subject of the wire model.
    Ok(found
        .iter()
        .map(|record| serde_json::from_str(record.0.get()))
        .collect::<Result<_, _>>()?)
}

const TABLES: &[&str] = &[
    "demo.directory_users",
    "demo.external_contacts",
    "demo.contact_lists",
    "demo.dialer_contacts",
    "demo.conversations",
    "demo.conversation_participants",
    "demo.transcript_lines",
    "demo.attachments",
    "demo.journey_visitors",
    "demo.journey_sessions",
    "demo.journey_events",
    "demo.consent_records",
    "subjects",
    "subject_identifiers",
];

/// A digest of every seeded row but its organization id (and the index's own bookkeeping
/// timestamps, which say when the index was written).
async fn digest(pool: &PgPool) -> anyhow::Result<String> {
    digest_where(pool, "true").await
}

/// [`digest`] of the rows of one organization.
async fn digest_of(pool: &PgPool, org: &str) -> anyhow::Result<String> {
    let id = org_id(pool, org).await?;
    digest_where(pool, &format!("t.org_id = '{id}'")).await
}

async fn digest_where(pool: &PgPool, condition: &str) -> anyhow::Result<String> {
    let mut all = String::new();
    for table in TABLES {
        let sql = format!(
            "SELECT md5(coalesce(string_agg(r, E'\\n' ORDER BY r), ''))
               FROM (SELECT (to_jsonb(t) - 'org_id' - 'updated_at'
                             - CASE WHEN '{table}' = 'subjects' THEN 'created_at' ELSE '' END
                            )::text AS r
                       FROM {table} t
                      WHERE {condition}) x"
        );
        let table_digest: String = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(pool)
            .await?;
        all.push_str(&format!("{table} {table_digest}\n"));
    }
    Ok(all)
}

/// Every index and constraint of the seeded tables: its definition (and whether it is
/// validated), and its object id, which changes when it is dropped and made again.
async fn schema(pool: &PgPool) -> anyhow::Result<(BTreeMap<String, String>, HashMap<String, i64>)> {
    let rows = sqlx::query(
        "SELECT i.indexrelid::regclass::text AS name, i.indexrelid::oid::int8 AS oid,
                pg_get_indexdef(i.indexrelid) AS definition
           FROM pg_index i
          WHERE i.indrelid = ANY($1::text[]::regclass[])
         UNION ALL
         SELECT c.conrelid::regclass || ' ' || c.conname, c.oid::int8,
                pg_get_constraintdef(c.oid) || CASE WHEN c.convalidated THEN '' ELSE ' unchecked' END
           FROM pg_constraint c
          WHERE c.conrelid = ANY($1::text[]::regclass[])",
    )
    .bind(TABLES)
    .fetch_all(pool)
    .await?;
    let mut definitions = BTreeMap::new();
    let mut oids = HashMap::new();
    for row in rows {
        let name: String = row.try_get("name")?;
        definitions.insert(name.clone(), row.try_get("definition")?);
        oids.insert(name, row.try_get("oid")?);
    }
    Ok((definitions, oids))
}

async fn empty_everything(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(AssertSqlSafe(format!("TRUNCATE {}", TABLES.join(", "))))
        .execute(pool)
        .await?;
    Ok(())
}

#[sqlx::test]
async fn the_same_seed_gives_the_same_data(pool: PgPool) -> anyhow::Result<()> {
    seed(&pool, &args(PEOPLE)).await?;
    let first = digest(&pool).await?;
    assert!(count(&pool, "SELECT count(*) FROM demo.transcript_lines").await? > 0);

    empty_everything(&pool).await?;
    seed(&pool, &args(PEOPLE)).await?;
    assert_eq!(digest(&pool).await?, first);

    empty_everything(&pool).await?;
    seed(
        &pool,
        &SeedArgs {
            seed: 2,
            ..args(PEOPLE)
        },
    )
    .await?;
    assert_ne!(digest(&pool).await?, first);
    Ok(())
}

#[sqlx::test]
async fn an_empty_database_gets_its_rows_first_and_its_indexes_after_with_the_same_result(
    pool: PgPool,
) -> anyhow::Result<()> {
    let (definitions, oids) = schema(&pool).await?;
    assert!(
        definitions.len() > 80,
        "{} indexes and constraints",
        definitions.len()
    );

    seed(&pool, &args(PEOPLE)).await?;
    let (after, loaded) = schema(&pool).await?;
    assert_eq!(after, definitions, "every index and key is back, checked");
    assert_ne!(
        loaded["subject_identifiers_pkey"], oids["subject_identifiers_pkey"],
        "an empty database is loaded before its indexes are built"
    );
    assert_ne!(
        loaded["demo.dialer_contacts dialer_contacts_contact_list_id_fkey"],
        oids["demo.dialer_contacts dialer_contacts_contact_list_id_fkey"]
    );
    assert_ne!(
        loaded["subjects_pkey"], oids["subjects_pkey"],
        "the index records' key is built after the load too"
    );
    // The subject index's statement checks are on again, and refuse what they refused before.
    let enabled: Vec<(String, String)> = sqlx::query_as(
        "SELECT tgname::text, tgenabled::text FROM pg_trigger
          WHERE tgname IN ('subject_identifiers_records', 'subjects_organizations')
          ORDER BY tgname",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        enabled,
        [
            ("subject_identifiers_records".to_owned(), "O".to_owned()),
            ("subjects_organizations".to_owned(), "O".to_owned())
        ]
    );
    let orphan = sqlx::query(
        "INSERT INTO subject_identifiers (org_id, id_type, value, subject_id, kind, ref_key)
         SELECT org_id, 'EMAIL', 'nobody@example.com', gen_random_uuid(), kind, ref_key
           FROM subjects LIMIT 1",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(
        orphan.to_string().contains("refer to no index record"),
        "{orphan}"
    );
    let loaded_first = digest_of(&pool, "demo").await?;

    // The same people written alongside another organization's data: chunk by chunk, into
    // indexes kept up to date.
    empty_everything(&pool).await?;
    seed(
        &pool,
        &SeedArgs {
            org: "first".into(),
            ..args(1)
        },
    )
    .await?;
    let (_, before) = schema(&pool).await?;
    seed(&pool, &args(PEOPLE)).await?;
    let (_, alongside) = schema(&pool).await?;
    assert_eq!(
        alongside, before,
        "a database with data keeps its indexes while it is seeded"
    );
    assert_eq!(digest_of(&pool, "demo").await?, loaded_first);
    Ok(())
}

/// The load's identifiers are checked against their records once, after the load: one that
/// refers to no record fails the whole seed, and nothing of it stays.
#[sqlx::test]
async fn a_load_whose_identifiers_refer_to_no_record_is_refused_whole(
    pool: PgPool,
) -> anyhow::Result<()> {
    let before = schema(&pool).await?;
    sqlx::raw_sql(
        "CREATE FUNCTION misdirect() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.id_type = 'EMAIL' THEN NEW.ref_key := NEW.ref_key || ' (nowhere)'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER misdirect BEFORE INSERT ON subject_identifiers
             FOR EACH ROW EXECUTE FUNCTION misdirect();",
    )
    .execute(&pool)
    .await?;

    let failed = seed(&pool, &args(PEOPLE)).await.unwrap_err();
    assert!(
        format!("{failed:#}").contains("refer to no index record of their kind and key"),
        "{failed:#}"
    );
    assert_eq!(
        schema(&pool).await?,
        before,
        "every index and key as it was"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM subjects").await?, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM subject_identifiers").await?,
        0
    );
    Ok(())
}

#[sqlx::test]
async fn a_load_that_fails_leaves_the_tables_empty_with_every_index_and_key(
    pool: PgPool,
) -> anyhow::Result<()> {
    let before = schema(&pool).await?;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'consent records are refused'; END $$;
         CREATE TRIGGER refuse AFTER INSERT ON demo.consent_records
             FOR EACH STATEMENT EXECUTE FUNCTION refuse();",
    )
    .execute(&pool)
    .await?;

    let failed = seed(&pool, &args(PEOPLE)).await.unwrap_err();
    assert!(
        format!("{failed:#}").contains("consent records are refused"),
        "{failed:#}"
    );
    assert_eq!(
        schema(&pool).await?,
        before,
        "nothing was dropped or made again"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM subjects").await?, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM demo.conversations").await?,
        0
    );

    sqlx::query("DROP TRIGGER refuse ON demo.consent_records")
        .execute(&pool)
        .await?;
    seed(&pool, &args(PEOPLE)).await?;
    assert!(count(&pool, "SELECT count(*) FROM demo.consent_records").await? > 0);
    Ok(())
}

#[sqlx::test]
async fn a_role_that_only_writes_rows_seeds_an_empty_database_chunk_by_chunk(
    pool: PgPool,
) -> anyhow::Result<()> {
    let role = format!("gdprd_writer_{}", Uuid::new_v4().simple());
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE ROLE {role} LOGIN;
         GRANT USAGE ON SCHEMA public, demo TO {role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public, demo TO {role};"
    )))
    .execute(&pool)
    .await?;
    let writer = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(pool.connect_options().as_ref().clone().username(&role))
        .await?;
    let (_, before) = schema(&pool).await?;

    let seeded = seed(&writer, &args(PEOPLE)).await;
    writer.close().await;
    let (_, after) = schema(&pool).await?;
    let people = count(&pool, "SELECT count(*) FROM subjects").await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP OWNED BY {role}; DROP ROLE {role};"
    )))
    .execute(&pool)
    .await?;

    seeded?;
    assert_eq!(after, before, "the tables' indexes were kept up to date");
    assert!(people >= PEOPLE as i64, "{people} index records");
    Ok(())
}

type Identifiers = BTreeSet<(String, String)>;

/// Columns of a service table and the identifier type each holds.
type Columns<'a> = &'a [(&'a str, SearchType)];

/// Normalizes the non-null `columns` of a service row as identifiers of `kind`.
fn identifiers_of(row: &sqlx::postgres::PgRow, columns: Columns) -> Identifiers {
    let n = normalizer();
    columns
        .iter()
        .filter_map(|(column, kind)| {
            let raw: Option<String> = row.get(*column);
            let value = n
                .normalize(*kind, raw.as_deref()?)
                .expect("a seeded value normalizes");
            Some((kind.as_str().to_owned(), value.into_string()))
        })
        .collect()
}

/// Every index record, by kind and key, with its identifiers.
async fn index(pool: &PgPool) -> anyhow::Result<BTreeMap<(String, String), Identifiers>> {
    let rows = sqlx::query(
        "SELECT s.kind, s.ref_key, i.id_type, i.value
           FROM subjects s LEFT JOIN subject_identifiers i ON i.subject_id = s.id",
    )
    .fetch_all(pool)
    .await?;
    let mut index: BTreeMap<(String, String), Identifiers> = BTreeMap::new();
    for row in rows {
        let ids = index
            .entry((row.get("kind"), row.get("ref_key")))
            .or_default();
        if let (Some(kind), Some(value)) = (row.get("id_type"), row.get("value")) {
            ids.insert((kind, value));
        }
    }
    Ok(index)
}

/// What the index must hold for the indexed services' rows: one record per row, with exactly
/// the identifiers of the row.
async fn indexed_services(
    pool: &PgPool,
) -> anyhow::Result<BTreeMap<(String, String), Identifiers>> {
    use SearchType::*;
    let services: [(&str, &str, Columns); 4] = [
        (
            "user",
            "SELECT id::text AS key, name, email, phone FROM demo.directory_users",
            &[("name", Name), ("email", Email), ("phone", Phone)],
        ),
        (
            "externalContact",
            "SELECT id::text AS key, * FROM demo.external_contacts",
            &[
                ("name", Name),
                ("work_email", Email),
                ("personal_email", Email),
                ("work_phone", Phone),
                ("cell_phone", Phone),
                ("address", Address),
                ("twitter_handle", Twitter),
                ("instagram_handle", Instagram),
                ("facebook_id", Facebook),
                ("whatsapp_number", Whatsapp),
                ("apple_opaque_id", AppleMessages),
                ("external_id", ExternalId),
            ],
        ),
        (
            "dialerContact",
            "SELECT contact_list_id::text || ':' || id::text AS key, * FROM demo.dialer_contacts",
            &[
                ("name", Name),
                ("phone", Phone),
                ("alt_phone", Phone),
                ("email", Email),
                ("address", Address),
            ],
        ),
        (
            "journeyCustomer",
            "SELECT 'cookie:' || cookie_id AS key, * FROM demo.journey_visitors",
            &[("name", Name), ("email", Email), ("phone", Phone)],
        ),
    ];
    let mut expected = BTreeMap::new();
    for (kind, sql, columns) in services {
        for row in sqlx::query(sql).fetch_all(pool).await? {
            let key: String = row.get("key");
            expected.insert((kind.to_owned(), key), identifiers_of(&row, columns));
        }
    }
    Ok(expected)
}

#[sqlx::test]
async fn every_index_record_carries_exactly_the_identifiers_of_its_service_row(
    pool: PgPool,
) -> anyhow::Result<()> {
    seed(&pool, &args(PEOPLE)).await?;
    let index = index(&pool).await?;
    let expected = indexed_services(&pool).await?;
    assert!(index.len() as u64 > PEOPLE, "{} records", index.len());
    for kind in [
        "user",
        "externalContact",
        "dialerContact",
        "journeyCustomer",
    ] {
        assert!(index.keys().any(|(k, _)| k == kind), "no {kind} record");
    }
    assert_eq!(index, expected);
    Ok(())
}

/// The demo data holds identifiers of every search type, so that each finds people (and the
/// benchmarks search each): an Apple Messages id, as its contact's row spells it, finds the
/// contact.
#[sqlx::test]
async fn the_demo_data_holds_identifiers_of_every_search_type(pool: PgPool) -> anyhow::Result<()> {
    seed(&pool, &args(PEOPLE)).await?;
    let held: BTreeSet<String> =
        sqlx::query_scalar("SELECT DISTINCT id_type FROM subject_identifiers")
            .fetch_all(&pool)
            .await?
            .into_iter()
            .collect();
    let every: BTreeSet<String> = SearchType::ALL
        .iter()
        .map(|t| t.as_str().to_owned())
        .collect();
    assert_eq!(held, every);

    let (contact, raw): (Uuid, String) = sqlx::query_as(
        "SELECT id, apple_opaque_id FROM demo.external_contacts
          WHERE apple_opaque_id IS NOT NULL ORDER BY id LIMIT 1",
    )
    .fetch_one(&pool)
    .await?;
    let found = search(
        &pool,
        SearchType::AppleMessages,
        &format!(" @{} ", raw.to_lowercase()),
    )
    .await?;
    let contact = contact.to_string();
    let record = found
        .iter()
        .find(|s| s.external_contact_id.as_deref() == Some(contact.as_str()))
        .expect("the contact is found by its Apple Messages id");
    let handle = record
        .social_handle
        .as_ref()
        .expect("the record keeps its handle");
    assert_eq!(
        (handle.kind.as_str(), handle.value.as_str()),
        ("APPLE_MESSAGES", raw.as_str())
    );
    Ok(())
}

#[sqlx::test]
async fn what_conversations_consents_and_attachments_name_is_in_the_index(
    pool: PgPool,
) -> anyhow::Result<()> {
    seed(&pool, &args(PEOPLE)).await?;
    let indexed: BTreeSet<(String, String)> =
        sqlx::query_as("SELECT id_type, value FROM subject_identifiers")
            .fetch_all(&pool)
            .await?
            .into_iter()
            .collect();
    let n = normalizer();
    let uses: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT CASE WHEN c.channel IN ('voice', 'message') THEN 'PHONE' ELSE 'EMAIL' END, p.address
           FROM demo.conversation_participants p
           JOIN demo.conversations c ON c.id = p.conversation_id
          WHERE p.purpose = 'customer'
         UNION ALL SELECT 'EMAIL', email FROM demo.consent_records
         UNION ALL SELECT 'PHONE', phone FROM demo.consent_records
         UNION ALL SELECT 'EMAIL', uploaded_by FROM demo.attachments
         UNION ALL SELECT 'NAME', name FROM demo.conversation_participants
                    WHERE purpose = 'customer'",
    )
    .fetch_all(&pool)
    .await?;
    let mut checked = 0;
    for (kind, raw) in uses {
        let Some(raw) = raw else { continue };
        let kind: SearchType = kind.parse().expect("a search type");
        let value = n.normalize(kind, &raw)?.into_string();
        assert!(
            indexed.contains(&(kind.as_str().to_owned(), value)),
            "a {kind} a service holds is not in the index"
        );
        checked += 1;
    }
    assert!(checked > PEOPLE, "only {checked} values checked");

    let cookies = count(
        &pool,
        "SELECT count(*) FROM demo.consent_records c
          WHERE c.cookie_id IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM subjects s
                 WHERE s.kind = 'journeyCustomer' AND s.ref_key = 'cookie:' || c.cookie_id)",
    )
    .await?;
    assert_eq!(cookies, 0, "consent for a cookie the index does not know");
    Ok(())
}

#[sqlx::test]
async fn agents_are_employees_the_directory_holds(pool: PgPool) -> anyhow::Result<()> {
    seed(&pool, &args(PEOPLE)).await?;
    let strangers = count(
        &pool,
        "SELECT count(*) FROM demo.conversation_participants p
          WHERE p.purpose = 'agent' AND NOT EXISTS (
                SELECT 1 FROM demo.directory_users u
                 WHERE u.id = p.user_id AND u.email = p.address AND u.name = p.name AND u.active)",
    )
    .await?;
    assert_eq!(strangers, 0);
    let conversations = count(&pool, "SELECT count(*) FROM demo.conversations").await?;
    let participants = count(&pool, "SELECT count(*) FROM demo.conversation_participants").await?;
    assert_eq!(participants, 2 * conversations);
    Ok(())
}

#[sqlx::test]
async fn people_do_not_share_email_addresses_or_phone_numbers(pool: PgPool) -> anyhow::Result<()> {
    seed(&pool, &args(PEOPLE)).await?;
    // Records sharing an email address or a phone number are one person's: they carry the same
    // name (when they carry one at all).
    let shared: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT i.id_type, i.value, count(DISTINCT n.value)
           FROM subject_identifiers i
           JOIN subject_identifiers n ON n.subject_id = i.subject_id AND n.id_type = 'NAME'
          WHERE i.id_type IN ('EMAIL', 'PHONE')
          GROUP BY 1, 2
         HAVING count(DISTINCT n.value) > 1",
    )
    .fetch_all(&pool)
    .await?;
    assert!(shared.is_empty(), "{} shared identifiers", shared.len());
    Ok(())
}

#[sqlx::test]
async fn merge_sets_share_their_canonical_contact(pool: PgPool) -> anyhow::Result<()> {
    seed(&pool, &args(PEOPLE)).await?;
    let contacts: Vec<(Uuid, Option<Uuid>)> =
        sqlx::query_as("SELECT id, canonical_contact_id FROM demo.external_contacts")
            .fetch_all(&pool)
            .await?;
    let ids: BTreeSet<Uuid> = contacts.iter().map(|(id, _)| *id).collect();
    let mut sets: HashMap<Uuid, usize> = HashMap::new();
    for (_, canonical) in &contacts {
        if let Some(canonical) = canonical {
            assert!(ids.contains(canonical), "the canonical contact is a member");
            *sets.entry(*canonical).or_default() += 1;
        }
    }
    assert!(sets.len() >= 5, "only {} merge sets", sets.len());
    assert!(sets.values().all(|members| (2..=3).contains(members)));

    let index: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT ref_key, canonical_contact_id, record ->> 'canonicalContactId'
           FROM subjects WHERE kind = 'externalContact'",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(index.len(), contacts.len());
    let canonical_of: HashMap<String, Option<String>> = contacts
        .iter()
        .map(|(id, c)| (id.to_string(), c.map(|c| c.to_string())))
        .collect();
    for (key, column, record) in index {
        assert_eq!(column, record);
        assert_eq!(Some(&column), canonical_of.get(&key));
    }
    Ok(())
}

#[sqlx::test]
async fn the_story_people_are_there_with_their_exact_values(pool: PgPool) -> anyhow::Result<()> {
    seed(&pool, &args(PEOPLE)).await?;

    // Ana García: a merge set of two external contacts, a dialer contact and a web visitor.
    let by_email = search(&pool, SearchType::Email, story::ANA_EMAIL).await?;
    assert!(by_email.len() >= 2);
    let main = by_email
        .iter()
        .find(|s| s.external_contact_id.is_some())
        .expect("Ana's first external contact");
    assert_eq!(main.name.as_deref(), Some(story::ANA_NAME));
    assert_eq!(
        main.email_addresses,
        Some(vec![story::ANA_EMAIL.to_owned()])
    );
    assert_eq!(main.phone_numbers, Some(vec![story::ANA_PHONE.to_owned()]));
    assert_eq!(main.addresses, Some(vec![story::ANA_ADDRESS.to_owned()]));
    assert_eq!(main.external_id.as_deref(), Some(story::ANA_EXTERNAL_ID));
    let handle = main.social_handle.as_ref().expect("Ana's handle");
    assert_eq!(
        (handle.kind.as_str(), handle.value.as_str()),
        ("TWITTER", story::ANA_TWITTER)
    );
    assert_eq!(main.canonical_contact_id, main.external_contact_id);
    assert!(by_email.iter().any(|s| s.dialer_contact_id.is_some()));
    let visitor = by_email
        .iter()
        .find_map(|s| s.journey_customer.as_ref())
        .expect("Ana's web visits");
    assert_eq!(visitor.id.as_deref(), Some(story::ANA_COOKIE));

    let second = search(&pool, SearchType::Email, story::ANA_ALT_EMAIL).await?;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].name.as_deref(), Some(story::ANA_NAME));
    assert_eq!(
        second[0].phone_numbers,
        Some(vec![story::ANA_ALT_PHONE.to_owned()])
    );
    assert_eq!(second[0].canonical_contact_id, main.external_contact_id);

    let by_phone = search(&pool, SearchType::Phone, story::ANA_PHONE_E164).await?;
    assert_eq!(
        by_phone.len(),
        3,
        "two external contacts and a dialer contact"
    );
    let dialer = by_phone
        .iter()
        .find(|s| s.dialer_contact_id.is_some())
        .expect("Ana's dialer contact");
    assert_eq!(
        dialer.phone_numbers,
        Some(vec![story::ANA_DIALER_PHONE.to_owned()])
    );

    // Two different people are called Ana Garcia, up to the accent.
    let by_name = search(&pool, SearchType::Name, "ana garcia").await?;
    let other = by_name
        .iter()
        .find(|s| s.name.as_deref() == Some(story::OTHER_ANA_NAME))
        .expect("the other Ana Garcia");
    assert_eq!(
        other.email_addresses,
        Some(vec![story::OTHER_ANA_EMAIL.to_owned()])
    );
    assert_eq!(
        other.phone_numbers,
        Some(vec![story::OTHER_ANA_PHONE.to_owned()])
    );
    assert!(
        by_name
            .iter()
            .filter(|s| s.external_contact_id.is_some())
            .any(|s| s.name.as_deref() == Some(story::ANA_NAME))
    );

    // What Ana said, uploaded and agreed to.
    for mention in [story::ANA_NAME, story::ANA_EMAIL, story::ANA_PHONE] {
        let lines = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM demo.transcript_lines WHERE strpos(body, $1) > 0",
        )
        .bind(mention)
        .fetch_one(&pool)
        .await?;
        assert!(lines > 0, "no transcript mentions one of Ana's identifiers");
    }
    let uploads = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM demo.attachments WHERE uploaded_by = $1 AND strpos(content, $2) > 0",
    )
    .bind(story::ANA_EMAIL)
    .bind(story::ANA_NAME)
    .fetch_one(&pool)
    .await?;
    assert_eq!(uploads, 1);
    let consents = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM demo.consent_records WHERE email = $1 OR phone = $2 OR cookie_id = $3",
    )
    .bind(story::ANA_EMAIL)
    .bind(story::ANA_PHONE)
    .bind(story::ANA_COOKIE)
    .fetch_one(&pool)
    .await?;
    assert_eq!(consents, 3);

    // Jonas Müller: an active employee who answered Ana's conversations.
    let jonas = search(&pool, SearchType::Email, story::JONAS_EMAIL).await?;
    assert_eq!(jonas.len(), 1);
    assert_eq!(jonas[0].name.as_deref(), Some(story::JONAS_NAME));
    assert_eq!(
        jonas[0].phone_numbers,
        Some(vec![story::JONAS_PHONE.to_owned()])
    );
    let user_id: Uuid = jonas[0].user_id.as_deref().expect("a user").parse()?;
    let (active, answered): (bool, i64) = sqlx::query_as(
        "SELECT u.active, (SELECT count(*) FROM demo.conversation_participants p
                            WHERE p.user_id = u.id AND p.purpose = 'agent')
           FROM demo.directory_users u WHERE u.id = $1",
    )
    .bind(user_id)
    .fetch_one(&pool)
    .await?;
    assert!(active);
    assert!(answered >= 2, "Jonas answered {answered} conversations");
    Ok(())
}

#[sqlx::test]
async fn a_second_run_skips_unless_forced_and_then_adds_people(pool: PgPool) -> anyhow::Result<()> {
    let subjects = "SELECT count(*) FROM subjects";
    seed(&pool, &args(PEOPLE)).await?;
    let first = count(&pool, subjects).await?;
    let first_digest = digest(&pool).await?;

    seed(&pool, &args(PEOPLE)).await?;
    assert_eq!(
        digest(&pool).await?,
        first_digest,
        "an unforced run changes nothing"
    );

    seed(
        &pool,
        &SeedArgs {
            force: true,
            ..args(PEOPLE)
        },
    )
    .await?;
    let second = count(&pool, subjects).await?;
    assert!(second >= first + PEOPLE as i64, "{first} then {second}");
    assert_eq!(
        search(&pool, SearchType::Email, story::ANA_EMAIL)
            .await?
            .len(),
        3,
        "the story people are seeded once"
    );
    let lists = count(&pool, "SELECT count(*) FROM demo.contact_lists").await?;
    assert_eq!(lists, 20, "a forced run reuses the contact lists");
    Ok(())
}

#[sqlx::test]
async fn several_organizations_can_be_seeded_into_one_database(pool: PgPool) -> anyhow::Result<()> {
    seed(&pool, &args(50)).await?;
    seed(
        &pool,
        &SeedArgs {
            org: "other".into(),
            ..args(50)
        },
    )
    .await?;
    let orgs = count(&pool, "SELECT count(DISTINCT org_id) FROM subjects").await?;
    assert_eq!(orgs, 2);
    Ok(())
}

#[sqlx::test]
async fn a_handful_of_people_still_spans_the_story(pool: PgPool) -> anyhow::Result<()> {
    seed(&pool, &args(3)).await?;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM demo.directory_users").await?,
        1
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM demo.conversations").await?,
        3
    );
    seed(
        &pool,
        &SeedArgs {
            org: "one".into(),
            ..args(1)
        },
    )
    .await?;
    Ok(())
}
