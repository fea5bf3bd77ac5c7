//! The connection pool and the migrations (embedded in the binary).

use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres};

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

/// A connection of the pool for work that may carry exports, which gives back its buffers
/// before it goes back to the pool. A connection keeps its read and write buffers at the size of
/// the largest message it has carried, so every connection of the pool that once carried a
/// large export would keep that memory for as long as it lives (up to sqlx's 30 minutes): the
/// server's resident memory grew with each large export that happened to run on another
/// connection. Shrinking a buffer that never grew past its initial 8 KiB does nothing.
pub struct Carrier(PoolConnection<Postgres>);

impl Carrier {
    pub async fn acquire(pool: &PgPool) -> sqlx::Result<Carrier> {
        pool.acquire().await.map(Carrier)
    }
}

impl std::ops::Deref for Carrier {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.0
    }
}

impl std::ops::DerefMut for Carrier {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.0
    }
}

impl Drop for Carrier {
    fn drop(&mut self) {
        self.0.shrink_buffers();
    }
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("cannot apply the database migrations")
}

#[cfg(test)]
mod tests {
    use sqlx::postgres::PgConnectOptions;

    use super::*;

    async fn backend(conn: &mut PgConnection) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    #[sqlx::test]
    async fn a_connection_that_carried_a_large_message_goes_back_to_the_pool_and_works(
        pool_options: PgPoolOptions,
        connect_options: PgConnectOptions,
    ) {
        let pool = pool_options
            .max_connections(1)
            .connect_with(connect_options)
            .await
            .unwrap();
        let mut conn = Carrier::acquire(&pool).await.unwrap();
        let first = backend(&mut conn).await;
        let large = "x".repeat(4 << 20);
        let echoed: String = sqlx::query_scalar("SELECT $1::text || 'y'")
            .bind(&large)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(echoed.len(), large.len() + 1);
        drop(conn);
        let mut conn = Carrier::acquire(&pool).await.unwrap();
        assert_eq!(backend(&mut conn).await, first, "the same connection");
        let echoed: String = sqlx::query_scalar("SELECT $1::text || 'y'")
            .bind(&large)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(
            echoed.len(),
            large.len() + 1,
            "its buffers grow again as needed"
        );
    }
}
