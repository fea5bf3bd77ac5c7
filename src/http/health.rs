//! `/healthz` (the process is up) and `/readyz` (the database answers).

use std::time::Duration;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::Json;
use super::openapi::{GatewayTimeout, InternalServerError, ServiceUnavailable};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "**Extension.** Health of the process (and of its database).")]
pub struct Health {
    /// `UP`.
    #[schema(examples("UP"))]
    status: &'static str,
    /// `UP` (on `/readyz` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(examples("UP"))]
    database: Option<&'static str>,
}

/// Liveness
///
/// The process is up. Not rate limited, no token needed.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "getHealthz",
    tag = "Operations",
    responses(
        (status = 200, description = "Up.", body = Health, example = json!({"status": "UP"})),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "UP",
        database: None,
    })
}

/// Readiness
///
/// The database answers (within 2 seconds). Not rate limited, no token needed.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "getReadyz",
    tag = "Operations",
    responses(
        (status = 200, description = "Ready.", body = Health,
            example = json!({"status": "UP", "database": "UP"})),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let ping = sqlx::query("SELECT 1").execute(&state.pool);
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Ok(Json(Health {
            status: "UP",
            database: Some("UP"),
        })),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(not_ready())
        }
        Err(_) => Err(not_ready()),
    }
}

fn not_ready() -> ApiError {
    ApiError::Unavailable("Service Unavailable - the database does not answer.".into())
}
