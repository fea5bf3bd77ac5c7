//! The subject index in PostgreSQL: search, bulk write (COPY, straight into the index or into
//! staging tables and then one set-based merge) and removal.

use serde_json::value::RawValue;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use super::normalize::{Normalized, SearchType};
use super::record::{IndexRecord, RecordKey};
use crate::auth::Permission;
use crate::auth::cache::TokenDigest;
use crate::copy::{Field, Rows, copy_in};
use crate::wire::{Page, StoredSubject};

/// The page of a search's matches, in result order, each with the count of them all: the
/// subquery both forms of [`search`] share. `$condition` is a further condition of theirs.
macro_rules! page_of_matches {
    ($condition:literal) => {
        concat!(
            "SELECT i.subject_id, i.kind, i.ref_key, count(*) OVER () AS total
               FROM subject_identifiers i
              WHERE ",
            $condition,
            " AND i.org_id = $1 AND i.id_type = $2 AND i.value = $3
              ORDER BY i.kind, i.ref_key
              LIMIT $4 OFFSET $5"
        )
    };
}

/// An index record's JSON as PostgreSQL gives it back.
type Record = Json<Box<RawValue>>;

/// One page of the index records whose normalized identifier of `kind` equals `value`, as stored
/// (they go out as they are, not parsed and serialized again), and how many there are in all.
/// One statement: the matches are counted and paged in subject_identifiers' primary key alone,
/// which holds them in the order of the results (their records' kind and key), and only the
/// page's records are fetched: the cost follows the page returned, not how many records share a
/// common name.
///
/// With `confirm`, the digest of the caller's bearer token, the same statement also confirms that
/// the token is live and its client enabled, of organization `org_id` and allowed to search; when
/// it is not, nothing is looked up and the answer is `None`.
pub async fn search(
    conn: &mut PgConnection,
    org_id: Uuid,
    kind: SearchType,
    value: &Normalized,
    page: Page,
    confirm: Option<&TokenDigest>,
) -> sqlx::Result<Option<(Vec<StoredSubject>, i64)>> {
    let rows: Vec<(Option<Record>, Option<i64>)> = match confirm {
        None => {
            sqlx::query_as(concat!(
                "SELECT s.record, page.total FROM (",
                page_of_matches!("true"),
                ") page
                     JOIN subjects s ON s.id = page.subject_id
                    ORDER BY page.kind, page.ref_key"
            ))
            .bind(org_id)
            .bind(kind.as_str())
            .bind(value.as_str())
            .bind(page.size)
            .bind(page.offset())
            .fetch_all(&mut *conn)
            .await?
        }
        Some(digest) => {
            // One row when the token is not confirmed (no record), else one per record found
            // or, with none found, one without a record. The confirmation is materialized:
            // inlined, it would be evaluated once for each of its two uses.
            let rows: Vec<(bool, Option<Record>, Option<i64>)> = sqlx::query_as(concat!(
                "WITH caller AS MATERIALIZED (
                     SELECT EXISTS (
                         SELECT 1 FROM access_tokens t JOIN api_clients c ON c.id = t.client_id
                          WHERE t.token_hash = $6 AND t.revoked_at IS NULL
                            AND t.expires_at > now() AND c.disabled_at IS NULL
                            AND c.org_id = $1 AND $7 = ANY (c.permissions)
                     ) AS confirmed
                 )
                 SELECT caller.confirmed, found.record, found.total
                   FROM caller
                   LEFT JOIN LATERAL (
                       SELECT s.record, page.total, page.kind, page.ref_key
                         FROM (",
                page_of_matches!("caller.confirmed"),
                ") page
                         JOIN subjects s ON s.id = page.subject_id
                   ) found ON true
                  ORDER BY found.kind, found.ref_key"
            ))
            .bind(org_id)
            .bind(kind.as_str())
            .bind(value.as_str())
            .bind(page.size)
            .bind(page.offset())
            .bind(digest)
            .bind(Permission::SubjectView.as_str())
            .fetch_all(&mut *conn)
            .await?;
            if !rows.first().is_some_and(|(confirmed, _, _)| *confirmed) {
                return Ok(None);
            }
            rows.into_iter()
                .filter(|(_, record, _)| record.is_some())
                .map(|(_, record, total)| (record, total))
                .collect()
        }
    };
    let total = match rows.first() {
        Some((_, Some(total))) => *total,
        // Past the last page the window is empty; count separately so `total` stays true.
        _ if page.number > 1 => {
            sqlx::query_scalar(
                "SELECT count(*) FROM subject_identifiers
                  WHERE org_id = $1 AND id_type = $2 AND value = $3",
            )
            .bind(org_id)
            .bind(kind.as_str())
            .bind(value.as_str())
            .fetch_one(&mut *conn)
            .await?
        }
        _ => 0,
    };
    let records = rows
        .into_iter()
        .filter_map(|(r, _)| r.map(|r| StoredSubject(r.0)));
    Ok(Some((records.collect(), total)))
}

