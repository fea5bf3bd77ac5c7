//! Completion notifications: the client's endpoint at `/api/v2/gdpr/notifications/endpoint`
//! (`PUT`, `GET`, `DELETE`, and `POST …/rotate` for its secret), and the delivery log of a
//! request at `GET /api/v2/gdpr/requests/{requestId}/notifications`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{Json, require};
use super::openapi::{
    BadRequest, Forbidden, GatewayTimeout, InternalServerError, NotFound, PayloadTooLarge,
    ServiceUnavailable, TooManyRequests, Unauthorized, UnsupportedMediaType,
};
use super::requests::request_not_found;
use crate::auth::{Caller, Permission};
use crate::notifications::model::{Endpoint, EndpointUpdate, NotificationListing};
use crate::notifications::store;
use crate::state::AppState;

/// Set the notification endpoint
///
/// **Extension.** Every status change of the client's requests (`SEARCHING`, …, `COMPLETED` or
/// `ERROR`, merge-set parents and related requests included) is POSTed to `url`, signed per
/// Standard Webhooks with the endpoint's secrets (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature`). The body carries ids, type, statuses and dates, never personal data
/// (schema `GDPRNotification`). A `callbackUrl` given with a request overrides `url` for that
/// request. The first call creates the endpoint and its secret; later ones change the URL only.
/// Requires the permission `gdpr:request:add`.
#[utoipa::path(
    put,
    path = "/api/v2/gdpr/notifications/endpoint",
    operation_id = "putGdprNotificationsEndpoint",
    tag = "Notifications",
    security(("PureCloud OAuth" = []), ("Bearer" = [])),
    request_body(content = EndpointUpdate, description = "The endpoint's URL"),
    responses(
        (status = 200, description = "The endpoint.", body = Endpoint),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
pub async fn put_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<EndpointUpdate>,
) -> Result<Json<Endpoint>, ApiError> {
    require(&caller, Permission::RequestAdd)?;
    let url = body
        .url
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::invalid_value("url", "The url is required."))?;
    state
        .outbound
        .check(&url)
        .map_err(|e| ApiError::invalid_value("url", format!("The url is refused: {e}.")))?;
    let endpoint = store::put(&state.pool, caller.client_id, caller.org_id, &url).await?;
    Ok(Json(endpoint))
}

/// Get the notification endpoint
///
/// **Extension.** The client's endpoint and its signing secrets (newest first). It exists
/// without a `url` once a request was given a `callbackUrl`, for its secrets. Requires the
/// permission `gdpr:request:view`.
#[utoipa::path(
    get,
    path = "/api/v2/gdpr/notifications/endpoint",
    operation_id = "getGdprNotificationsEndpoint",
    tag = "Notifications",
    security(("PureCloud OAuth" = []), ("Bearer" = [])),
    responses(
        (status = 200, description = "The endpoint.", body = Endpoint),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
pub async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Endpoint>, ApiError> {
    require(&caller, Permission::RequestView)?;
    store::get(&state.pool, caller.client_id)
        .await?
        .map(Json)
        .ok_or_else(endpoint_not_found)
}

/// Delete the notification endpoint
///
/// **Extension.** Stops notifications to the endpoint and forgets its secrets; notifications
/// not yet delivered fail. Requires the permission `gdpr:request:add`.
#[utoipa::path(
    delete,
    path = "/api/v2/gdpr/notifications/endpoint",
    operation_id = "deleteGdprNotificationsEndpoint",
    tag = "Notifications",
    security(("PureCloud OAuth" = []), ("Bearer" = [])),
    responses(
        (status = 204, description = "The endpoint is deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    require(&caller, Permission::RequestAdd)?;
    if store::delete(&state.pool, caller.client_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(endpoint_not_found())
    }
}

/// Rotate the signing secret
///
/// **Extension.** Puts a new secret first; the one it replaces keeps signing for 24 hours
/// (`previousSecretExpiresDate`), so that messages carry both signatures while receivers
/// switch. Requires the permission `gdpr:request:add`.
#[utoipa::path(
    post,
    path = "/api/v2/gdpr/notifications/endpoint/rotate",
    operation_id = "postGdprNotificationsEndpointRotate",
    tag = "Notifications",
    security(("PureCloud OAuth" = []), ("Bearer" = [])),
    responses(
        (status = 200, description = "The endpoint with its new secret.", body = Endpoint),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Endpoint>, ApiError> {
    require(&caller, Permission::RequestAdd)?;
    store::rotate(&state.pool, caller.client_id)
        .await?
        .map(Json)
        .ok_or_else(endpoint_not_found)
}

/// Get the notifications of a GDPR request
///
/// **Extension.** Each status change notified, oldest first, with every delivery attempt: the
/// receiver's HTTP status or why there was none. Requires the permission `gdpr:request:view`.
#[utoipa::path(
    get,
    path = "/api/v2/gdpr/requests/{requestId}/notifications",
    operation_id = "getGdprRequestNotifications",
    tag = "Notifications",
    security(("PureCloud OAuth" = []), ("Bearer" = [])),
    params(("requestId" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "The request's notifications.", body = NotificationListing),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
pub async fn delivery_log(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<NotificationListing>, ApiError> {
    require(&caller, Permission::RequestView)?;
    let id = Uuid::parse_str(&id).map_err(|_| request_not_found())?;
    let entities = store::delivery_log(&state.pool, caller.org_id, id)
        .await?
        .ok_or_else(request_not_found)?;
    Ok(Json(NotificationListing { entities }))
}

fn endpoint_not_found() -> ApiError {
    ApiError::NotFound(
        "This client has no notification endpoint: create one with PUT /api/v2/gdpr/notifications/endpoint."
            .into(),
    )
}
