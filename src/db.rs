//! The connection pool and the migrations (embedded in the binary).

use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};

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
    pool_options()
        .max_connections(args.db_max_connections)
        .acquire_timeout(Duration::from_secs(args.db_acquire_timeout_secs))
        .connect_with(options.statement_cache_capacity(STATEMENT_CACHE))
        .await
        .context("cannot connect to PostgreSQL at DATABASE_URL")
}

/// Pool options whose connections give back their buffers as they go back to the pool. A
/// connection keeps its read and write buffers at the size of the largest message it has
/// carried, so every connection that once carried a large export (a service's rows, a job's
/// result, an archive) would keep that memory for as long as it lives (up to sqlx's 30
/// minutes): the server's resident memory grew with each large export that happened to run on
/// another connection. Shrinking a buffer that never grew past its initial 8 KiB does nothing.
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new().after_release(|conn, _| {
        Box::pin(async move {
            conn.shrink_buffers();
            Ok(true)
        })
    })
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("cannot apply the database migrations")
}

#[cfg(test)]
mod tests {
    use sqlx::PgConnection;
    use sqlx::postgres::PgConnectOptions;

    use super::*;

    async fn backend(conn: &mut PgConnection) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    async fn echo(conn: &mut PgConnection, text: &str) -> usize {
        sqlx::query_scalar::<_, String>("SELECT $1::text || 'y'")
            .bind(text)
            .fetch_one(conn)
            .await
            .unwrap()
            .len()
    }

    #[sqlx::test]
    async fn a_connection_that_carried_a_large_message_goes_back_to_the_pool_and_works(
        _: PgPoolOptions,
        connect_options: PgConnectOptions,
    ) {
        let pool = pool_options()
            .max_connections(1)
            .connect_with(connect_options)
            .await
            .unwrap();
        let large = "x".repeat(4 << 20);
        let mut conn = pool.acquire().await.unwrap();
        let first = backend(&mut conn).await;
        assert_eq!(echo(&mut conn, &large).await, large.len() + 1);
        drop(conn);
        let mut conn = pool.acquire().await.unwrap();
        assert_eq!(backend(&mut conn).await, first, "the same connection");
        assert_eq!(
            echo(&mut conn, &large).await,
            large.len() + 1,
            "its buffers grow again as needed"
        );
    }
}