/// Index records in COPY's binary format, in the columns of the index tables (the staging tables
/// have the same), ready to be sent. Encoding is CPU work only, so it can run apart from the
/// connection (while an earlier batch is sent). Each record gets a new subject id here; its
/// identifiers refer to the record by that id.
pub struct StagedBatch {
    org_id: Uuid,
    subjects: Rows,
    identifiers: Rows,
}

impl StagedBatch {
    pub fn with_capacity(org_id: Uuid, records: usize) -> StagedBatch {
        StagedBatch {
            org_id,
            subjects: Rows::with_capacity(records * 256),
            identifiers: Rows::with_capacity(records * 200),
        }
    }

    pub fn encode(org_id: Uuid, records: &[IndexRecord]) -> sqlx::Result<StagedBatch> {
        let mut batch = StagedBatch::with_capacity(org_id, records.len());
        for record in records {
            batch.push(record)?;
        }
        Ok(batch)
    }

    pub fn push(&mut self, r: &IndexRecord) -> sqlx::Result<()> {
        let record =
            serde_json::to_string(&r.subject).map_err(|e| sqlx::Error::Encode(e.into()))?;
        let id = Uuid::now_v7();
        let kind = r.key.kind.as_str();
        self.subjects.push(&[
            self.org_id.into(),
            id.into(),
            kind.into(),
            (&r.key.key).into(),
            Field::Jsonb(&record),
            r.canonical_contact_id.as_ref().into(),
        ])?;
        // A record's identifiers are without duplicates, and each record has its own id: the
        // staged identifier rows are distinct.
        for (id_type, value) in &r.identifiers {
            self.identifiers.push(&[
                self.org_id.into(),
                id.into(),
                kind.into(),
                (&r.key.key).into(),
                id_type.as_str().into(),
                value.as_str().into(),
            ])?;
        }
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.subjects.count()
    }

    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }
}

/// Writes index records to an organization's index: call [`Staging::begin`] inside a
/// transaction, [`Staging::add`] (or [`Staging::add_encoded`]) any number of batches, and
/// [`Staging::merge`] once. The records of one staging must have distinct keys.
///
/// Into an organization that holds records, batches go through COPY into staging tables and one
/// set-based merge replaces known records and inserts new ones. Into an organization with no
/// records (a first import), there is nothing to merge with: batches are copied straight into the
/// index. Writers of one organization's index hold a shared lock for that, and a first import an
/// exclusive one, so that nothing is written beside it (its records would collide with the
/// import's instead of being merged).
pub struct Staging {
    org_id: Uuid,
    staged: u64,
    direct: bool,
}

const SUBJECT_COLUMNS: &str = "(org_id, id, kind, ref_key, record, canonical_contact_id)";
const IDENTIFIER_COLUMNS: &str = "(org_id, subject_id, kind, ref_key, id_type, value)";

