//! The connection pool and the migrations (embedded in the binary).

use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

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

/// The size from which the exports a connection carried make it close once done (see
/// [`release`]).
pub const LARGE_EXPORT: usize = 1 << 20;

/// Gives a connection back to its pool, or closes it when it carried exports of `carried` bytes
/// or more. A connection keeps its read and write buffers at the size of the largest message
/// it has carried, so every connection of the pool that once carried a large export would keep
/// that memory for as long as it lives (the server's resident memory then grew with each large
/// export that happened to run on another connection). The pool opens another when it needs
/// one: a few milliseconds, against the seconds such an export takes.
pub fn release(mut conn: PoolConnection<Postgres>, carried: usize) {
    if carried >= LARGE_EXPORT {
        conn.close_on_drop();
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

    async fn backend(conn: &mut PoolConnection<Postgres>) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut **conn)
            .await
            .unwrap()
    }

    #[sqlx::test]
    async fn a_connection_that_carried_a_large_export_is_closed_and_others_go_back(
        pool_options: PgPoolOptions,
        connect_options: PgConnectOptions,
    ) {
        let pool = pool_options
            .max_connections(1)
            .connect_with(connect_options)
            .await
            .unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let first = backend(&mut conn).await;
        release(conn, LARGE_EXPORT - 1);
        let mut conn = pool.acquire().await.unwrap();
        assert_eq!(
            backend(&mut conn).await,
            first,
            "a small export's connection is kept"
        );
        release(conn, LARGE_EXPORT);
        let mut conn = pool.acquire().await.unwrap();
        // The pool holds one connection at most: a new server process means the first closed.
        assert_ne!(
            backend(&mut conn).await,
            first,
            "a large export's connection is closed, another opened"
        );
    }
}
