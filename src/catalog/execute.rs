//! Carrying out one action of a request on one data service, inside the caller's transaction.
//!
//! Every action starts alike: the keys of the subject's rows of each table go into a temporary
//! table, first for the tables matched by identifiers, then for the tables linked to them.
//! Everything after that (counting, export, update, delete, anonymize) joins on those keys, so
//! no statement changes what a later one sees, and the number of statements depends on the
//! number of tables, never on the number of rows.

use std::collections::HashMap;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use uuid::Uuid;

use super::spelling::{REDACTED, Spellings};
use super::sql::{self, Bind, Binds, Norm, ident, literal};
use super::{Erasure, MatchColumn, Rows, Rule, Service, Table, phone};
use crate::requests::terms::{Replacement, TermKind, Terms};

/// What to do with the subject's rows of a service.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Count them (and what erasure would keep), for the access summary.
    Summarize,
    /// Copy them out, export columns only.
    Export,
    /// Rewrite identifiers in updatable columns.
    Update(&'a [Replacement]),
    /// Delete or anonymize them, as the service's erasure says.
    Erase,
}

/// What an action found and did on one service.
#[derive(Default, Serialize, Deserialize)]
pub struct Outcome {
    /// The subject's rows across the service's tables.
    pub matched: i64,
    pub deleted: i64,
    pub anonymized: i64,
    pub updated: i64,
    /// Rows erasure leaves alone (or would, for a summary).
    pub retained: i64,
    pub retained_reason: Option<String>,
    /// `{ "<table>": [ { column: value, … }, … ], … }`, as JSON text: each row as PostgreSQL
    /// wrote it, the rest around them by the export (see `ExportText`). An export is kept and
    /// passed on as text, never as a tree of values, whatever its size.
    pub export: Option<Box<RawValue>>,
}

impl Outcome {
    /// The export of a service with no tables, or of a job that exported nothing: no table.
    pub fn empty_export() -> Box<RawValue> {
        RawValue::from_string("{}".to_owned()).expect("{} is JSON")
    }
}

/// Counts and the retention reason only: an export holds the subject's personal data, so only
/// its size shows.
impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("matched", &self.matched)
            .field("deleted", &self.deleted)
            .field("anonymized", &self.anonymized)
            .field("updated", &self.updated)
            .field("retained", &self.retained)
            .field("retained_reason", &self.retained_reason)
            .field("export_bytes", &self.export.as_ref().map(|e| e.get().len()))
            .finish()
    }
}

/// A service's export as JSON text, `{ "<table>": [<row>, …], … }`, written row by row as the
/// rows come (see [`Run::export`]): in the catalog's order of the tables, each table's rows in
/// the order they came, a table without rows as `[]`.
struct ExportText {
    text: String,
    /// How many tables have been opened.
    opened: usize,
    /// Whether the table opened last has a row yet.
    has_rows: bool,
}

impl ExportText {
    fn new() -> ExportText {
        ExportText {
            text: String::from("{"),
            opened: 0,
            has_rows: false,
        }
    }

    /// Appends a row of the export statement: the index of its table and its JSON text.
    fn push(&mut self, tables: &[Table], row: &PgRow) -> sqlx::Result<()> {
        let table: i32 = row.try_get(0)?;
        let json: &str = row.try_get(1)?;
        let i = usize::try_from(table)
            .ok()
            .filter(|&i| i < tables.len() && i + 1 >= self.opened)
            .ok_or_else(|| {
                sqlx::Error::Protocol("an exported row out of its table's order".into())
            })?;
        self.open_through(tables, i);
        if self.has_rows {
            self.text.push(',');
        }
        self.text.push_str(json);
        self.has_rows = true;
        Ok(())
    }

    /// Opens every table up to `i`, closing the one open before.
    fn open_through(&mut self, tables: &[Table], i: usize) {
        while self.opened <= i {
            if self.opened > 0 {
                self.text.push_str("],");
            }
            let name = serde_json::Value::from(tables[self.opened].name.to_string());
            self.text.push_str(&name.to_string());
            self.text.push_str(":[");
            self.opened += 1;
            self.has_rows = false;
        }
    }

    /// The export's text, every table opened and closed. `tables` is not empty.
    fn finish(mut self, tables: &[Table]) -> sqlx::Result<Box<RawValue>> {
        self.open_through(tables, tables.len() - 1);
        self.text.push_str("]}");
        // Never serde's message: it may quote the text, which is the subject's data.
        RawValue::from_string(self.text)
            .map_err(|_| sqlx::Error::Protocol("the exported rows are not JSON".into()))
    }
}

/// A statement that failed: which service, table and step, and the database's message. Never
/// carries a subject's values, so it may be logged and shown.
#[derive(Debug, thiserror::Error)]
#[error("service {service:?}{}: {step} failed: {message}", on_table(.table.as_deref()))]
pub struct ExecuteError {
    service: String,
    table: Option<String>,
    step: &'static str,
    message: String,
    transient: bool,
    /// A relation the statement names does not exist (`undefined_table`): on a session's
    /// first job of a service, a working table.
    missing_table: bool,
    /// The subject's rows the action found before the step that failed, when it got that far.
    matched: Option<i64>,
}

fn on_table(table: Option<&str>) -> String {
    table.map(|t| format!(", table {t}")).unwrap_or_default()
}

