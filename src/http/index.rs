//! Index writes: `POST /api/v2/gdpr/index/subjects` (bulk, all or nothing), and `PUT` / `DELETE`
//! of one record at `/api/v2/gdpr/index/subjects/{kind}/{key}`.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Json, body_bytes, require, require_content_type};
use super::openapi::{
    BadRequest, Forbidden, GatewayTimeout, IndexRecordKind, InternalServerError, NotFound,
    PayloadTooLarge, ServiceUnavailable, TooManyRequests, Unauthorized, UnsupportedMediaType,
};
use crate::auth::{Caller, Permission};
use crate::index::import::{DuplicateCheck, RecordError, parse_array, parse_ndjson};
use crate::index::store::{self, Staging};
use crate::index::{IndexRecord, RecordKey, SubjectKind};
use crate::state::AppState;
use crate::wire::{Detail, GdprSubject};

const NDJSON: [&str; 3] = [
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
];

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(description = "**Extension.** The outcome of an index write.")]
pub struct WriteSummary {
    /// Records written (created or replaced).
    written: u64,
}

/// Write index records (bulk)
///
/// **Extension.** Creates or replaces index records, all or nothing: a JSON array, or NDJSON
/// (`application/x-ndjson`, also `application/ndjson` or `application/jsonl`: one record per
/// line). A record is a `GDPRSubject` naming exactly one id (`userId`, `externalContactId`,
/// `dialerContactId` or `journeyCustomer`), plus `canonicalContactId` for a member of a merge
/// set. At most `GDPRD_INDEX_MAX_RECORDS` records (default 10 000) per call; use
/// `gdprd index import` for larger loads. Requires the permission `gdpr:index:write`.
#[utoipa::path(
    post,
    path = "/api/v2/gdpr/index/subjects",
    operation_id = "postGdprIndexSubjects",
    tag = "Subject index",
    security(("PureCloud OAuth" = []), ("Bearer" = [])),
    request_body(
        description = "Index records",
        content(
            (Vec<GdprSubject> = "application/json", example = json!([{
                "externalContactId": "8f8a2c4e-3b1d-4e57-9a60-2f1c0d7b5e21",
                "canonicalContactId": "8f8a2c4e-3b1d-4e57-9a60-2f1c0d7b5e21",
                "name": "Ana García",
                "emailAddresses": ["ana.garcia@example.com"],
                "phoneNumbers": ["+15550100001"]
            }])),
            (String = "application/x-ndjson",
                example = json!("{\"userId\":\"u-1\",\"name\":\"Jonas Müller\"}\n")),
        )
    ),
    responses(
        (status = 200, description = "The records are written.", body = WriteSummary),
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
pub async fn bulk_write(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Json<WriteSummary>, ApiError> {
    require(&caller, Permission::IndexWrite)?;
    let media = require_content_type(
        request.headers(),
        &["application/json", NDJSON[0], NDJSON[1], NDJSON[2]],
        "application/json (an array of records) or application/x-ndjson (one record per line)",
    )?;
    let limit = state.settings.index_max_body_bytes;
    let body = body_bytes(request, &state, limit).await?;
    let records = if NDJSON.contains(&media.as_str()) {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("The NDJSON body is not valid UTF-8."))?;
        parse_ndjson(text, &state.normalizer)
    } else {
        parse_array(&body, &state.normalizer)
    }
    .map_err(record_error)?;
    let max = state.settings.index_max_records;
    if records.len() > max {
        return Err(ApiError::bad_request(format!(
            "One request may write at most {max} records; this one has {}. Split it, or use `gdprd index import` for large loads.",
            records.len()
        )));
    }
    let mut duplicates = DuplicateCheck::default();
    let ndjson = NDJSON.contains(&media.as_str());
    for (i, record) in records.iter().enumerate() {
        let location = if ndjson {
            format!("record {} of the NDJSON body", i + 1)
        } else {
            format!("record {}", i + 1)
        };
        duplicates.check(&location, record).map_err(record_error)?;
    }
    let written = write(&state, &caller, &records).await?;
    Ok(Json(WriteSummary { written }))
}

/// Write one index record
///
/// **Extension.** Creates or replaces the record at this path; its own id must match `key`.
/// Requires the permission `gdpr:index:write`.
#[utoipa::path(
    put,
    path = "/api/v2/gdpr/index/subjects/{kind}/{key}",
    operation_id = "putGdprIndexSubject",
    tag = "Subject index",
    security(("PureCloud OAuth" = []), ("Bearer" = [])),
    params(
        ("kind" = inline(IndexRecordKind), Path, description = "The kind of record"),
        ("key" = String, Path, description = "The record's id: for `dialerContacts` \
            `contactListId:id`, for `journeyCustomers` `type:id`"),
    ),
    request_body(content = GdprSubject, description = "The index record",
        example = json!({
            "userId": "6d1f3b9e-0c2a-4f7e-8b5d-93a4e2c1f0b7",
            "name": "Jonas Müller",
            "emailAddresses": ["jonas.mueller@corp.example"]
        })),
    responses(
        (status = 200, description = "The record as written.", body = GdprSubject),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
pub async fn put_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((kind, key)): Path<(String, String)>,
    Json(subject): Json<GdprSubject>,
) -> Result<Json<GdprSubject>, ApiError> {
    require(&caller, Permission::IndexWrite)?;
    let path_key = record_key(&kind, &key)?;
    let record = IndexRecord::parse(subject, &state.normalizer)
        .map_err(|e| ApiError::invalid_value(&e.field, format!("{}: {}", e.field, e.message)))?;
    if record.key != path_key {
        return Err(ApiError::bad_request(format!(
            "The record's own id does not match the path: PUT a {} record at /api/v2/gdpr/index/subjects/{}/{{its id}}.",
            record.key.kind.as_str(),
            record.key.kind.path_segment()
        )));
    }
    write(&state, &caller, std::slice::from_ref(&record)).await?;
    Ok(Json(record.subject))
}

/// Delete one index record
///
/// **Extension.** Removes the record from the index (not the data it points to: that is what
/// a `GDPR_DELETE` is for). Requires the permission `gdpr:index:write`.
#[utoipa::path(
    delete,
    path = "/api/v2/gdpr/index/subjects/{kind}/{key}",
    operation_id = "deleteGdprIndexSubject",
    tag = "Subject index",
    security(("PureCloud OAuth" = []), ("Bearer" = [])),
    params(
        ("kind" = inline(IndexRecordKind), Path, description = "The kind of record"),
        ("key" = String, Path, description = "The record's id: for `dialerContacts` \
            `contactListId:id`, for `journeyCustomers` `type:id`"),
    ),
    responses(
        (status = 204, description = "The record is removed."),
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
pub async fn delete_one(
    State(state): State<AppState>,
    caller: Caller,
    Path((kind, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    require(&caller, Permission::IndexWrite)?;
    let key = record_key(&kind, &key)?;
    let mut conn = state.pool.acquire().await?;
    if store::remove(&mut conn, caller.org_id, &key).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "No {} with that id is in the index.",
            key.kind.as_str()
        )))
    }
}

