//! `POST /api/v2/gdpr/requests`, `GET /api/v2/gdpr/requests/{requestId}`,
//! `GET /api/v2/gdpr/requests`, and the signed download of export archives.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{Json, Query, require};
use super::openapi::{
    BadRequest, Conflict, Forbidden, GatewayTimeout, GdprRequestEntityListing, InternalServerError,
    NotFound, PayloadTooLarge, ServiceUnavailable, TooManyRequests, Unauthorized,
    UnsupportedMediaType,
};
use super::paging::parse_page;
use crate::auth::{Caller, Permission};
use crate::requests::create::{self, Accepted, Context, CreateError, Submission};
use crate::requests::model::{GdprRequest, NewRequest};
use crate::requests::store;
use crate::state::AppState;
use crate::wire::{Detail, EntityListing};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateQuery {
    delete_confirmed: Option<String>,
}

/// Submit a new GDPR request
///
/// Answers at once with the created request (`INITIATED`); processing is asynchronous: poll
/// `GET /api/v2/gdpr/requests/{requestId}`. A subject that names an id (`userId`,
/// `externalContactId`, `dialerContactId`, `journeyCustomer`, `externalId`) is resolved
/// through the subject index, and the request covers every identifier known for that record;
/// a subject of bare identifiers covers the data matching any of them. A `GDPR_DELETE` whose
/// identifiers match more than one person is refused (409) unless it names an id. A request of
/// the same type for the same subject while an earlier one is still in flight returns the
/// earlier one (200). Requires the permission `gdpr:request:add`.
#[utoipa::path(
    post,
    path = "/api/v2/gdpr/requests",
    operation_id = "postGdprRequests",
    tag = "General Data Protection Regulation",
    security(("PureCloud OAuth" = []), ("Bearer" = [])),
    params(
        ("deleteConfirmed" = Option<bool>, Query,
            description = "Confirm delete: required (`true`) for `GDPR_DELETE`, ignored for \
                the other types."),
        ("Idempotency-Key" = Option<String>, Header, max_length = 200,
            description = "**Extension.** A key of the client's choosing: the same key again \
                returns the request it first created (200), and with a different body 409."),
    ),
    request_body(
        content = GdprRequest,
        description = "GDPR request",
        examples(
            ("Export by email" = (value = json!({
                "requestType": "GDPR_EXPORT",
                "subject": {"emailAddresses": ["ana.garcia@example.com"]}
            }))),
            ("Update a phone number" = (value = json!({
                "requestType": "GDPR_UPDATE",
                "subject": {"phoneNumbers": ["+15550100001"]},
                "replacementTerms": [
                    {"type": "PHONE", "existingValue": "+15550100001", "updatedValue": "+15550100999"}
                ]
            }))),
            ("Delete an external contact (deleteConfirmed=true)" = (value = json!({
                "requestType": "GDPR_DELETE",
                "subject": {"externalContactId": "8f8a2c4e-3b1d-4e57-9a60-2f1c0d7b5e21"}
            }))),
            ("Export a web visitor" = (value = json!({
                "requestType": "GDPR_EXPORT",
                "subject": {"journeyCustomer": {"type": "cookie", "id": "anagarciacookie0000000000a"}}
            }))),
        )
    ),
    responses(
        (status = 202, description = "Accepted: the request is created.", body = GdprRequest),
        (status = 200, description = "An equivalent request is still in flight (or the \
            `Idempotency-Key` was used before): that request.", body = GdprRequest),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<CreateQuery>,
    headers: HeaderMap,
    Json(body): Json<NewRequest>,
) -> Result<(StatusCode, Json<GdprRequest>), ApiError> {
    require(&caller, Permission::RequestAdd)?;
    let delete_confirmed = parse_bool("deleteConfirmed", query.delete_confirmed.as_deref())?;
    let idempotency_key = idempotency_key(&headers)?;
    let ctx = Context {
        normalizer: &state.normalizer,
        catalog: &state.catalog,
        key: &state.links.key,
        max_attempts: state.max_attempts,
        outbound: &state.outbound,
    };
    let submission = Submission {
        body,
        delete_confirmed,
        idempotency_key,
    };
    let Accepted { id, created } = create::submit(&state.pool, &ctx, &caller, submission)
        .await
        .map_err(|e| create_error(e, &caller))?;
    if let Some(request) = created {
        return Ok((StatusCode::ACCEPTED, Json(request)));
    }
    let request = store::get(&state.pool, caller.org_id, id, &state.links)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("an accepted request vanished")))?;
    Ok((StatusCode::OK, Json(request)))
}

