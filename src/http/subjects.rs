//! `GET /api/v2/gdpr/subjects?searchType=&searchValue=`: every index record whose normalized
//! identifier of that type equals the normalized value.

use axum::extract::State;
use deadpool::managed::Object;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, database_unavailable};
use super::extract::{Json, Query, SearchCaller, require};
use super::openapi::{
    BadRequest, Forbidden, GatewayTimeout, GdprSubjectEntityListing, InternalServerError,
    ServiceUnavailable, TooManyRequests, Unauthorized,
};
use super::paging::parse_page;
use crate::auth::cache::TokenDigest;
use crate::auth::tokens::{self, AuthError};
use crate::auth::{Caller, Permission};
use crate::db;
use crate::index::{SearchType, store};
use crate::state::AppState;
use crate::wire::{EntityListing, StoredSubject};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchQuery {
    search_type: Option<String>,
    search_value: Option<String>,
    page_size: Option<String>,
    page_number: Option<String>,
}

/// Get GDPR subjects
///
/// Every index record whose identifier of type `searchType` equals `searchValue` once both are
/// normalized (phone numbers to E.164, email addresses case-folded, names and addresses
/// case- and accent-folded with white space collapsed, social handles without a leading `@`).
/// Members of a merge set come back one by one, each with its `canonicalContactId`. Results
/// come by kind of record (dialer contacts, external contacts, journey customers, users) and,
/// within a kind, by the record's own id, so pages are stable. Requires the permission
/// `gdpr:subject:view`.
#[utoipa::path(
    get,
    path = "/api/v2/gdpr/subjects",
    operation_id = "getGdprSubjects",
    tag = "General Data Protection Regulation",
    security(("PureCloud OAuth" = []), ("Bearer" = [])),
    params(
        ("searchType" = SearchType, Query, description = "Search type"),
        ("searchValue" = String, Query, description = "Search value", example = "ana.garcia@example.com"),
        ("pageSize" = Option<i64>, Query, minimum = 1,
            description = "**Extension.** Results per page, from 1 to the server's \
                `GDPRD_SUBJECT_SEARCH_MAX_RESULTS` (default 100, which is also the default page \
                size)."),
        ("pageNumber" = Option<i64>, Query, minimum = 1, maximum = 1000000,
            description = "**Extension.** Page number, from 1 (default 1)."),
    ),
    responses(
        (status = 200, description = "The matching subjects.",
            body = GdprSubjectEntityListing),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    caller: SearchCaller,
    Query(query): Query<SearchQuery>,
) -> Result<Json<EntityListing<StoredSubject>>, ApiError> {
    let unconfirmed = match caller {
        SearchCaller::Confirmed(caller) => return run(&state, &caller, &query, None).await,
        SearchCaller::Unconfirmed(unconfirmed) => unconfirmed,
    };
    let caller = &unconfirmed.caller;
    match run(&state, caller, &query, Some(&unconfirmed.digest)).await {
        // The database failed (the search has already had its second try).
        Err(e @ (ApiError::Unavailable(_) | ApiError::Internal(_))) => Err(e),
        Ok(listing) => Ok(listing),
        // Not confirmed, or refused: look the token up as every other endpoint does, and answer
        // as it would (an invalid token is a 401 before anything else).
        Err(_) => {
            let caller =
                tokens::authenticate_digest(&state.pool, &state.tokens, &unconfirmed.digest)
                    .await?;
            run(&state, &caller, &query, None).await
        }
    }
}

/// The search for a caller; with `confirm`, the digest of a token its statement must confirm,
/// else the answer is 401.
async fn run(
    state: &AppState,
    caller: &Caller,
    query: &SearchQuery,
    confirm: Option<&TokenDigest>,
) -> Result<Json<EntityListing<StoredSubject>>, ApiError> {
    require(caller, Permission::SubjectView)?;
    let search_type = parse_search_type(query.search_type.as_deref())?;
    let raw_value = query
        .search_value
        .as_deref()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            ApiError::invalid_value(
                "searchValue",
                "The searchValue query parameter is required and must not be blank.",
            )
        })?;
    let value = state
        .normalizer
        .normalize(search_type, raw_value)
        .map_err(|e| {
            ApiError::invalid_value(
                "searchValue",
                format!("The searchValue is not a valid {search_type} value: {e}."),
            )
        })?;
    let max = state.settings.subject_search_max_results;
    let page = parse_page(
        query.page_size.as_deref(),
        query.page_number.as_deref(),
        max,
        max,
    )?;
    // A failed connection does not go back to the pool. One that PostgreSQL closed while it sat
    // idle fails its next statement: the search only reads, so it runs once more on another.
    let mut retried = false;
    let found = loop {
        let mut conn = state.search.get().await.map_err(db::search_pool_error)?;
        match store::search(&mut conn, caller.org_id, search_type, &value, page, confirm).await {
            Ok(found) => break found,
            Err(e) => {
                drop(Object::take(conn));
                if retried || !database_unavailable(&e) {
                    return Err(e.into());
                }
                retried = true;
            }
        }
    };
    let (entities, total) = found.ok_or(ApiError::from(AuthError::Expired))?;
    let uri = |number: i64| {
        let query = serde_urlencoded::to_string(UriQuery {
            search_type: search_type.as_str(),
            search_value: raw_value,
            page_size: page.size,
            page_number: number,
        })
        .unwrap_or_default();
        format!("/api/v2/gdpr/subjects?{query}")
    };
    Ok(Json(EntityListing::new(entities, page, total, uri)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UriQuery<'a> {
    search_type: &'a str,
    search_value: &'a str,
    page_size: i64,
    page_number: i64,
}

fn parse_search_type(raw: Option<&str>) -> Result<SearchType, ApiError> {
    let allowed = SearchType::allowed();
    let raw = raw
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            ApiError::invalid_value(
                "searchType",
                format!(
                    "The searchType query parameter is required. Allowable values are: {allowed}"
                ),
            )
        })?;
    raw.to_ascii_uppercase().parse().map_err(|_| {
        let shown: String = raw.chars().take(40).collect();
        ApiError::invalid_value(
            "searchType",
            format!("Value [{shown}] is not valid for field type [searchType]. Allowable values are: {allowed}"),
        )
    })
}
