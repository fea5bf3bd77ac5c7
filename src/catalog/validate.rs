//! Checking a parsed catalog against the database it describes: every table and column exists
//! and has a type its use makes sense for, and erasure can delete in some order.

use std::collections::HashMap;

use sqlx::PgPool;

use super::error::{CatalogError, Place};
use super::sql::{self, ForeignKey};
use super::{Catalog, Erasure, Location, Rows, Rule, Service, Table, TableName};
use crate::outbound::GuardSettings;
use crate::requests::terms::TermKind;

/// A column as `pg_catalog` describes it.
struct Column {
    type_name: String,
    not_null: bool,
    /// `pg_type.typcategory`: `S` for strings, `B` for booleans.
    category: String,
}

type Columns = HashMap<(String, String), HashMap<String, Column>>;

impl Catalog {
    /// Checks the catalog against the database: gdprd refuses to start on an error, which
    /// names the service and the entry at fault.
    ///
    /// Services of external databases are checked against their own database, after gdprd
    /// has made sure the functions its matching uses exist there (see [`prepare_external`]).
    pub async fn validate(&self, pool: &PgPool) -> Result<(), CatalogError> {
        let local: Vec<&Service> = self
            .services
            .iter()
            .filter(|s| matches!(s.location, Location::Local))
            .collect();
        check_services(pool, &local).await?;
        for service in &self.services {
            if let Location::Database(database) = &service.location {
                let place = Place::service(&service.name);
                let pool = database.pool();
                prepare_external(&pool).await.map_err(|e| {
                    place.error(format!(
                        "cannot prepare the database of {}: {e}",
                        database.source
                    ))
                })?;
                check_services(&pool, &[service]).await?;
            }
        }
        Ok(())
    }

    /// Checks the URL of every HTTP service against the outbound guard.
    pub fn check_outbound(&self, guard: &GuardSettings) -> Result<(), CatalogError> {
        for service in &self.services {
            if let Location::Http(endpoint) = &service.location {
                guard.check(&endpoint.url).map_err(|e| {
                    Place::service(&service.name).error(format!("http.url is refused: {e}"))
                })?;
            }
        }
        Ok(())
    }
}

