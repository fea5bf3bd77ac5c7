//! The subject index in PostgreSQL: search, bulk write (COPY into staging tables, then one
//! set-based merge) and removal.

use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use super::normalize::{Normalized, SearchType};
use super::record::{IndexRecord, RecordKey};
use crate::wire::{GdprSubject, Page};

/// One page of the index records whose normalized identifier of `kind` equals `value`, and how
/// many there are in all. One statement: an index lookup on subject_identifiers' primary key.
pub async fn search(
    conn: &mut PgConnection,
    org_id: Uuid,
    kind: SearchType,
    value: &Normalized,
    page: Page,
) -> sqlx::Result<(Vec<GdprSubject>, i64)> {
    let rows: Vec<(Json<GdprSubject>, i64)> = sqlx::query_as(
        "SELECT s.record, count(*) OVER () AS total
           FROM subject_identifiers i
           JOIN subjects s ON s.id = i.subject_id
          WHERE i.org_id = $1 AND i.id_type = $2 AND i.value = $3
          ORDER BY s.kind, s.ref_key
          LIMIT $4 OFFSET $5",
    )
    .bind(org_id)
    .bind(kind.as_str())
    .bind(value.as_str())
    .bind(page.size)
    .bind(page.offset())
    .fetch_all(&mut *conn)
    .await?;
    let total = match rows.first() {
        Some((_, total)) => *total,
        // Past the last page the window is empty; count separately so `total` stays true.
        None if page.number > 1 => {
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
        None => 0,
    };
    Ok((rows.into_iter().map(|(r, _)| r.0).collect(), total))
}

/// Stages index records through COPY, then merges them into the index. Call [`Staging::begin`]
/// inside a transaction, [`Staging::add`] any number of batches, and [`Staging::merge`] once.
pub struct Staging {
    org_id: Uuid,
    staged: u64,
}

impl Staging {
    pub async fn begin(conn: &mut PgConnection, org_id: Uuid) -> sqlx::Result<Staging> {
        sqlx::raw_sql(
            "CREATE TEMP TABLE stage_subjects (
                 id uuid NOT NULL, kind text NOT NULL, ref_key text NOT NULL,
                 record jsonb NOT NULL, canonical_contact_id text
             ) ON COMMIT DROP;
             CREATE TEMP TABLE stage_identifiers (
                 kind text NOT NULL, ref_key text NOT NULL, id_type text NOT NULL, value text NOT NULL
             ) ON COMMIT DROP;",
        )
        .execute(&mut *conn)
        .await?;
        Ok(Staging { org_id, staged: 0 })
    }

    pub async fn add(
        &mut self,
        conn: &mut PgConnection,
        records: &[IndexRecord],
    ) -> sqlx::Result<()> {
        let mut subjects = String::with_capacity(records.len() * 256);
        let mut identifiers = String::with_capacity(records.len() * 160);
        for r in records {
            let record =
                serde_json::to_string(&r.subject).map_err(|e| sqlx::Error::Encode(e.into()))?;
            copy_row(
                &mut subjects,
                &[
                    Some(&Uuid::now_v7().to_string()),
                    Some(r.key.kind.as_str()),
                    Some(&r.key.key),
                    Some(&record),
                    r.canonical_contact_id.as_deref(),
                ],
            );
            for (kind, value) in &r.identifiers {
                copy_row(
                    &mut identifiers,
                    &[
                        Some(r.key.kind.as_str()),
                        Some(&r.key.key),
                        Some(kind.as_str()),
                        Some(value.as_str()),
                    ],
                );
            }
        }
        copy_in(conn, "COPY stage_subjects FROM STDIN", subjects).await?;
        copy_in(conn, "COPY stage_identifiers FROM STDIN", identifiers).await?;
        self.staged += records.len() as u64;
        Ok(())
    }

    /// Writes the staged records: new ones are inserted, known ones replaced (their identifiers
    /// too). Returns how many records were written.
    pub async fn merge(self, conn: &mut PgConnection) -> sqlx::Result<u64> {
        sqlx::query(
            "INSERT INTO subjects (id, org_id, kind, ref_key, record, canonical_contact_id)
             SELECT id, $1, kind, ref_key, record, canonical_contact_id FROM stage_subjects
             ON CONFLICT (org_id, kind, ref_key) DO UPDATE
                SET record = EXCLUDED.record,
                    canonical_contact_id = EXCLUDED.canonical_contact_id,
                    updated_at = now()",
        )
        .bind(self.org_id)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "DELETE FROM subject_identifiers i
              USING subjects s, stage_subjects st
              WHERE s.org_id = $1 AND s.kind = st.kind AND s.ref_key = st.ref_key
                AND i.subject_id = s.id",
        )
        .bind(self.org_id)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO subject_identifiers (org_id, id_type, value, subject_id)
             SELECT DISTINCT $1::uuid, si.id_type, si.value, s.id
               FROM stage_identifiers si
               JOIN subjects s ON s.org_id = $1 AND s.kind = si.kind AND s.ref_key = si.ref_key",
        )
        .bind(self.org_id)
        .execute(&mut *conn)
        .await?;
        Ok(self.staged)
    }
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

/// Streams `data` (COPY text format) into `statement`.
pub async fn copy_in(conn: &mut PgConnection, statement: &str, data: String) -> sqlx::Result<u64> {
    if data.is_empty() {
        return Ok(0);
    }
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(data.into_bytes()).await?;
    copy.finish().await
}

/// Appends one row in PostgreSQL's COPY text format: tab-separated, `\N` for NULL, with
/// backslash, tab, newline and carriage return escaped.
pub fn copy_row(out: &mut String, fields: &[Option<&str>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        match field {
            None => out.push_str("\\N"),
            Some(value) => {
                for c in value.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\t' => out.push_str("\\t"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
            }
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::copy_row;

    #[test]
    fn copy_rows_escape_what_copy_would_misread() {
        let mut out = String::new();
        copy_row(&mut out, &[Some("a\tb"), None, Some("c\\d\ne\r")]);
        assert_eq!(out, "a\\tb\t\\N\tc\\\\d\\ne\\r\n");
    }
}