async fn write(
    state: &AppState,
    caller: &Caller,
    records: &[IndexRecord],
) -> Result<u64, ApiError> {
    let mut tx = state.pool.begin().await?;
    let mut staging = Staging::begin(&mut tx, caller.org_id).await?;
    staging.add(&mut tx, records).await?;
    let written = staging.merge(&mut tx).await?;
    tx.commit().await?;
    Ok(written)
}

fn record_key(kind: &str, key: &str) -> Result<RecordKey, ApiError> {
    let kind = SubjectKind::from_path_segment(kind).ok_or_else(|| {
        ApiError::NotFound(format!(
            "Unknown record kind [{}]: use users, externalContacts, dialerContacts (key contactListId:id) or journeyCustomers (key type:id).",
            kind.chars().take(40).collect::<String>()
        ))
    })?;
    let key = key.trim();
    if key.is_empty() {
        return Err(ApiError::invalid_value(
            "key",
            "The record id in the path is blank.",
        ));
    }
    // No record id holds one, and PostgreSQL text cannot hold a NUL.
    if key.chars().any(char::is_control) {
        return Err(ApiError::invalid_value(
            "key",
            "The record id in the path contains control characters.",
        ));
    }
    let key = match (kind, key.split_once(':')) {
        (SubjectKind::JourneyCustomer, Some((kind, id))) => {
            format!("{}:{}", kind.trim().to_lowercase(), id.trim())
        }
        _ => key.to_owned(),
    };
    Ok(RecordKey { kind, key })
}

fn record_error(e: RecordError) -> ApiError {
    ApiError::BadRequest {
        code: "invalid.value",
        message: format!("{}: {}: {}", e.location, e.field, e.message),
        details: vec![Detail {
            error_code: Some("invalid.value".into()),
            field_name: Some(e.field),
            entity_id: None,
            entity_name: Some(e.location),
        }],
    }
}
