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
    };
    let submission = Submission {
        body,
        delete_confirmed,
        idempotency_key,
    };
    let Accepted { id, created } = create::submit(&state.pool, &ctx, &caller, submission)
        .await
        .map_err(|e| create_error(e, &caller))?;
    let request = store::get(&state.pool, caller.org_id, id, &state.links)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("an accepted request vanished")))?;
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(request)))
}

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

/// An export archive, for whoever holds a valid signed link (no bearer token: the link is the
/// credential, and it expires).
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

fn request_not_found() -> ApiError {
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
        CreateError::Database(e) => e.into(),
    }
}