/// Get an existing GDPR request
///
/// Requires the permission `gdpr:request:view`.
#[utoipa::path(
    get,
    path = "/api/v2/gdpr/requests/{requestId}",
    operation_id = "getGdprRequest",
    tag = "General Data Protection Regulation",
    security(("PureCloud OAuth" = []), ("Bearer" = [])),
    params(("requestId" = String, Path, description = "Request id")),
    responses(
        (status = 200, description = "The request.", body = GdprRequest),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<GdprRequest>, ApiError> {
    require(&caller, Permission::RequestView)?;
    let id = Uuid::parse_str(&id).map_err(|_| request_not_found())?;
    store::get(&state.pool, caller.org_id, id, &state.links)
        .await?
        .map(Json)
        .ok_or_else(request_not_found)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    page_size: Option<String>,
    page_number: Option<String>,
}

/// Get all GDPR requests
///
/// Newest first; the related requests of a merge set are listed under their parent
/// (`relatedRequests`), not on their own. Requires the permission `gdpr:request:view`.
#[utoipa::path(
    get,
    path = "/api/v2/gdpr/requests",
    operation_id = "getGdprRequests",
    tag = "General Data Protection Regulation",
    security(("PureCloud OAuth" = []), ("Bearer" = [])),
    params(
        ("pageSize" = Option<i32>, Query, minimum = 1, maximum = 100,
            description = "Page size (default 25, at most 100)"),
        ("pageNumber" = Option<i32>, Query, minimum = 1, maximum = 1000000,
            description = "Page number (default 1)"),
    ),
    responses(
        (status = 200, description = "A page of requests.", body = GdprRequestEntityListing),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<EntityListing<GdprRequest>>, ApiError> {
    require(&caller, Permission::RequestView)?;
    let page = parse_page(
        query.page_size.as_deref(),
        query.page_number.as_deref(),
        25,
        100,
    )?;
    let (entities, total) = store::list(&state.pool, caller.org_id, page, &state.links).await?;
    let uri = |number: i64| {
        format!(
            "/api/v2/gdpr/requests?pageSize={}&pageNumber={number}",
            page.size
        )
    };
    Ok(Json(EntityListing::new(entities, page, total, uri)))
}

#[derive(Debug, Deserialize)]
pub struct ResultQuery {
    expires: Option<String>,
    signature: Option<String>,
}

/// Download an export archive
///
/// **Extension.** The target of `resultsUrl`: the ZIP archive of a completed `GDPR_EXPORT`
/// (a manifest, one JSON file per data service, CSV where the data is tabular). The signed link
/// is the credential (no bearer token), and it expires: GET the request again for a fresh one.
#[utoipa::path(
    get,
    path = "/api/v2/gdpr/requests/{requestId}/results/{file}",
    operation_id = "getGdprRequestResult",
    tag = "General Data Protection Regulation",
    params(
        ("requestId" = String, Path, description = "Request id"),
        ("file" = String, Path, description = "Archive file name"),
        ("expires" = i64, Query, description = "Expiry of the link (Unix time), as given"),
        ("signature" = String, Query, description = "Signature of the link, as given"),
    ),
    responses(
        (status = 200, description = "The archive.", content_type = "application/zip",
            body = [u8],
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"…\"`"))),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
pub async fn download(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
    Query(query): Query<ResultQuery>,
) -> Result<Response, ApiError> {
    let forged = || {
        ApiError::NotAuthorized(
            "This results link is not valid: use the resultsUrl of the request exactly as given."
                .into(),
        )
    };
    let id = Uuid::parse_str(&id).map_err(|_| forged())?;
    let expires: i64 = query
        .expires
        .as_deref()
        .and_then(|e| e.parse().ok())
        .ok_or_else(forged)?;
    let signature = query.signature.as_deref().ok_or_else(forged)?;
    if !store::verify(&state.links.key, id, &file, expires, signature) {
        return Err(forged());
    }
    if expires <= Utc::now().timestamp() {
        return Err(ApiError::NotAuthorized(
            "This results link has expired: GET the request again for a fresh resultsUrl.".into(),
        ));
    }
    let content: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT content FROM export_archives
          WHERE request_id = $1 AND file_name = $2 AND expires_at > now()",
    )
    .bind(id)
    .bind(&file)
    .fetch_optional(&state.pool)
    .await?;
    let content = content.ok_or_else(|| {
        ApiError::NotFound("The archive is no longer available (expired or erased).".into())
    })?;
    let disposition =
        HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")).map_err(|_| forged())?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from(content),
    )
        .into_response())
}

pub(super) fn request_not_found() -> ApiError {
    ApiError::NotFound("No GDPR request with that id exists in your organization.".into())
}

fn parse_bool(field: &str, raw: Option<&str>) -> Result<bool, ApiError> {
    match raw.map(|r| r.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::invalid_value(
            field,
            format!("The {field} query parameter must be true or false."),
        )),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= create::MAX_IDEMPOTENCY_KEY_CHARS)
        .ok_or_else(|| {
            ApiError::invalid_value(
                "Idempotency-Key",
                format!(
                    "The Idempotency-Key header must be 1 to {} visible ASCII characters.",
                    create::MAX_IDEMPOTENCY_KEY_CHARS
                ),
            )
        })?;
    Ok(Some(value.to_owned()))
}

fn create_error(e: CreateError, caller: &Caller) -> ApiError {
    match e {
        CreateError::Invalid { field, message } => ApiError::BadRequest {
            code: "invalid.value",
            message: if message.starts_with(char::is_uppercase) {
                message
            } else {
                format!("{field}: {message}")
            },
            details: vec![Detail {
                error_code: Some("invalid.value".into()),
                field_name: Some(field),
                entity_id: None,
                entity_name: None,
            }],
        },
        CreateError::UnknownId(message) => ApiError::NotFound(message),
        CreateError::Ambiguous(candidates) => {
            let people = candidates.len();
            let shown = caller.has(Permission::SubjectView).then_some(candidates);
            ApiError::Conflict {
                message: format!(
                    "The subject matches {people} different people, and erasing the wrong person cannot be undone. Name the person by id (userId, externalContactId, dialerContactId or journeyCustomer) or add an identifier only they have (an email address or phone number).{}",
                    if shown.is_some() {
                        " The candidates are listed in `candidates`."
                    } else {
                        " A client with gdpr:subject:view sees the candidates here."
                    }
                ),
                candidates: shown,
            }
        }
        CreateError::IdempotencyMismatch => ApiError::Conflict {
            message: "This Idempotency-Key was already used for a different request; use a new key for a new request.".into(),
            candidates: None,
        },
        CreateError::RetryLater => ApiError::Unavailable(
            "An identical request finished while this one was being accepted; submit it again.".into(),
        ),
        CreateError::Database(e) => e.into(),
    }
}
