//! Bearer tokens: issued for client credentials, opaque, stored only as SHA-256 digests, expiring
//! and revocable.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{Caller, Permission, digest, random_secret};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("invalid credentials")]
    BadCredentials,
    #[error("expired or revoked credentials")]
    Expired,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A token just issued; `access_token` is shown to the client once and never stored.
pub struct Issued {
    pub access_token: String,
    pub expires_in: u64,
}

/// Checks a client's secret (in constant time) and issues a token valid for `ttl`.
pub async fn issue(
    pool: &PgPool,
    client_id: &str,
    secret: &str,
    ttl: Duration,
) -> Result<Issued, AuthError> {
    let client_id = Uuid::parse_str(client_id.trim()).map_err(|_| AuthError::BadCredentials)?;
    let stored: Option<(Vec<u8>,)> =
        sqlx::query_as("SELECT secret_hash FROM api_clients WHERE id = $1 AND disabled_at IS NULL")
            .bind(client_id)
            .fetch_optional(pool)
            .await?;
    let (stored,) = stored.ok_or(AuthError::BadCredentials)?;
    if !bool::from(stored.ct_eq(&digest(secret))) {
        return Err(AuthError::BadCredentials);
    }
    let token = random_secret();
    let expires_at = Utc::now() + ttl;
    sqlx::query(
        "INSERT INTO access_tokens (token_hash, client_id, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(digest(&token))
    .bind(client_id)
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok(Issued {
        access_token: token,
        expires_in: ttl.as_secs(),
    })
}

/// The client a bearer token belongs to. The token is looked up by its digest; an unknown token
/// is `BadCredentials`, an expired or revoked one `Expired`.
pub async fn authenticate(pool: &PgPool, token: &str) -> Result<Caller, AuthError> {
    let row: Option<(
        Uuid,
        String,
        Uuid,
        Vec<String>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    )> = sqlx::query_as(
        "SELECT c.id, c.name, c.org_id, c.permissions, t.expires_at, t.revoked_at, c.disabled_at
               FROM access_tokens t JOIN api_clients c ON c.id = t.client_id
              WHERE t.token_hash = $1",
    )
    .bind(digest(token))
    .fetch_optional(pool)
    .await?;
    let (client_id, client_name, org_id, permissions, expires_at, revoked_at, disabled_at) =
        row.ok_or(AuthError::BadCredentials)?;
    if expires_at <= Utc::now() || revoked_at.is_some() || disabled_at.is_some() {
        return Err(AuthError::Expired);
    }
    Ok(Caller {
        client_id,
        client_name,
        org_id,
        permissions: permissions
            .iter()
            .filter_map(|p| Permission::parse(p))
            .collect(),
    })
}

/// Revokes a token. Returns whether it was live.
pub async fn revoke(pool: &PgPool, token: &str) -> sqlx::Result<bool> {
    let result = sqlx::query(
        "UPDATE access_tokens SET revoked_at = now()
          WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(digest(token))
    .execute(pool)
    .await?;
    Ok(result.rows_affected() > 0)
}
