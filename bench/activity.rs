//! What PostgreSQL did over a phase of a benchmark, from its statistics views: shared by the
//! load client (`bench/pipeline.rs`) and the baseline (`bench/direct_sql.rs`), so that both
//! report the same figures the same way.
//!
//! Busy time varies with whatever else the machine does; the counts (commits, rows written,
//! WAL bytes) do not, and so compare two builds on a noisy machine.

use serde_json::{Map, Value, json};
use sqlx::PgPool;

/// Cumulative counters of the benchmark's database, and the cluster's WAL position.
#[derive(Clone, Copy, sqlx::FromRow)]
pub struct Activity {
    /// Milliseconds PostgreSQL spent running this database's statements.
    active_ms: f64,
    commits: i64,
    /// Bytes of WAL written since the cluster began (every database's; the benchmark's
    /// database is the only one at work).
    wal_bytes: f64,
    /// Rows inserted, updated (of which HOT: no index touched) and deleted in the database's
    /// tables; not in temporary tables (the executor's working tables), whose counters go with
    /// the session that made them.
    inserted: i64,
    updated: i64,
    hot_updated: i64,
    deleted: i64,
}

impl Activity {
    /// The counters now. The caller waits first for every connection to flush its statistics
    /// (a connection that goes idle within a second of its last flush flushes again only after
    /// 10 seconds of idleness).
    pub async fn read(db: &PgPool) -> sqlx::Result<Activity> {
        sqlx::query_as(
            "SELECT d.active_time AS active_ms, d.xact_commit AS commits,
                    (pg_current_wal_lsn() - '0/0'::pg_lsn)::float8 AS wal_bytes,
                    t.inserted, t.updated, t.hot_updated, t.deleted
               FROM pg_stat_database d,
                    (SELECT coalesce(sum(n_tup_ins), 0)::int8 AS inserted,
                            coalesce(sum(n_tup_upd), 0)::int8 AS updated,
                            coalesce(sum(n_tup_hot_upd), 0)::int8 AS hot_updated,
                            coalesce(sum(n_tup_del), 0)::int8 AS deleted
                       FROM pg_stat_user_tables
                      WHERE schemaname NOT LIKE 'pg\\_temp\\_%') t
              WHERE d.datname = current_database()",
        )
        .fetch_one(db)
        .await
    }

    /// What happened between `self` and `later`, per request of `requests`, as
    /// `<prefix>_db_active_ms_per_request`, `<prefix>_commits_per_request`,
    /// `<prefix>_wal_bytes_per_request`, `<prefix>_rows_inserted_per_request`,
    /// `<prefix>_rows_updated_per_request`, `<prefix>_rows_hot_updated_per_request` and
    /// `<prefix>_rows_deleted_per_request`.
    pub fn record(
        &self,
        later: &Activity,
        requests: usize,
        prefix: &str,
        out: &mut Map<String, Value>,
    ) {
        let n = requests.max(1) as f64;
        let figures = [
            ("db_active_ms", later.active_ms - self.active_ms),
            ("commits", (later.commits - self.commits) as f64),
            ("wal_bytes", later.wal_bytes - self.wal_bytes),
            ("rows_inserted", (later.inserted - self.inserted) as f64),
            ("rows_updated", (later.updated - self.updated) as f64),
            (
                "rows_hot_updated",
                (later.hot_updated - self.hot_updated) as f64,
            ),
            ("rows_deleted", (later.deleted - self.deleted) as f64),
        ];
        for (name, total) in figures {
            out.insert(format!("{prefix}_{name}_per_request"), json!(total / n));
        }
    }
}
