//! The connection pool and the migrations (embedded in the binary).

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

use crate::config::GlobalArgs;

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

pub async fn connect(args: &GlobalArgs) -> anyhow::Result<PgPool> {
    let url = args
        .database_url
        .as_deref()
        .context("no database: set DATABASE_URL (or pass --database-url)")?;
    PgPoolOptions::new()
        .max_connections(args.db_max_connections)
        .acquire_timeout(Duration::from_secs(args.db_acquire_timeout_secs))
        .connect(url)
        .await
        .context("cannot connect to PostgreSQL at DATABASE_URL")
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("cannot apply the database migrations")
}
