//! `pageSize` / `pageNumber` query parameters, validated.

use super::error::ApiError;
use crate::wire::Page;

/// Parses paging parameters: `pageSize` from 1 to `max` (default `default_size`), `pageNumber`
/// from 1 (default 1).
pub fn parse_page(
    size: Option<&str>,
    number: Option<&str>,
    default_size: i64,
    max: i64,
) -> Result<Page, ApiError> {
    let size = parse_bounded("pageSize", size, default_size, 1, max)?;
    let number = parse_bounded("pageNumber", number, 1, 1, 1_000_000)?;
    Ok(Page { size, number })
}

fn parse_bounded(
    field: &str,
    raw: Option<&str>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ApiError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(default);
    };
    match raw.parse::<i64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ApiError::invalid_value(
            field,
            format!(
                "Value [{}] is not valid for field type [{field}]. It must be a whole number from {min} to {max}.",
                truncate(raw)
            ),
        )),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}