impl ExecuteError {
    /// Whether running the job again may succeed (a deadlock, a serialization failure, a lost
    /// connection) rather than fail the same way.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// The subject's rows the action counted before it failed (`None` when it failed while
    /// finding them).
    pub fn matched(&self) -> Option<i64> {
        self.matched
    }

    /// Whether it failed for want of a working table, which [`prepare`] makes: an unguarded
    /// action on a session's first job of a service.
    pub fn is_missing_table(&self) -> bool {
        self.missing_table
    }
}

/// Runs `action` on `service` for the subject `terms` describes, within `org_id`.
///
/// Runs inside the caller's transaction (as a savepoint, so that a failure leaves the caller
/// free to record it and commit): the caller commits the outcome together with its own
/// bookkeeping, which is what makes running a job twice safe. `key` is the secret of the keyed
/// hashes that anonymization writes.
pub async fn execute(
    conn: &mut PgConnection,
    service: &Service,
    org_id: Uuid,
    terms: &Terms,
    action: Action<'_>,
    key: &[u8],
) -> Result<Outcome, ExecuteError> {
    let run = Run::new(service, org_id, terms, key);
    match run.attempt(conn, action, false).await {
        // The first job of this service on this database session: its working tables are
        // made, and the job runs again from the start (see `Run::prepare`).
        Err(e) if e.missing_table => run.attempt(conn, action, true).await,
        result => result,
    }
}

/// Runs `action` as [`execute`] does but without a savepoint of its own, which saves a round
/// trip and a subtransaction: for a caller that, should it fail, rolls its transaction back
/// whole (a failed statement leaves the transaction aborted) and may run the action again with
/// [`execute`]. The caller's transaction sets `plan_cache_mode = force_generic_plan` (see
/// `Run::attempt`). On a session's first job of a service it fails (its working tables are
/// not made here), and [`execute`] makes them.
pub async fn execute_unguarded(
    conn: &mut PgConnection,
    service: &Service,
    org_id: Uuid,
    terms: &Terms,
    action: Action<'_>,
    key: &[u8],
) -> Result<Outcome, ExecuteError> {
    Run::new(service, org_id, terms, key)
        .act(conn, action)
        .await
}

/// Makes the working tables of `service` that this database session lacks, outside any
/// action: for a caller whose [`execute_unguarded`] failed for want of one (see
/// [`ExecuteError::is_missing_table`]) and rolled back, so that it can run the action again,
/// unguarded, on the same connection.
pub async fn prepare(conn: &mut PgConnection, service: &Service) -> Result<(), ExecuteError> {
    // The tables' columns are the keys and whether a row is kept, whoever the subject is.
    let (terms, no_org) = (Terms::default(), Uuid::nil());
    let run = Run::new(service, no_org, &terms, &[]);
    // In a transaction (or a savepoint of the caller's): the statistics given to each table
    // are taken from a row that the commit then empties.
    let mut tx = conn
        .begin()
        .await
        .map_err(run.fail(None, "starting a transaction"))?;
    run.prepare(&mut tx).await?;
    tx.commit()
        .await
        .map_err(run.fail(None, "making working tables"))
}

/// Keeps to the organization's rows: by the table's organization column, or — for a table of an
/// external database that belongs to one organization as a whole — by nothing (the service only
/// gets jobs of that organization). Either way the organization stays parameter `$1`.
fn org_filter(alias: &str, table: &Table) -> String {
    match &table.org_column {
        Some(column) => format!("{alias}.{} = $1", ident(column)),
        None => "$1::uuid IS NOT NULL".to_owned(),
    }
}

struct Run<'a> {
    service: &'a Service,
    org_id: Uuid,
    terms: &'a Terms,
    key: &'a [u8],
    /// What match columns are compared with, per identifier type and normalization.
    needles: Vec<(TermKind, Norm, Vec<String>)>,
}

/// Where a linked table's statement finds its parent table's rows.
#[derive(Clone, Copy)]
enum Parents {
    /// In the parent's working table.
    Working,
    /// In what [`Run::find_sql`]'s statement put into it (`filled<i>`).
    Filled,
}

/// Rows of one table: the subject's, and those of them erasure keeps.
#[derive(Clone, Copy, Default)]
struct Count {
    matched: i64,
    retained: i64,
}

impl<'a> Run<'a> {
    /// Runs the action in a savepoint, so that a failure leaves the caller's transaction free;
    /// with `prepare`, first makes the working tables this session lacks.
    async fn attempt(
        &self,
        conn: &mut PgConnection,
        action: Action<'_>,
        prepare: bool,
    ) -> Result<Outcome, ExecuteError> {
        // One round trip opens the savepoint and has the executor's statements planned
        // generically: they are key lookups whose plan does not depend on the values (see
        // `Binds::query`), so they are planned once per connection, not five times before
        // PostgreSQL would consider a generic plan on its own. (The setting lasts until the
        // caller's transaction ends; the worker's bookkeeping after it is lookups by key too.)
        sqlx::raw_sql("SAVEPOINT gdpr_execute; SET LOCAL plan_cache_mode = force_generic_plan")
            .execute(&mut *conn)
            .await
            .map_err(self.fail(None, "starting a savepoint"))?;
        let result = async {
            if prepare {
                self.prepare(conn).await?;
            }
            self.act(conn, action).await
        }
        .await;
        // A savepoint whose action succeeded is left for the transaction's end to release:
        // releasing it would be a round trip that changes nothing. (The next action's savepoint
        // of the same name hides it, and a rollback to the name goes to the newest.)
        if result.is_ok() {
            return result;
        }
        let ended =
            sqlx::raw_sql("ROLLBACK TO SAVEPOINT gdpr_execute; RELEASE SAVEPOINT gdpr_execute")
                .execute(&mut *conn)
                .await
                .map_err(self.fail(None, "rolling back the savepoint"));
        // The action's own failure is the one to report.
        let outcome = result?;
        ended?;
        Ok(outcome)
    }

