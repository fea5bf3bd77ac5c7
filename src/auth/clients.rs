//! API clients: created from the command line, each with its permissions and a secret shown once.

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Permission, digest, random_secret};
use crate::org;

/// What `gdprd clients create` prints: the only time the secret is ever shown.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedClient {
    pub client_id: Uuid,
    pub client_secret: String,
    pub name: String,
    pub org_id: Uuid,
    pub org_name: String,
    pub permissions: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateClientError {
    #[error("unknown permission {0:?}; the permissions are: {allowed}", allowed = allowed())]
    UnknownPermission(String),
    #[error("a client needs a non-blank name and at least one permission")]
    Incomplete,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn allowed() -> String {
    Permission::ALL.map(Permission::as_str).join(", ")
}

pub async fn create(
    pool: &PgPool,
    org_name: &str,
    name: &str,
    permissions: &[String],
) -> Result<CreatedClient, CreateClientError> {
    let mut parsed: Vec<Permission> = Vec::new();
    for p in permissions.iter().filter(|p| !p.trim().is_empty()) {
        let permission =
            Permission::parse(p).ok_or_else(|| CreateClientError::UnknownPermission(p.clone()))?;
        if !parsed.contains(&permission) {
            parsed.push(permission);
        }
    }
    if parsed.is_empty() || name.trim().is_empty() || org_name.trim().is_empty() {
        return Err(CreateClientError::Incomplete);
    }
    let permissions: Vec<&'static str> = parsed.iter().map(|p| p.as_str()).collect();
    let secret = random_secret();
    let client_id = Uuid::new_v4();
    let mut tx = pool.begin().await?;
    let org_id = org::get_or_create(&mut tx, org_name.trim()).await?;
    sqlx::query(
        "INSERT INTO api_clients (id, org_id, name, secret_hash, permissions)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(client_id)
    .bind(org_id)
    .bind(name.trim())
    .bind(digest(&secret))
    .bind(&permissions)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(CreatedClient {
        client_id,
        client_secret: secret,
        name: name.trim().to_owned(),
        org_id,
        org_name: org_name.trim().to_owned(),
        permissions,
    })
}
