//! Notification endpoints and the delivery log in PostgreSQL.

use chrono::{DateTime, Duration, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::model::{Attempt, Endpoint, NotificationView};
use crate::outbound::signing::Secrets;
use crate::requests::model::{Status, timestamp};

/// How long the secret replaced by a rotation keeps signing.
pub const ROTATION_OVERLAP: Duration = Duration::hours(24);

/// The secrets that still sign: all of them until the rotation overlap ends, then the newest.
const LIVE_SECRETS: &str = "CASE WHEN previous_secret_expires_at IS NULL
                                   OR previous_secret_expires_at > now()
                              THEN secrets ELSE secrets[1:1] END";

#[derive(sqlx::FromRow)]
struct EndpointRow {
    url: Option<String>,
    secrets: Vec<String>,
    previous_secret_expires_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<EndpointRow> for Endpoint {
    fn from(row: EndpointRow) -> Endpoint {
        let rotating = row.secrets.len() > 1;
        Endpoint {
            url: row.url,
            secrets: row.secrets,
            previous_secret_expires_date: row
                .previous_secret_expires_at
                .filter(|_| rotating)
                .map(timestamp),
            created_date: timestamp(row.created_at),
            updated_date: timestamp(row.updated_at),
        }
    }
}

fn returning() -> String {
    format!(
        "RETURNING url, {LIVE_SECRETS} AS secrets, previous_secret_expires_at, created_at, \
         updated_at"
    )
}

pub async fn get(pool: &PgPool, client_id: Uuid) -> sqlx::Result<Option<Endpoint>> {
    let row: Option<EndpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT url, {LIVE_SECRETS} AS secrets, previous_secret_expires_at, created_at, updated_at
           FROM notification_endpoints WHERE client_id = $1"
    )))
    .bind(client_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Endpoint::from))
}

/// Sets the client's endpoint URL (a checked URL), creating the endpoint with a fresh secret.
pub async fn put(
    pool: &PgPool,
    client_id: Uuid,
    org_id: Uuid,
    url: &str,
) -> sqlx::Result<Endpoint> {
    let row: EndpointRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO notification_endpoints (client_id, org_id, url, secrets)
         VALUES ($1, $2, $3, ARRAY[$4])
         ON CONFLICT (client_id) DO UPDATE SET url = EXCLUDED.url, updated_at = now()
         {}",
        returning()
    )))
    .bind(client_id)
    .bind(org_id)
    .bind(url)
    .bind(Secrets::generate())
    .fetch_one(pool)
    .await?;
    Ok(row.into())
}

/// Removes the endpoint and its secrets. Returns whether there was one.
pub async fn delete(pool: &PgPool, client_id: Uuid) -> sqlx::Result<bool> {
    let deleted = sqlx::query("DELETE FROM notification_endpoints WHERE client_id = $1")
        .bind(client_id)
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

/// Puts a new secret first; the one it replaces keeps signing for [`ROTATION_OVERLAP`]. An
/// older secret still in its overlap is dropped.
pub async fn rotate(pool: &PgPool, client_id: Uuid) -> sqlx::Result<Option<Endpoint>> {
    let row: Option<EndpointRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE notification_endpoints
            SET secrets = ARRAY[$2] || secrets[1:1],
                previous_secret_expires_at = now() + make_interval(secs => $3),
                updated_at = now()
          WHERE client_id = $1
         {}",
        returning()
    )))
    .bind(client_id)
    .bind(Secrets::generate())
    .bind(ROTATION_OVERLAP.num_seconds() as f64)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Endpoint::from))
}

/// Gives a client that has no endpoint yet a signing secret (a request of its came with a
/// `callbackUrl`).
pub async fn ensure_secret(
    conn: &mut PgConnection,
    client_id: Uuid,
    org_id: Uuid,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO notification_endpoints (client_id, org_id, url, secrets)
         VALUES ($1, $2, NULL, ARRAY[$3])
         ON CONFLICT (client_id) DO NOTHING",
    )
    .bind(client_id)
    .bind(org_id)
    .bind(Secrets::generate())
    .execute(conn)
    .await?;
    Ok(())
}

/// The secrets that sign a client's messages now, if it has any.
pub async fn signing_secrets(pool: &PgPool, client_id: Uuid) -> sqlx::Result<Option<Vec<String>>> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {LIVE_SECRETS} FROM notification_endpoints WHERE client_id = $1"
    )))
    .bind(client_id)
    .fetch_optional(pool)
    .await
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    id: Uuid,
    status: String,
    previous_status: String,
    url: String,
    state: String,
    attempts: i32,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    notification_id: Uuid,
    attempt: i32,
    at: DateTime<Utc>,
    http_status: Option<i32>,
    error: Option<String>,
    duration_ms: i64,
}

/// The notifications of a request of `org_id`, oldest first, with their attempts; `None` when
/// the organization has no such request.
pub async fn delivery_log(
    pool: &PgPool,
    org_id: Uuid,
    request_id: Uuid,
) -> sqlx::Result<Option<Vec<NotificationView>>> {
    let exists: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM gdpr_requests WHERE id = $1 AND org_id = $2")
            .bind(request_id)
            .bind(org_id)
            .fetch_optional(pool)
            .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let rows: Vec<NotificationRow> = sqlx::query_as(
        "SELECT id, payload #>> '{data,status}' AS status,
                payload #>> '{data,previousStatus}' AS previous_status, url, state, attempts,
                created_at, delivered_at, last_error
           FROM notifications WHERE request_id = $1 ORDER BY seq",
    )
    .bind(request_id)
    .fetch_all(pool)
    .await?;
    let attempts: Vec<AttemptRow> = sqlx::query_as(
        "SELECT a.notification_id, a.attempt, a.at, a.http_status, a.error, a.duration_ms
           FROM notification_attempts a JOIN notifications n ON n.id = a.notification_id
          WHERE n.request_id = $1
          ORDER BY a.notification_id, a.attempt",
    )
    .bind(request_id)
    .fetch_all(pool)
    .await?;
    let views = rows
        .into_iter()
        .map(|row| NotificationView {
            id: row.id,
            status: Status::parse(&row.status).unwrap_or(Status::Error),
            previous_status: Status::parse(&row.previous_status).unwrap_or(Status::Initiated),
            url: row.url,
            state: row.state.to_ascii_uppercase(),
            attempts: row.attempts,
            created_date: timestamp(row.created_at),
            delivered_date: row.delivered_at.map(timestamp),
            last_error: row.last_error,
            deliveries: attempts
                .iter()
                .filter(|a| a.notification_id == row.id)
                .map(|a| Attempt {
                    attempt: a.attempt,
                    date: timestamp(a.at),
                    http_status: a.http_status,
                    error: a.error.clone(),
                    duration_ms: a.duration_ms,
                })
                .collect(),
        })
        .collect();
    Ok(Some(views))
}
