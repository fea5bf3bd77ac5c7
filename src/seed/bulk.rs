//! Seeding an empty database the way a restore does: rows first, indexes and references after.
//!
//! A table's indexes are far cheaper to build once, by sorting, than to maintain row by row, and
//! a foreign key checked once for a whole table is far cheaper than one lookup and lock per row:
//! at a million people, some 22 million rows with random keys, the difference is several times
//! the seeding time. So when every table the seed writes is empty, one transaction locks them,
//! sets aside their indexes and their primary, unique and foreign keys, loads every row, and puts
//! each back from its own definition, checked, before it commits. A failure anywhere rolls all
//! of it back: the schema is never left without an index or a check.
//!
//! The subject index's statement checks (migrations 0007 and 0008: every identifier refers to a
//! record of its kind and key, every record to an organization) are triggers that join each
//! statement's new rows to what they refer to; the load turns them off, and the same checks run
//! once over the whole load after the indexes are built, before the triggers are turned on again
//! in the same transaction. Kept throughout: every other trigger, `CHECK` and `NOT NULL`.

use sqlx::{PgConnection, Row};

use super::batch::Table;

/// The definitions set aside, to be put back in this order: primary and unique keys, then the
/// other indexes, then the foreign keys that refer to them; then the statement checks.
#[must_use = "the indexes and keys set aside must be put back before the transaction commits"]
pub(super) struct SetAside {
    restore: Vec<String>,
}

/// Locks every table the seed writes and, when all of them are empty, sets aside their indexes
/// and keys for the rest of the transaction and empties them in it (which lets COPY write their
/// rows already frozen). `None` when any of them holds a row, or when the role does not own
/// them: the caller seeds chunk by chunk.
pub(super) async fn set_aside(tx: &mut PgConnection) -> sqlx::Result<Option<SetAside>> {
    // Looked at first without a lock: a seed alongside data must not queue behind the readers
    // and writers of a running server, nor make them queue behind it.
    if occupied(tx).await? {
        return Ok(None);
    }
    // Only a table's owner may drop and make its indexes and keys; a role that may only write
    // rows seeds chunk by chunk.
    let names: Vec<&str> = Table::ALL.map(Table::name).to_vec();
    let owner: bool = sqlx::query_scalar(
        "SELECT bool_and(pg_has_role(c.relowner, 'USAGE'))
           FROM pg_class c WHERE c.oid = ANY($1::text[]::regclass[])",
    )
    .bind(&names)
    .fetch_one(&mut *tx)
    .await?;
    if !owner {
        tracing::info!("not the owner of the seeded tables: seeding chunk by chunk");
        return Ok(None);
    }
    let tables = Table::ALL.map(Table::name).join(", ");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE"
    )))
    .execute(&mut *tx)
    .await?;
    if occupied(tx).await? {
        return Ok(None);
    }

    let rows = sqlx::query(DEFINITIONS)
        .bind(&names)
        .fetch_all(&mut *tx)
        .await?;
    let mut restore = Vec::with_capacity(rows.len());
    for row in &rows {
        let drop: String = row.try_get("drop_statement")?;
        sqlx::query(sqlx::AssertSqlSafe(drop))
            .execute(&mut *tx)
            .await?;
        restore.push(row.try_get("create_statement")?);
    }
    restore.reverse();
    for (table, trigger) in STATEMENT_CHECKS {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {table} DISABLE TRIGGER {trigger}"
        )))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("TRUNCATE {tables}")))
        .execute(&mut *tx)
        .await?;
    Ok(Some(SetAside { restore }))
}

/// Whether any table the seed writes holds a row.
async fn occupied(conn: &mut PgConnection) -> sqlx::Result<bool> {
    let any = Table::ALL
        .map(|t| format!("SELECT 1 FROM {}", t.name()))
        .join(" UNION ALL ");
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT EXISTS ({any})")))
        .fetch_one(conn)
        .await
}

impl SetAside {
    pub fn len(&self) -> usize {
        self.restore.len()
    }

    /// Builds every index and checks every key set aside, from its own definition, then checks
    /// the whole load as the statement checks would have checked each statement.
    pub async fn restore(self, tx: &mut PgConnection) -> sqlx::Result<()> {
        // Index builds and the checks' joins sort and hash in memory when they can; the settings
        // end with the transaction.
        sqlx::query("SET LOCAL maintenance_work_mem = '256MB'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("SET LOCAL work_mem = '256MB'")
            .execute(&mut *tx)
            .await?;
        for statement in self.restore {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await?;
        }
        for (table, trigger) in STATEMENT_CHECKS {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "ALTER TABLE {table} ENABLE TRIGGER {trigger}"
            )))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::raw_sql(CHECK_LOAD).execute(&mut *tx).await?;
        Ok(())
    }
}

/// The subject index's statement checks (migration 0007), turned off while the rows load.
const STATEMENT_CHECKS: [(&str, &str); 2] = [
    ("subject_identifiers", "subject_identifiers_records"),
    ("subjects", "subjects_organizations"),
];

/// The statement checks of [`STATEMENT_CHECKS`] over the whole load (the tables held no row
/// before it): every identifier refers to an index record of its kind and key, and every record
/// to an organization, which stays locked against deletion as the trigger locks it.
const CHECK_LOAD: &str = "
DO $$
DECLARE
    missing bigint;
BEGIN
    SELECT count(*) INTO missing
      FROM subject_identifiers i
     WHERE NOT EXISTS (SELECT 1 FROM subjects s
                        WHERE s.id = i.subject_id AND s.kind = i.kind AND s.ref_key = i.ref_key);
    IF missing > 0 THEN
        RAISE EXCEPTION '% identifier row(s) refer to no index record of their kind and key',
            missing
            USING ERRCODE = 'foreign_key_violation', TABLE = 'subject_identifiers';
    END IF;
    PERFORM 1 FROM organizations o
      WHERE o.id IN (SELECT DISTINCT org_id FROM subjects)
        FOR KEY SHARE OF o;
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT org_id FROM subjects) n
                WHERE NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = n.org_id)) THEN
        RAISE EXCEPTION 'index records refer to no organization'
            USING ERRCODE = 'foreign_key_violation', TABLE = 'subjects';
    END IF;
END $$";

/// Every index, key and reference of the tables `$1` (and every foreign key that refers to
/// them from elsewhere): a statement that drops it and one that creates it again, in the order
/// the drops must run (references, keys, other indexes).
const DEFINITIONS: &str = "
WITH tables AS (
    SELECT to_regclass(name) AS rel FROM unnest($1::text[]) AS t (name)
), constraints AS (
    SELECT c.oid, c.conrelid, c.conname, c.contype
      FROM pg_constraint c
     WHERE c.contype IN ('p', 'u', 'x', 'f')
       AND (c.conrelid IN (SELECT rel FROM tables)
            OR (c.contype = 'f' AND c.confrelid IN (SELECT rel FROM tables)))
)
SELECT drop_statement, create_statement
  FROM (SELECT CASE contype WHEN 'f' THEN 0 ELSE 1 END AS step, conname::text AS name,
               format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname)
                   AS drop_statement,
               format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname,
                      pg_get_constraintdef(oid)) AS create_statement
          FROM constraints
        UNION ALL
        SELECT 2, i.indexrelid::regclass::text,
               format('DROP INDEX %s', i.indexrelid::regclass),
               pg_get_indexdef(i.indexrelid)
          FROM pg_index i
         WHERE i.indrelid IN (SELECT rel FROM tables)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid
                              AND c.contype IN ('p', 'u', 'x'))) d
 ORDER BY step, name";
