//! `GET /api/v2/gdpr/subjects?searchType=&searchValue=`: every index record whose normalized
//! identifier of that type equals the normalized value.

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Json, Query, require};
use super::paging::parse_page;
use crate::auth::{Caller, Permission};
use crate::index::{SearchType, store};
use crate::state::AppState;
use crate::wire::{EntityListing, GdprSubject};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchQuery {
    search_type: Option<String>,
    search_value: Option<String>,
    page_size: Option<String>,
    page_number: Option<String>,
}

pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<SearchQuery>,
) -> Result<Json<EntityListing<GdprSubject>>, ApiError> {
    require(&caller, Permission::SubjectView)?;
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
    let mut conn = state.pool.acquire().await?;
    let (entities, total) =
        store::search(&mut conn, caller.org_id, search_type, &value, page).await?;
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
