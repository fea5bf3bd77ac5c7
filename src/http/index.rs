//! Index writes: `POST /api/v2/gdpr/index/subjects` (bulk, all or nothing), and `PUT` / `DELETE`
//! of one record at `/api/v2/gdpr/index/subjects/{kind}/{key}`.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::error::ApiError;
use super::extract::{Json, body_bytes, require, require_content_type};
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

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteSummary {
    written: u64,
}

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