impl Staging {
    pub async fn begin(conn: &mut PgConnection, org_id: Uuid) -> sqlx::Result<Staging> {
        // One round trip in the usual case, an organization that holds records.
        let populated: bool = sqlx::query_scalar(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM subjects WHERE org_id = $1)
                         THEN (SELECT true FROM pg_advisory_xact_lock_shared($2))
                         ELSE false END",
        )
        .bind(org_id)
        .bind(index_lock_key(org_id))
        .fetch_one(&mut *conn)
        .await?;
        let direct = !populated && {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(index_lock_key(org_id))
                .execute(&mut *conn)
                .await?;
            // Looked at again once the lock is held, by a statement of its own (whose snapshot
            // is taken after the wait): another first write may have committed meanwhile.
            sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM subjects WHERE org_id = $1)")
                .bind(org_id)
                .fetch_one(&mut *conn)
                .await?
        };
        if !direct {
            // Temporary tables without indexes: not written to the WAL, and cheap to fill.
            sqlx::raw_sql(
                "CREATE TEMP TABLE stage_subjects (
                     org_id uuid NOT NULL, id uuid NOT NULL, kind text NOT NULL,
                     ref_key text NOT NULL, record jsonb NOT NULL, canonical_contact_id text
                 ) ON COMMIT DROP;
                 CREATE TEMP TABLE stage_identifiers (
                     org_id uuid NOT NULL, subject_id uuid NOT NULL, kind text NOT NULL,
                     ref_key text NOT NULL, id_type text NOT NULL, value text NOT NULL
                 ) ON COMMIT DROP;
                 CREATE TEMP TABLE stage_known (
                     staged_id uuid NOT NULL, id uuid NOT NULL
                 ) ON COMMIT DROP;",
            )
            .execute(&mut *conn)
            .await?;
        }
        Ok(Staging {
            org_id,
            staged: 0,
            direct,
        })
    }

    pub async fn add(
        &mut self,
        conn: &mut PgConnection,
        records: &[IndexRecord],
    ) -> sqlx::Result<()> {
        let batch = StagedBatch::encode(self.org_id, records)?;
        self.add_encoded(conn, batch).await
    }

    pub async fn add_encoded(
        &mut self,
        conn: &mut PgConnection,
        mut batch: StagedBatch,
    ) -> sqlx::Result<()> {
        debug_assert_eq!(batch.org_id, self.org_id);
        let (subjects, identifiers) = if self.direct {
            ("subjects", "subject_identifiers")
        } else {
            ("stage_subjects", "stage_identifiers")
        };
        let copy = |table: &str, columns: &str| {
            format!("COPY {table} {columns} FROM STDIN (FORMAT binary)")
        };
        let records = batch.len();
        for (table, columns, rows) in [
            (subjects, SUBJECT_COLUMNS, &mut batch.subjects),
            (identifiers, IDENTIFIER_COLUMNS, &mut batch.identifiers),
        ] {
            if !rows.is_empty() {
                copy_in(conn, &copy(table, columns), rows.take()).await?;
            }
        }
        self.staged += records;
        Ok(())
    }

    /// Writes the staged records: new ones are inserted, known ones replaced (their identifiers
    /// too; a known record keeps its id). Returns how many records were written.
    pub async fn merge(self, conn: &mut PgConnection) -> sqlx::Result<u64> {
        if self.direct {
            return Ok(self.staged);
        }
        // The upsert returns the id each record has in the index. A known record keeps its id,
        // not the one it was staged with; those records (only) are noted, to redirect their
        // identifiers. A row the upsert updated carries its transaction in xmax, an inserted one
        // does not: with a new organization's records nothing is joined. (Were a known record
        // missed, its identifiers would refer to no subject and the write would fail whole.)
        let known = sqlx::query(
            "WITH written AS (
                 INSERT INTO subjects (id, org_id, kind, ref_key, record, canonical_contact_id)
                 SELECT id, $1, kind, ref_key, record, canonical_contact_id FROM stage_subjects
                 ON CONFLICT (org_id, kind, ref_key) DO UPDATE
                    SET record = EXCLUDED.record,
                        canonical_contact_id = EXCLUDED.canonical_contact_id,
                        updated_at = now()
                 RETURNING id, kind, ref_key, xmax::text <> '0' AS updated
             )
             INSERT INTO stage_known (staged_id, id)
             SELECT st.id, w.id
               FROM written w
               JOIN stage_subjects st ON st.kind = w.kind AND st.ref_key = w.ref_key
              WHERE w.updated AND st.id <> w.id",
        )
        .bind(self.org_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        let insert = if known == 0 {
            "INSERT INTO subject_identifiers (org_id, id_type, value, subject_id, kind, ref_key)
             SELECT $1, id_type, value, subject_id, kind, ref_key FROM stage_identifiers"
        } else {
            sqlx::query(
                "DELETE FROM subject_identifiers i
                  USING stage_known k
                  WHERE i.subject_id = k.id AND i.org_id = $1",
            )
            .bind(self.org_id)
            .execute(&mut *conn)
            .await?;
            "INSERT INTO subject_identifiers (org_id, id_type, value, subject_id, kind, ref_key)
             SELECT $1, si.id_type, si.value, coalesce(k.id, si.subject_id), si.kind, si.ref_key
               FROM stage_identifiers si
               LEFT JOIN stage_known k ON k.staged_id = si.subject_id"
        };
        sqlx::query(insert)
            .bind(self.org_id)
            .execute(&mut *conn)
            .await?;
        Ok(self.staged)
    }
}

/// The advisory lock writers of one organization's index take (see [`Staging`]).
fn index_lock_key(org_id: Uuid) -> i64 {
    // The organization id folded to 64 bits, set apart from other advisory locks by a tag.
    let (high, low) = org_id.as_u64_pair();
    (high ^ low ^ 0x6764_7072_6469_6478).cast_signed()
}

/// Removes one record (and its identifiers) from the index. Returns whether it existed.
pub async fn remove(conn: &mut PgConnection, org_id: Uuid, key: &RecordKey) -> sqlx::Result<bool> {
    let result =
        sqlx::query("DELETE FROM subjects WHERE org_id = $1 AND kind = $2 AND ref_key = $3")
            .bind(org_id)
            .bind(key.kind.as_str())
            .bind(&key.key)
            .execute(conn)
            .await?;
    Ok(result.rows_affected() > 0)
}