    fn new(service: &'a Service, org_id: Uuid, terms: &'a Terms, key: &'a [u8]) -> Run<'a> {
        let needles = TermKind::ALL
            .into_iter()
            .flat_map(|kind| {
                sql::needles(kind, &terms.values(kind))
                    .into_iter()
                    .map(move |(norm, values)| (kind, norm, values))
            })
            .collect();
        Run {
            service,
            org_id,
            terms,
            key,
            needles,
        }
    }

    async fn act(
        &self,
        conn: &mut PgConnection,
        action: Action<'_>,
    ) -> Result<Outcome, ExecuteError> {
        let counts = self.find(conn).await?;
        let matched = counts.iter().map(|c| c.matched).sum();
        self.act_on(conn, action, &counts)
            .await
            .map_err(|e| ExecuteError {
                matched: Some(matched),
                ..e
            })
    }

    /// Carries out `action` on the rows [`Run::find`] found (`counts` per table).
    async fn act_on(
        &self,
        conn: &mut PgConnection,
        action: Action<'_>,
        counts: &[Count],
    ) -> Result<Outcome, ExecuteError> {
        let mut outcome = Outcome {
            matched: counts.iter().map(|c| c.matched).sum(),
            ..Outcome::default()
        };
        let report_retained = |outcome: &mut Outcome| {
            outcome.retained = counts.iter().map(|c| c.retained).sum();
            outcome.retained_reason = self.retained_reason(counts);
        };
        match action {
            Action::Summarize => report_retained(&mut outcome),
            Action::Export => outcome.export = Some(self.export(conn).await?),
            Action::Update(replacements) => {
                outcome.updated = self.update(conn, replacements).await?;
            }
            Action::Erase => {
                report_retained(&mut outcome);
                match self.service.erasure {
                    Erasure::Delete => outcome.deleted = self.delete(conn).await?,
                    Erasure::Anonymize => outcome.anonymized = self.anonymize(conn).await?,
                }
            }
        }
        Ok(outcome)
    }

    /// Puts the keys of the subject's rows of every table into temporary tables, and counts
    /// them: one statement for all the service's tables.
    async fn find(&self, conn: &mut PgConnection) -> Result<Vec<Count>, ExecuteError> {
        let (binds, sql) = self.find_sql();
        // A service of one table names it in a failure; the statement covers them all.
        let table = match self.service.tables.as_slice() {
            [only] => Some(only),
            _ => None,
        };
        let rows = binds
            .query(sql)
            .fetch_all(&mut *conn)
            .await
            .map_err(self.fail(table, "finding the subject's rows"))?;
        let mut counts = vec![Count::default(); self.service.tables.len()];
        for row in rows {
            let (i, matched, retained): (i32, i64, i64) = (row.get(0), row.get(1), row.get(2));
            counts[i as usize] = Count { matched, retained };
        }
        Ok(counts)
    }

    /// The statement of [`Run::find`]: for each table, its working table emptied (the same
    /// transaction may have run this service before) and filled, a linked table's from the rows
    /// just put in its parent's; then the rows each holds and keeps.
    fn find_sql(&self) -> (Binds, String) {
        let mut binds = Binds::new(self.org_id);
        let mut steps = Vec::new();
        let mut counts = Vec::new();
        for i in 0..self.service.tables.len() {
            let select = self.rows_of(&mut binds, i, Parents::Filled);
            let m = self.temp(i);
            steps.push(format!(
                "emptied{i} AS (DELETE FROM {m}), filled{i} AS (INSERT INTO {m} {select} RETURNING *)"
            ));
            counts.push(format!(
                "SELECT {i}, count(*), count(*) FILTER (WHERE retained) FROM filled{i}"
            ));
        }
        let sql = format!("WITH {} {}", steps.join(", "), counts.join(" UNION ALL "));
        (binds, sql)
    }

    /// Creates the temporary tables of the service's tables that this database session has
    /// not got yet. They last as long as the session and empty themselves at every commit
    /// (`ON COMMIT DELETE ROWS`), so a job pays neither for creating and dropping tables nor
    /// for looking them up: it uses them, and only when the session lacks one (the statement
    /// fails with `undefined_table`) are they made and the job run again.
    async fn prepare(&self, conn: &mut PgConnection) -> Result<(), ExecuteError> {
        let names: Vec<String> = (0..self.service.tables.len())
            .map(|i| self.temp(i))
            .collect();
        let existing: Vec<String> = sqlx::query_scalar(
            "SELECT relname::text FROM pg_class
              WHERE relnamespace = pg_my_temp_schema() AND relname = ANY($1)",
        )
        .bind(&names)
        .fetch_all(&mut *conn)
        .await
        .map_err(self.fail(None, "looking up temporary tables"))?;
        for (i, name) in names.iter().enumerate() {
            if existing.contains(name) {
                continue;
            }
            let table = &self.service.tables[i];
            let mut binds = Binds::new(self.org_id);
            let select = self.rows_of(&mut binds, i, Parents::Working);
            let create =
                format!("CREATE TEMP TABLE {name} ON COMMIT DELETE ROWS AS {select} WITH NO DATA");
            binds
                .once(create)
                .execute(&mut *conn)
                .await
                .map_err(self.fail(Some(table), "finding the subject's rows"))?;
            // Statistics of one row in one page: the planner then takes the table for as many
            // rows as it has pages — the handful a subject has — and looks the keys up in the
            // linked tables instead of reading them whole. (Analyzed empty, it would assume a
            // page full of rows, some 180, and hash-join a whole service table with them: 9 ms
            // instead of 0.3 ms for an export of 7,800 external contacts.)
            for statement in [
                format!("INSERT INTO {name} DEFAULT VALUES"),
                format!("ANALYZE {name}"),
                format!("DELETE FROM {name}"),
            ] {
                sqlx::query(AssertSqlSafe(statement))
                    .persistent(false)
                    .execute(&mut *conn)
                    .await
                    .map_err(self.fail(Some(table), "finding the subject's rows"))?;
            }
        }
        Ok(())
    }

    async fn delete_order(&self, conn: &mut PgConnection) -> Result<Vec<usize>, ExecuteError> {
        let names: Vec<_> = self.service.tables.iter().map(|t| t.name.clone()).collect();
        let mut schemas: Vec<String> = names.iter().map(|n| n.schema.clone()).collect();
        schemas.sort();
        schemas.dedup();
        let keys = sql::foreign_keys(conn, &schemas)
            .await
            .map_err(self.fail(None, "reading foreign keys"))?;
        sql::delete_order(&names, &keys).map_err(|table| ExecuteError {
            service: self.service.name.clone(),
            table: Some(table.to_string()),
            step: "ordering deletes",
            message: "its foreign keys form a cycle".to_owned(),
            transient: false,
            missing_table: false,
            matched: None,
        })
    }

    /// The temporary table holding the subject's keys of the service's `i`th table.
    fn temp(&self, i: usize) -> String {
        temp_name(&self.service.tables[i])
    }

    /// The keys of the subject's rows of the `i`th table (as `k0`, `k1`, …) and whether
    /// erasure keeps them, a linked table's found from its parent's rows in `parents`. A linked
    /// table's rows are kept when their parent row is.
    fn rows_of(&self, binds: &mut Binds, i: usize, parents: Parents) -> String {
        let table = &self.service.tables[i];
        let link = match &table.rows {
            Rows::Match(columns) => return self.matched_rows(binds, table, columns),
            Rows::Link(link) => link,
        };
        let parent = &self.service.tables[link.parent];
        let own = match &table.retain {
            Some(r) => format!(" OR coalesce(t.{}, false)", ident(&r.column)),
            None => String::new(),
        };
        format!(
            "SELECT {keys}, bool_or(pm.retained{own}) AS retained
               FROM {table} t
               JOIN {parent} p ON p.{parent_column} = t.{column} AND {parent_org}
               JOIN {pm} pm ON {parent_keys}
              WHERE {org}
              GROUP BY {group}",
            keys = key_columns(table),
            table = table.name.sql(),
            parent = parent.name.sql(),
            parent_column = ident(&link.parent_column),
            column = ident(&link.column),
            parent_org = org_filter("p", parent),
            pm = match parents {
                Parents::Working => self.temp(link.parent),
                Parents::Filled => format!("filled{}", link.parent),
            },
            parent_keys = key_join(parent, "p", "pm"),
            org = org_filter("t", table),
            group = table
                .key
                .iter()
                .map(|k| format!("t.{}", ident(k)))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }

    /// The rows holding any of the subject's identifiers: one index lookup per match column
    /// and normalization.
    fn matched_rows(&self, binds: &mut Binds, table: &Table, columns: &[MatchColumn]) -> String {
        let mut placeholders: HashMap<(TermKind, Norm), String> = HashMap::new();
        let mut conditions = Vec::new();
        for m in columns {
            let column = format!("t.{}", ident(&m.column));
            for (kind, norm, values) in &self.needles {
                if !m.kinds.contains(kind) {
                    continue;
                }
                let p = placeholders
                    .entry((*kind, *norm))
                    .or_insert_with(|| binds.add(Bind::Texts(values.clone())));
                conditions.push(format!("{} = ANY({p})", norm.apply(&column)));
            }
        }
        let condition = if conditions.is_empty() {
            "false".to_owned()
        } else {
            conditions.join(" OR ")
        };
        let retained = match &table.retain {
            Some(r) => format!("coalesce(t.{}, false)", ident(&r.column)),
            None => "false".to_owned(),
        };
        format!(
            "SELECT {keys}, {retained} AS retained FROM {table} t WHERE {org} AND ({condition})",
            keys = key_columns(table),
            table = table.name.sql(),
            org = org_filter("t", table),
        )
    }

    fn retained_reason(&self, counts: &[Count]) -> Option<String> {
        let mut reasons: Vec<&str> = Vec::new();
        for (i, count) in counts.iter().enumerate() {
            if count.retained > 0
                && let Some(reason) = self.reason_for(i)
                && !reasons.contains(&reason)
            {
                reasons.push(reason);
            }
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// A table's own reason to keep rows, or the reason of the table it is linked to.
    fn reason_for(&self, i: usize) -> Option<&str> {
        let table = &self.service.tables[i];
        match (&table.retain, &table.rows) {
            (Some(r), _) => Some(&r.reason),
            (None, Rows::Link(link)) => self.reason_for(link.parent),
            (None, Rows::Match(_)) => None,
        }
    }

    /// Exports the subject's rows of every table in one statement (one round trip, however
    /// many tables the service has). The rows come one by one, each as its JSON text, and are
    /// appended to the export's text as they come: the export is held once, never also as the
    /// one value of a result row (which, decoded, would be a second copy of it).
    async fn export(&self, conn: &mut PgConnection) -> Result<Box<RawValue>, ExecuteError> {
        let tables = &self.service.tables;
        if tables.is_empty() {
            return Ok(Outcome::empty_export());
        }
        let parts = (0..tables.len())
            .map(|i| self.export_sql(i))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let mut rows = Binds::new(self.org_id)
            .query(format!("SELECT t, r FROM ({parts}) x ORDER BY t, n"))
            .fetch(&mut *conn);
        let mut text = ExportText::new();
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(self.fail(None, "exporting"))?
        {
            text.push(tables, &row)
                .map_err(self.fail(None, "exporting"))?;
        }
        text.finish(tables).map_err(self.fail(None, "exporting"))
    }

    /// The query that exports the subject's rows of table `i` (its working table filled), each
    /// as its JSON text: `t` is `i` and `n` orders the rows.
    fn export_sql(&self, i: usize) -> String {
        let table = &self.service.tables[i];
        let object = match &table.export {
            // `t.*`, the whole row, even when the table has a column named `t`.
            None => match &table.org_column {
                Some(org) => format!("to_jsonb(t.*) - {}", literal(org)),
                None => "to_jsonb(t.*)".to_owned(),
            },
            // jsonb_build_object takes at most 100 arguments.
            Some(columns) => columns
                .chunks(50)
                .map(|chunk| {
                    let pairs = chunk
                        .iter()
                        .map(|c| format!("{}, t.{}", literal(c), ident(c)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!("jsonb_build_object({pairs})")
                })
                .collect::<Vec<_>>()
                .join(" || "),
        };
        let order = (0..table.key.len())
            .map(|k| format!("m.k{k}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT {i} AS t, row_number() OVER (ORDER BY {order}) AS n, ({object})::text AS r
               FROM {table} t JOIN {m} m ON {join}
              WHERE {org}",
            table = table.name.sql(),
            m = self.temp(i),
            join = key_join(table, "t", "m"),
            org = org_filter("t", table),
        )
    }

    /// Rewrites, in the subject's rows, each updatable column whose value is the existing value
    /// of a replacement of its type. Returns how many rows changed.
    async fn update(
        &self,
        conn: &mut PgConnection,
        replacements: &[Replacement],
    ) -> Result<i64, ExecuteError> {
        let mut updated = 0;
        for (i, table) in self.service.tables.iter().enumerate() {
            let mut binds = Binds::new(self.org_id);
            let mut sets = Vec::new();
            let mut any = Vec::new();
            for column in &table.update {
                let kinds = table.kinds_of(column);
                let t_column = format!("t.{}", ident(column));
                let mut whens = Vec::new();
                for r in replacements.iter().filter(|r| kinds.contains(&r.kind)) {
                    let equal = sql::needles(r.kind, std::slice::from_ref(&r.existing))
                        .into_iter()
                        .map(|(norm, values)| {
                            format!(
                                "{} = ANY({})",
                                norm.apply(&t_column),
                                binds.add(Bind::Texts(values))
                            )
                        })
                        .collect::<Vec<_>>();
                    if equal.is_empty() {
                        continue;
                    }
                    let equal = format!("({})", equal.join(" OR "));
                    let value = binds.add(Bind::Text(r.updated.clone()));
                    whens.push(format!("WHEN {equal} THEN {value}"));
                    any.push(equal);
                }
                if !whens.is_empty() {
                    sets.push(format!(
                        "{} = CASE {} ELSE {t_column} END",
                        ident(column),
                        whens.join(" ")
                    ));
                }
            }
            if sets.is_empty() {
                continue;
            }
            let sql = format!(
                "UPDATE {table} t SET {sets} FROM {m} m
                  WHERE {org} AND {join} AND ({any})",
                table = table.name.sql(),
                sets = sets.join(", "),
                m = self.temp(i),
                org = org_filter("t", table),
                join = key_join(table, "t", "m"),
                any = any.join(" OR "),
            );
            let done = binds
                .query(sql)
                .execute(&mut *conn)
                .await
                .map_err(self.fail(Some(table), "updating"))?;
            updated += done.rows_affected() as i64;
        }
        Ok(updated)
    }

    /// Deletes the subject's rows but the retained ones, referencing tables first.
    async fn delete(&self, conn: &mut PgConnection) -> Result<i64, ExecuteError> {
        let order = match self.service.delete_order.get() {
            Some(order) => order.clone(),
            None => {
                let order = self.delete_order(conn).await?;
                self.service.delete_order.get_or_init(|| order).clone()
            }
        };
        let mut deleted = 0;
        for i in order {
            let table = &self.service.tables[i];
            let sql = format!(
                "DELETE FROM {table} t USING {m} m
                  WHERE {org} AND {join} AND NOT m.retained",
                table = table.name.sql(),
                m = self.temp(i),
                org = org_filter("t", table),
                join = key_join(table, "t", "m"),
            );
            let done = Binds::new(self.org_id)
                .query(sql)
                .execute(&mut *conn)
                .await
                .map_err(self.fail(Some(table), "deleting"))?;
            deleted += done.rows_affected() as i64;
        }
        Ok(deleted)
    }

    /// Rewrites the subject's rows but the retained ones by the tables' rules. Rows already
    /// anonymized are left as they are and not counted.
    async fn anonymize(&self, conn: &mut PgConnection) -> Result<i64, ExecuteError> {
        let free_text = self
            .service
            .tables
            .iter()
            .any(|t| t.anonymize.iter().any(|(_, r)| *r == Rule::RedactText));
        let pattern = match free_text {
            true => self.spellings(conn).await?.pattern(),
            false => None,
        };
        let mut anonymized = 0;
        for (i, table) in self.service.tables.iter().enumerate() {
            let mut binds = Binds::new(self.org_id);
            let mut hash_key = None;
            let mut pattern_bind = None;
            let mut columns = Vec::new();
            let mut values = Vec::new();
            for (column, rule) in &table.anonymize {
                let t_column = format!("t.{}", ident(column));
                let value = match rule {
                    Rule::Null => "NULL".to_owned(),
                    Rule::Redact => literal(REDACTED),
                    Rule::Hash => {
                        let key = hash_key
                            .get_or_insert_with(|| binds.add(Bind::Bytes(self.key.to_vec())))
                            .clone();
                        let normalized = self.hash_input(&mut binds, table, column);
                        format!(
                            "CASE WHEN {t_column} IS NULL OR {t_column} LIKE 'hmac:%' THEN {t_column}
                                  ELSE 'hmac:' || encode(hmac(convert_to({normalized}, 'UTF8'),
                                                              {key}, 'sha256'), 'hex') END"
                        )
                    }
                    Rule::RedactText => {
                        let Some(pattern) = &pattern else { continue };
                        let p = pattern_bind
                            .get_or_insert_with(|| binds.add(Bind::Text(pattern.clone())))
                            .clone();
                        format!(
                            "regexp_replace({t_column}, {p}, {}, 'gi')",
                            literal(REDACTED)
                        )
                    }
                };
                columns.push(column);
                values.push(value);
            }
            if columns.is_empty() {
                continue;
            }
            let sets = columns
                .iter()
                .zip(&values)
                .map(|(c, v)| format!("{} = {v}", ident(c)))
                .collect::<Vec<_>>()
                .join(", ");
            let old = columns
                .iter()
                .map(|c| format!("t.{}", ident(c)))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "UPDATE {table} t SET {sets} FROM {m} m
                  WHERE {org} AND {join} AND NOT m.retained
                    AND ROW({old}) IS DISTINCT FROM ROW({new})",
                table = table.name.sql(),
                m = self.temp(i),
                org = org_filter("t", table),
                join = key_join(table, "t", "m"),
                new = values.join(", "),
            );
            let done = binds
                .query(sql)
                .execute(&mut *conn)
                .await
                .map_err(self.fail(Some(table), "anonymizing"))?;
            anonymized += done.rows_affected() as i64;
        }
        Ok(anonymized)
    }

    /// What a keyed hash is computed from: the column's value normalized as its identifier type
    /// says. A phone number of the subject is hashed in E.164 however the row spells it, so
    /// that the same number always gives the same hash.
    fn hash_input(&self, binds: &mut Binds, table: &Table, column: &str) -> String {
        let kinds = table.kinds_of(column);
        let t_column = format!("t.{}", ident(column));
        let plain = kinds
            .iter()
            .copied()
            .find(|k| !matches!(k, TermKind::Phone | TermKind::Whatsapp))
            .or(kinds.first().copied())
            .map_or(Norm::Trim, Norm::of)
            .apply(&t_column);
        let phones: Vec<(String, String)> = self
            .terms
            .0
            .iter()
            .filter(|t| matches!(t.kind, TermKind::Phone | TermKind::Whatsapp))
            .flat_map(|t| {
                phone::variants(&t.value)
                    .into_iter()
                    .map(|v| (v, t.value.clone()))
            })
            .collect();
        let phone_like = kinds
            .iter()
            .any(|k| matches!(k, TermKind::Phone | TermKind::Whatsapp));
        if !phone_like || phones.is_empty() {
            return plain;
        }
        let (variants, numbers): (Vec<String>, Vec<String>) = phones.into_iter().unzip();
        format!(
            "coalesce((SELECT p.e164 FROM unnest({}::text[], {}::text[]) AS p(variant, e164)
                        WHERE p.variant = gdpr_digits({t_column}) LIMIT 1), {plain})",
            binds.add(Bind::Texts(variants)),
            binds.add(Bind::Texts(numbers)),
        )
    }

    /// Every spelling of the subject's identifiers free text may hold: the request's own
    /// spellings (names too, though they never select rows when something stronger is known),
    /// and the values of the identifier columns of the subject's rows, read before any is
    /// rewritten.
    async fn spellings(&self, conn: &mut PgConnection) -> Result<Spellings, ExecuteError> {
        let mut spellings = Spellings::default();
        let add = |spellings: &mut Spellings, value: &str, phone_like: bool| {
            if phone_like {
                spellings.phone(value);
            } else {
                spellings.literal(value);
            }
        };
        for term in &self.terms.0 {
            let phone_like = term.kind == TermKind::Phone
                || (term.kind == TermKind::Whatsapp && term.value.starts_with('+'));
            for raw in term.raw.iter().chain([&term.value]) {
                add(&mut spellings, raw, phone_like);
            }
        }
        for (i, table) in self.service.tables.iter().enumerate() {
            let Rows::Match(columns) = &table.rows else {
                continue;
            };
            let values = columns
                .iter()
                .map(|m| {
                    let phone_like = m
                        .kinds
                        .iter()
                        .any(|k| matches!(k, TermKind::Phone | TermKind::Whatsapp));
                    format!("(t.{}::text, {phone_like})", ident(&m.column))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT DISTINCT v.value, v.phone
                   FROM {table} t JOIN {m} m ON {join},
                        LATERAL (VALUES {values}) AS v(value, phone)
                  WHERE {org} AND v.value IS NOT NULL",
                table = table.name.sql(),
                m = self.temp(i),
                join = key_join(table, "t", "m"),
                org = org_filter("t", table),
            );
            let rows = Binds::new(self.org_id)
                .query(sql)
                .fetch_all(&mut *conn)
                .await
                .map_err(self.fail(Some(table), "reading the identifiers to redact"))?;
            for row in rows {
                add(&mut spellings, row.get::<&str, _>(0), row.get(1));
            }
        }
        Ok(spellings)
    }

    fn fail(
        &self,
        table: Option<&Table>,
        step: &'static str,
    ) -> impl FnOnce(sqlx::Error) -> ExecuteError + use<'_> {
        let table = table.map(|t| t.name.to_string());
        move |e| {
            let (message, transient) = describe(&e);
            let missing_table = matches!(&e, sqlx::Error::Database(db)
                if db.code().as_deref() == Some("42P01"));
            ExecuteError {
                service: self.service.name.clone(),
                table,
                step,
                message,
                transient,
                missing_table,
                matched: None,
            }
        }
    }
}

/// The database's own message (its detail, which may quote values, is left out) and whether
/// the failure may pass.
fn describe(e: &sqlx::Error) -> (String, bool) {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // Serialization failure, deadlock, lock timeout, statement timeout, and the
            // connection and resource classes.
            let transient = matches!(code.as_ref(), "40001" | "40P01" | "55P03" | "57014")
                || code.starts_with("08")
                || code.starts_with("53");
            (db.message().to_owned(), transient)
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            (e.to_string(), true)
        }
        other => (other.to_string(), false),
    }
}

/// The name of the temporary table for the keys of `table`'s rows: named after the table and
/// its key, which decide its columns.
fn temp_name(table: &Table) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(table.name.to_string().as_bytes());
    for key in &table.key {
        hasher.update(b"\0");
        hasher.update(key.as_bytes());
    }
    format!("gdpr_m_{}", hex::encode(&hasher.finalize()[..8]))
}

/// The key columns of `table` (alias `t`) as `k0`, `k1`, …
fn key_columns(table: &Table) -> String {
    table
        .key
        .iter()
        .enumerate()
        .map(|(k, c)| format!("t.{} AS k{k}", ident(c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows of `table` (alias `t`) whose key is one kept in temporary table `m`.
fn key_join(table: &Table, t: &str, m: &str) -> String {
    table
        .key
        .iter()
        .enumerate()
        .map(|(k, c)| format!("{t}.{} = {m}.k{k}", ident(c)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

#[cfg(test)]
mod tests {
    use sqlx::PgPool;

    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn an_outcome_shows_the_size_of_its_export_never_its_rows() {
        let outcome = Outcome {
            matched: 1,
            export: RawValue::from_string(r#"{"demo.t": [{"email": "ana@example.com"}]}"#.into())
                .ok(),
            ..Outcome::default()
        };
        let shown = format!("{outcome:?}");
        assert!(!shown.contains("ana@example.com"), "{shown}");
        assert!(shown.contains("export_bytes: Some(42)"), "{shown}");
    }

    /// Rows enough in every demo table that the planner reads a table whole unless an index
    /// answers the comparison, each value distinct as identifiers are.
    const FILLER: &str = "
        INSERT INTO organizations (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'Big');
        INSERT INTO demo.directory_users (id, org_id, name, email, phone)
        SELECT gen_random_uuid(), o, 'Person ' || i, 'p' || i || '@example.com', '555 ' || i
          FROM generate_series(1, 5000) i, (SELECT id AS o FROM organizations) org;
        INSERT INTO demo.external_contacts (id, org_id, name, work_email, personal_email,
            work_phone, cell_phone, address, twitter_handle, instagram_handle, facebook_id,
            whatsapp_number, external_id)
        SELECT gen_random_uuid(), o, 'Person ' || i, 'w' || i || '@example.com',
               'p' || i || '@example.com', '555 ' || i, '556 ' || i, i || ' Main St', 't' || i,
               'i' || i, 'f' || i, '557 ' || i, 'X-' || i
          FROM generate_series(1, 5000) i, (SELECT id AS o FROM organizations) org;
        INSERT INTO demo.contact_lists (id, org_id, name)
        SELECT '00000000-0000-0000-0000-0000000000aa', id, 'List' FROM organizations;
        INSERT INTO demo.dialer_contacts (id, org_id, contact_list_id, name, phone, alt_phone,
            email, address)
        SELECT gen_random_uuid(), o, '00000000-0000-0000-0000-0000000000aa', 'Person ' || i,
               '555 ' || i, '556 ' || i, 'd' || i || '@example.com', i || ' Side St'
          FROM generate_series(1, 5000) i, (SELECT id AS o FROM organizations) org;
        INSERT INTO demo.conversations (id, org_id, channel, started_at)
        SELECT md5('c' || i)::uuid, o, 'voice', now()
          FROM generate_series(1, 5000) i, (SELECT id AS o FROM organizations) org;
        INSERT INTO demo.conversation_participants (id, org_id, conversation_id, purpose, name,
            address, user_id)
        SELECT gen_random_uuid(), o, md5('c' || i)::uuid, 'customer', 'Person ' || i,
               '555 ' || i, gen_random_uuid()
          FROM generate_series(1, 5000) i, (SELECT id AS o FROM organizations) org;
        INSERT INTO demo.transcript_lines (id, org_id, conversation_id, seq, speaker, body)
        SELECT gen_random_uuid(), o, md5('c' || i)::uuid, 1, 'customer', 'Hello'
          FROM generate_series(1, 5000) i, (SELECT id AS o FROM organizations) org;
        INSERT INTO demo.attachments (id, org_id, uploaded_by, file_name, content_type, content)
        SELECT gen_random_uuid(), o, 'a' || i || '@example.com', 'f', 'text/plain', 'x'
          FROM generate_series(1, 5000) i, (SELECT id AS o FROM organizations) org;
        INSERT INTO demo.journey_visitors (org_id, cookie_id, name, email, phone, first_seen,
            last_seen)
        SELECT o, 'ck-' || i, 'Person ' || i, 'v' || i || '@example.com', '555 ' || i, now(),
               now()
          FROM generate_series(1, 5000) i, (SELECT id AS o FROM organizations) org;
        INSERT INTO demo.journey_sessions (id, org_id, cookie_id, started_at)
        SELECT md5('s' || i)::uuid, o, 'ck-' || i, now()
          FROM generate_series(1, 5000) i, (SELECT id AS o FROM organizations) org;
        INSERT INTO demo.journey_events (id, org_id, session_id, cookie_id, event_type,
            created_at)
        SELECT gen_random_uuid(), o, md5('s' || i)::uuid, 'ck-' || i, 'page_view', now()
          FROM generate_series(1, 5000) i, (SELECT id AS o FROM organizations) org;
        INSERT INTO demo.consent_records (id, org_id, email, phone, cookie_id, purpose, granted,
            source, recorded_at)
        SELECT gen_random_uuid(), o, 'c' || i || '@example.com', '555 ' || i, 'ck-' || i, 'news',
               true, 'web', now()
          FROM generate_series(1, 5000) i, (SELECT id AS o FROM organizations) org;
        ANALYZE;";

    fn terms(list: &[(TermKind, &str)]) -> Terms {
        let mut terms = Terms::default();
        for (kind, value) in list {
            terms.add(*kind, (*value).to_owned(), value);
        }
        terms
    }

    /// At a million people a lookup must never read a table whole. With tables large enough
    /// that the planner would, the plan of every statement that finds rows shows any table the
    /// catalog compares without an index (migration 0004) to answer it.
    #[sqlx::test]
    async fn every_match_and_link_is_an_index_lookup(pool: PgPool) -> sqlx::Result<()> {
        let catalog = Catalog::load(concat!(env!("CARGO_MANIFEST_DIR"), "/catalog/demo.toml"))
            .expect("the demo catalog parses");
        sqlx::raw_sql(FILLER).execute(&pool).await?;
        let org: Uuid = sqlx::query_scalar("SELECT id FROM organizations")
            .fetch_one(&pool)
            .await?;
        let id = Uuid::nil().to_string();
        let strong = terms(&[
            (TermKind::Phone, "+15550100001"),
            (TermKind::Email, "ana@example.com"),
            (TermKind::Twitter, "anag"),
            (TermKind::Instagram, "anag"),
            (TermKind::Facebook, "anag"),
            (TermKind::Whatsapp, "+15550100001"),
            (TermKind::Whatsapp, "anag"),
            (TermKind::ExternalId, "X-1"),
            (TermKind::UserId, &id),
            (TermKind::ExternalContactId, &id),
            (TermKind::DialerContactId, &id),
            (TermKind::JourneyCookie, "ck-1"),
        ]);
        let weak = terms(&[
            (TermKind::Name, "person 1"),
            (TermKind::Address, "1 main st"),
        ]);
        let mut tx = pool.begin().await?;
        for terms in [&strong, &weak] {
            for service in &catalog.services {
                let run = Run::new(service, org, terms, b"key");
                run.prepare(&mut tx).await.expect("working tables");
                for table in &service.tables {
                    let (binds, find) = run.find_sql();
                    let what = format!("finding rows, {}", service.name);
                    assert_no_full_read(&mut tx, binds, &find, table, &what).await?;
                }
                run.find(&mut tx).await.expect("rows found");
                // Joined with the handful of keys found, a service table is looked up by key,
                // not read whole: the working tables' statistics say they are small.
                for (i, table) in service.tables.iter().enumerate() {
                    let what = format!("the export of {}", service.name);
                    let export = run.export_sql(i);
                    assert_no_full_read(&mut tx, Binds::new(org), &export, table, &what).await?;
                }
            }
        }
        Ok(())
    }

    /// Asserts that the plan of `sql` does not read `table` whole.
    async fn assert_no_full_read(
        conn: &mut PgConnection,
        binds: Binds,
        sql: &str,
        table: &Table,
        what: &str,
    ) -> sqlx::Result<()> {
        let plan: Vec<String> = binds
            .query(format!("EXPLAIN {sql}"))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let scan = format!("Seq Scan on {} ", table.name.name);
        assert!(
            !plan.iter().any(|line| line.contains(&scan)),
            "{what} reads {} whole:\n{}",
            table.name,
            plan.join("\n")
        );
        Ok(())
    }
}
