//! Bearer tokens: issued for client credentials, opaque, stored only as SHA-256 digests, expiring
//! and revocable.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::cache::{TokenCache, TokenDigest};
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
/// is `BadCredentials`, an expired or revoked one `Expired`. The answer is noted in `cache`.
pub async fn authenticate(
    pool: &PgPool,
    cache: &TokenCache,
    token: &str,
) -> Result<Caller, AuthError> {
    authenticate_digest(pool, cache, &digest(token)).await
}

/// [`authenticate`], for a token of which only the digest is at hand.
pub async fn authenticate_digest(
    pool: &PgPool,
    cache: &TokenCache,
    digest: &TokenDigest,
) -> Result<Caller, AuthError> {
    let row: Option<TokenRow> = sqlx::query_as(
        "SELECT c.id AS client_id, c.name AS client_name, c.org_id, c.permissions,
                t.expires_at, t.revoked_at, c.disabled_at
           FROM access_tokens t JOIN api_clients c ON c.id = t.client_id
          WHERE t.token_hash = $1",
    )
    .bind(digest)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        cache.forget(digest);
        return Err(AuthError::BadCredentials);
    };
    if row.expires_at <= Utc::now() || row.revoked_at.is_some() || row.disabled_at.is_some() {
        cache.forget(digest);
        return Err(AuthError::Expired);
    }
    let caller = Caller {
        client_id: row.client_id,
        client_name: row.client_name,
        org_id: row.org_id,
        permissions: row
            .permissions
            .iter()
            .filter_map(|p| Permission::parse(p))
            .collect(),
    };
    cache.remember(*digest, &caller, row.expires_at);
    Ok(caller)
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    client_id: Uuid,
    client_name: String,
    org_id: Uuid,
    permissions: Vec<String>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    disabled_at: Option<DateTime<Utc>>,
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
