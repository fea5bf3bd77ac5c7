//! Callbacks from HTTP data services: the result of a job the service accepted with 202,
//! signed per Standard Webhooks with the service's own secret (no OAuth token: the signature is
//! the credential).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use sqlx::types::Json;
use uuid::Uuid;

use super::error::ApiError;
use super::openapi::{
    BadRequest, Conflict, GatewayTimeout, InternalServerError, NotFound, PayloadTooLarge,
    ServiceUnavailable, TooManyRequests, Unauthorized,
};
use crate::catalog::Location;
use crate::requests::terms::Terms;
use crate::state::AppState;
use crate::worker::queue;
use crate::worker::service::JobResult;

fn job_not_found() -> ApiError {
    ApiError::NotFound("No job of an HTTP data service has this id.".into())
}

/// Post the result of a job (HTTP data services)
///
/// Extension. An HTTP data service that answered a job with 202 posts the job's result here,
/// the same JSON a synchronous answer carries (counts, `export`, or `error`), signed with the
/// service's secret (`webhook-id`, `webhook-timestamp`, `webhook-signature`). It is accepted
/// once, as soon as the service has the job (even before gdprd has recorded its 202); a second
/// result for the same job is refused with 409. A call signed by no service gets 401 whether
/// or not the job exists; 404 (no such job) is for a caller that signs as one.
#[utoipa::path(
    post,
    path = "/api/v2/gdpr/callbacks/jobs/{jobId}",
    operation_id = "postGdprJobCallback",
    tag = "HTTP data services",
    security(()),
    params(
        ("jobId" = Uuid, Path, description = "The `jobId` of the job message"),
        ("webhook-id" = String, Header, description = "Standard Webhooks message id"),
        ("webhook-timestamp" = i64, Header, description = "Unix seconds; within 5 minutes of gdprd's clock"),
        ("webhook-signature" = String, Header, description = "`v1,<base64 HMAC-SHA256>`, space-separated when several"),
    ),
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "The job's result: `{matched, deleted, anonymized, updated, retained, \
            retainedReason, export}` or `{error}`",
        example = json!({"matched": 3, "deleted": 3})),
    responses(
        (status = 204, description = "The result is recorded."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
pub async fn job_result(
    State(state): State<AppState>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    // Whether a job exists is told only to a caller that signs as one of the HTTP services:
    // anyone else gets 401 whatever the id.
    let no_such_job = || {
        let signed = state.catalog.services.iter().any(|s| match &s.location {
            Location::Http(endpoint) => endpoint.secrets.verify(&headers, &body).is_ok(),
            _ => false,
        });
        if signed {
            job_not_found()
        } else {
            tracing::warn!("job callback refused: unknown job, and signed by no service");
            ApiError::BadCredentials
        }
    };
    let Ok(job_id) = Uuid::parse_str(&job_id) else {
        return Err(no_such_job());
    };
    let job: Option<(Uuid, String, String)> =
        sqlx::query_as("SELECT request_id, service, status FROM gdpr_jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(&state.pool)
            .await?;
    let Some((request_id, service, status)) = job else {
        return Err(no_such_job());
    };
    let endpoint = match state.catalog.service(&service).map(|s| &s.location) {
        Some(Location::Http(endpoint)) => endpoint,
        _ => return Err(no_such_job()),
    };
    endpoint.secrets.verify(&headers, &body).map_err(|reason| {
        tracing::warn!(%job_id, %reason, "job callback refused");
        ApiError::BadCredentials
    })?;
    if status == "completed" || status == "error" {
        return Err(ApiError::Conflict {
            message: format!(
                "The job already has its result (its status is {status}); a result is \
                 accepted once."
            ),
            candidates: None,
        });
    }
    // The reason names the field, never its value: a service's body may quote the subject.
    let result: JobResult = crate::wire::parse_json(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "The body is not a job result ({}). Send {{matched, deleted, anonymized, updated, \
             retained, retainedReason, export}} or {{error}}.",
            e.without_values()
        ))
    })?;
    let mut tx = state.pool.begin().await?;
    let recorded = match result.into_outcome() {
        Ok(outcome) => queue::complete(&mut tx, job_id, None, &outcome).await?,
        Err(reason) => {
            // The service may quote the subject; the job's error must not.
            let terms: Json<Terms> =
                sqlx::query_scalar("SELECT terms FROM gdpr_requests WHERE id = $1")
                    .bind(request_id)
                    .fetch_one(&mut *tx)
                    .await?;
            let reason = terms.0.redact(&reason);
            let delay = std::time::Duration::ZERO;
            queue::fail(&mut tx, job_id, None, &reason, delay, true).await?
        }
    };
    if !recorded {
        // Another callback for the same job won the race.
        return Err(ApiError::Conflict {
            message: "The job is not waiting for a result any more.".into(),
            candidates: None,
        });
    }
    queue::after_service_job(&mut tx, request_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
