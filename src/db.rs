//! The connection pool and the migrations (embedded in the binary).

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::GlobalArgs;

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Prepared statements each connection keeps: gdprd's own (about a hundred) and those the
/// catalog's executor generates per service, table and kind of identifier (see
/// `catalog::sql::Binds::query`). With sqlx's default of 100 they would push one another out.
const STATEMENT_CACHE: usize = 400;

pub async fn connect(args: &GlobalArgs) -> anyhow::Result<PgPool> {
    let url = args
        .database_url
        .as_deref()
        .context("no database: set DATABASE_URL (or pass --database-url)")?;
    let options: PgConnectOptions = url
        .parse()
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    PgPoolOptions::new()
        .max_connections(args.db_max_connections)
        .acquire_timeout(Duration::from_secs(args.db_acquire_timeout_secs))
        .connect_with(options.statement_cache_capacity(STATEMENT_CACHE))
        .await
        .context("cannot connect to PostgreSQL at DATABASE_URL")
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("cannot apply the database migrations")
}