/// What the catalog's generated SQL needs in a database: the pgcrypto and unaccent extensions
/// and the two normalization functions of `migrations/0004_catalog_matching.sql`, created when
/// missing (gdprd's role needs the right to create them there once).
pub async fn prepare_external(pool: &PgPool) -> sqlx::Result<()> {
    let mut conn = pool.acquire().await?;
    let present: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = 'public' AND p.proname IN ('gdpr_fold', 'gdpr_digits')",
    )
    .fetch_one(&mut *conn)
    .await?;
    let extensions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_extension WHERE extname IN ('pgcrypto', 'unaccent')",
    )
    .fetch_one(&mut *conn)
    .await?;
    if present == 2 && extensions == 2 {
        return Ok(());
    }
    sqlx::raw_sql(include_str!("functions.sql"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn check_services(pool: &PgPool, services: &[&Service]) -> Result<(), CatalogError> {
    let mut schemas: Vec<String> = services
        .iter()
        .flat_map(|s| s.tables.iter().map(|t| t.name.schema.clone()))
        .collect();
    if schemas.is_empty() {
        return Ok(());
    }
    schemas.sort();
    schemas.dedup();
    let mut conn = pool.acquire().await?;
    let columns = columns(&mut conn, &schemas).await?;
    let keys = sql::foreign_keys(&mut conn, &schemas).await?;
    for service in services {
        let place = Place::service(&service.name);
        for table in &service.tables {
            let name = table.name.to_string();
            check_table(place.table(&name), service, table, &columns)?;
        }
        if service.erasure == Erasure::Delete {
            check_deletable(place, service, &keys)?;
        }
    }
    Ok(())
}

async fn columns(
    conn: &mut sqlx::PgConnection,
    schemas: &[String],
) -> Result<Columns, CatalogError> {
    let rows: Vec<(String, String, String, String, bool, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, a.attname::text,
                pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                ty.typcategory::text
           FROM pg_catalog.pg_class c
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
           JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
          WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1)
            AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await?;
    let mut columns = Columns::new();
    for (schema, table, column, type_name, not_null, category) in rows {
        columns.entry((schema, table)).or_default().insert(
            column,
            Column {
                type_name,
                not_null,
                category,
            },
        );
    }
    Ok(columns)
}

fn check_table(
    place: Place<'_>,
    service: &Service,
    table: &Table,
    all: &Columns,
) -> Result<(), CatalogError> {
    let columns = table_columns(all, &table.name).ok_or_else(|| place.error("no such table"))?;
    let column = |name: &str| {
        columns
            .get(name)
            .ok_or_else(|| place.error(format!("unknown column {name:?}")))
    };
    let text = |name: &str, what: &str| -> Result<(), CatalogError> {
        let c = column(name)?;
        if c.category == "S" {
            Ok(())
        } else {
            Err(place.error(format!(
                "{what} column {name:?} is {}, expected a text type",
                c.type_name
            )))
        }
    };

    if let Some(org_column) = &table.org_column {
        let org = column(org_column)?;
        if org.type_name != "uuid" {
            return Err(place.error(format!(
                "organization column {org_column:?} is {}, expected uuid",
                org.type_name
            )));
        }
    }
    for key in &table.key {
        column(key)?;
    }
    match &table.rows {
        Rows::Match(matches) => {
            for m in matches {
                // Record ids are compared as text whatever their type; every other identifier
                // is normalized as text.
                let ids_only = m.kinds.iter().all(|k| {
                    matches!(
                        k,
                        TermKind::UserId
                            | TermKind::ExternalContactId
                            | TermKind::DialerContactId
                            | TermKind::JourneyCookie
                    )
                });
                if ids_only {
                    column(&m.column)?;
                } else {
                    text(&m.column, "match")?;
                }
            }
        }
        Rows::Link(link) => {
            let parent = &service.tables[link.parent];
            let own = column(&link.column)?;
            let theirs = table_columns(all, &parent.name)
                .and_then(|c| c.get(&link.parent_column))
                .ok_or_else(|| {
                    place.error(format!(
                        "links to unknown column {:?} of {}",
                        link.parent_column, parent.name
                    ))
                })?;
            if own.type_name != theirs.type_name {
                return Err(place.error(format!(
                    "link column {:?} is {} but {}.{} is {}",
                    link.column, own.type_name, parent.name, link.parent_column, theirs.type_name
                )));
            }
        }
    }
    for (name, rule) in &table.anonymize {
        match rule {
            Rule::Null => {
                if column(name)?.not_null {
                    return Err(place.error(format!(
                        "rule \"null\" on column {name:?}, which is NOT NULL (use redact or hash)"
                    )));
                }
            }
            Rule::Redact | Rule::Hash | Rule::RedactText => {
                text(name, &format!("rule {:?} on", rule.as_str()))?
            }
        }
    }
    if let Some(retain) = &table.retain {
        let c = column(&retain.column)?;
        if c.type_name != "boolean" {
            return Err(place.error(format!(
                "retain_when column {:?} is {}, expected boolean",
                retain.column, c.type_name
            )));
        }
    }
    for name in table.export.iter().flatten() {
        column(name)?;
    }
    for name in &table.update {
        text(name, "update")?;
    }
    Ok(())
}

fn table_columns<'a>(all: &'a Columns, name: &TableName) -> Option<&'a HashMap<String, Column>> {
    all.get(&(name.schema.clone(), name.name.clone()))
}

/// Deleting must be possible in some order, and no other table may hold on to the rows.
fn check_deletable(
    place: Place<'_>,
    service: &Service,
    keys: &[ForeignKey],
) -> Result<(), CatalogError> {
    let names: Vec<TableName> = service.tables.iter().map(|t| t.name.clone()).collect();
    for key in keys.iter().filter(|k| names.contains(&k.to)) {
        // `a` (no action) and `r` (restrict) make a delete fail while a row refers to it.
        if !names.contains(&key.from) && matches!(key.on_delete.as_str(), "a" | "r") {
            let to = key.to.to_string();
            return Err(place.table(&to).error(format!(
                "{} refers to this table without ON DELETE CASCADE or SET NULL, so deleting \
                 the subject's rows would fail; add it to the service or change the foreign key",
                key.from
            )));
        }
    }
    let order = sql::delete_order(&names, keys).map_err(|t| {
        let t = t.to_string();
        place
            .table(&t)
            .error("its foreign keys form a cycle: no order deletes the subject's rows")
    })?;
    let _ = service.delete_order.set(order);
    Ok(())
}
