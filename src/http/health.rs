//! `/healthz` (the process is up) and `/readyz` (the database answers).

use std::time::Duration;

use axum::extract::State;
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::Json;
use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "UP" }))
}

pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let ping = sqlx::query("SELECT 1").execute(&state.pool);
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Ok(Json(json!({ "status": "UP", "database": "UP" }))),
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
