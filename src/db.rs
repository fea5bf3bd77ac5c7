//! The connection pool and the migrations (embedded in the binary).

use std::time::Duration;

use anyhow::Context;
use deadpool::Runtime;
use deadpool::managed::{Manager, Metrics, Pool, PoolError, RecycleError, RecycleResult};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

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

/// How long a connection may sit idle in the pool before it is checked (one round trip) on
/// its way out. sqlx checks every connection on every acquire by default: under load that is a
/// round trip to PostgreSQL before each statement, for connections that were in use a moment ago
/// and that sqlx's pool checked as they came back. A connection idle for longer is checked as
/// before, so one that PostgreSQL closed while it sat in the pool (a restart, an idle timeout) is
/// replaced, not handed out.
pub const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Pool options for every pool of gdprd's.
///
/// - A connection is checked on acquire only when it has been idle for [`CHECK_AFTER_IDLE`].
/// - Connections give back their buffers as they go back to the pool. A connection keeps its
///   read and write buffers at the size of the largest message it has carried, so every
///   connection that once carried a large export (a service's rows, a job's result, an archive)
///   would keep that memory for as long as it lives (up to sqlx's 30 minutes): the server's
///   resident memory grew with each large export that happened to run on another connection.
///   Shrinking a buffer that never grew past its initial 8 KiB does nothing.
pub fn pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_AFTER_IDLE {
                    // An error closes the connection and the pool opens or takes another.
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .after_release(|conn, _| {
            Box::pin(async move {
                conn.shrink_buffers();
                Ok(true)
            })
        })
}

/// The connections of the subject search (`GET /api/v2/gdpr/subjects`), the hottest path, kept
/// apart from the main pool. sqlx's pool checks every connection it takes back with a round trip
/// to PostgreSQL, so a search over it costs two round trips where its statement needs one; these
/// connections go back without one. They are checked on the way out once [`CHECK_AFTER_IDLE`] has
/// passed since they were last taken, and replaced after [`SEARCH_CONNECTION_LIFETIME`]. A search
/// whose connection fails drops it ([`deadpool::managed::Object::take`]), and a search cut off
/// mid-statement leaves nothing behind: sqlx reads a connection's pending replies before its
/// next statement.
pub type SearchPool = Pool<SearchConnections>;

/// How long a search connection lives, as sqlx's own pool does by default.
pub const SEARCH_CONNECTION_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The `application_name` of search connections in `pg_stat_activity`.
pub const SEARCH_APPLICATION_NAME: &str = "gdprd search";

/// Opens and checks the [`SearchPool`]'s connections.
pub struct SearchConnections {
    options: PgConnectOptions,
}

impl Manager for SearchConnections {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.options).await
    }

    async fn recycle(
        &self,
        conn: &mut PgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        if metrics.age() >= SEARCH_CONNECTION_LIFETIME {
            return Err(RecycleError::message("past its lifetime"));
        }
        if metrics.last_used() >= CHECK_AFTER_IDLE {
            conn.ping().await?;
        }
        Ok(())
    }
}

/// A [`SearchPool`] of up to `size` connections to `pool`'s database, whose callers wait up to
/// `wait` for one (then the answer is 503, as with the main pool). It closes with `pool`.
pub fn search_pool(pool: &PgPool, size: usize, wait: Duration) -> anyhow::Result<SearchPool> {
    let options = (*pool.connect_options())
        .clone()
        .application_name(SEARCH_APPLICATION_NAME);
    let search = Pool::builder(SearchConnections { options })
        .max_size(size.max(1))
        .wait_timeout(Some(wait))
        .create_timeout(Some(wait))
        .recycle_timeout(Some(wait))
        .runtime(Runtime::Tokio1)
        .build()
        .context("cannot build the search connection pool")?;
    let closed = pool.close_event();
    let closing = search.clone();
    tokio::spawn(async move {
        closed.await;
        closing.close();
    });
    Ok(search)
}

/// The search pool's errors as sqlx's pool would give them: a timeout is
/// [`sqlx::Error::PoolTimedOut`], a closed pool [`sqlx::Error::PoolClosed`].
pub fn search_pool_error(e: PoolError<sqlx::Error>) -> sqlx::Error {
    match e {
        PoolError::Backend(e) => e,
        PoolError::Timeout(_) => sqlx::Error::PoolTimedOut,
        PoolError::Closed | PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            sqlx::Error::PoolClosed
        }
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
    async fn a_connection_closed_while_idle_is_replaced_not_handed_out(
        _: PgPoolOptions,
        connect_options: PgConnectOptions,
    ) {
        let pool = pool_options()
            .max_connections(1)
            .connect_with(connect_options.clone())
            .await
            .unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let first = backend(&mut conn).await;
        drop(conn);
        let mut admin = PgConnection::connect_with(&connect_options).await.unwrap();
        let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(first)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(ended);
        tokio::time::sleep(CHECK_AFTER_IDLE + Duration::from_millis(100)).await;
        let mut conn = pool.acquire().await.unwrap();
        let second = backend(&mut conn).await;
        assert_ne!(second, first, "a new connection");
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
