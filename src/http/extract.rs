//! Extractors whose rejections are Genesys `ErrorBody`s: JSON bodies, query strings, the bearer
//! token.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::auth::cache::Unconfirmed;
use crate::auth::{Caller, Permission, tokens};
use crate::state::AppState;
use crate::wire::{self, Detail, JsonError};

/// A JSON body (`Content-Type: application/json`), parsed with errors that name the field.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        require_content_type(req.headers(), &["application/json"], "application/json")?;
        let bytes = body_bytes(req, state, state.settings.max_body_bytes).await?;
        parse_json(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Reads the whole body, within the route's body limit (`limit`, for the error message).
pub async fn body_bytes<S: Send + Sync>(
    req: Request,
    state: &S,
    limit: usize,
) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|rejection| match rejection.status().as_u16() {
            413 => ApiError::PayloadTooLarge(limit),
            _ => ApiError::bad_request(format!("The request body could not be read: {rejection}")),
        })
}

/// The media type of a request (without parameters), lower-cased.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    (!essence.is_empty()).then_some(essence)
}

/// 415 unless the request's media type is one of `accepted` (or a `+json` type when JSON is).
pub fn require_content_type(
    headers: &HeaderMap,
    accepted: &[&str],
    advice: &str,
) -> Result<String, ApiError> {
    let media = media_type(headers);
    let json_ok = accepted.contains(&"application/json");
    match media {
        Some(m) if accepted.contains(&m.as_str()) => Ok(m),
        Some(m) if json_ok && m.starts_with("application/") && m.ends_with("+json") => Ok(m),
        Some(m) => Err(ApiError::UnsupportedMediaType(format!(
            "Unsupported Media Type - the Content-Type {m} is not accepted here; send {advice}."
        ))),
        None => Err(ApiError::UnsupportedMediaType(format!(
            "Unsupported Media Type - the request has no Content-Type header; send {advice}."
        ))),
    }
}

/// Parses a JSON body, naming the field whose value is wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    wire::parse_json(bytes).map_err(|e| match e {
        JsonError::Syntax(message) => {
            ApiError::bad_request(format!("The request body is not valid JSON: {message}"))
        }
        JsonError::Field { path, message } => ApiError::BadRequest {
            code: "bad.request",
            message: format!("Invalid value for field {path}: {message}"),
            details: vec![Detail {
                error_code: Some("invalid.value".into()),
                field_name: Some(path),
                entity_id: None,
                entity_name: None,
            }],
        },
    })
}

/// A query string parsed into `T`, with a 400 that says what is wrong.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        check_query(query)?;
        serde_urlencoded::from_str(query)
            .map(Query)
            .map_err(|e| ApiError::bad_request(format!("The query string is malformed: {e}")))
    }
}

/// Refuses what form decoding would silently paper over: a parameter given twice (which one
/// counts?) and percent-escapes that are not UTF-8 (they would decode to U+FFFD).
fn check_query(query: &str) -> Result<(), ApiError> {
    let mut seen: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |raw: &str| {
            percent_encoding::percent_decode_str(&raw.replace('+', " "))
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| {
                    ApiError::bad_request(
                        "The query string is malformed: a percent-escape does not encode UTF-8 text.",
                    )
                })
        };
        let key = decode(key)?;
        decode(value)?;
        if seen.contains(&key) {
            let shown: String = key.chars().take(40).collect();
            return Err(ApiError::bad_request(format!(
                "The query parameter {shown} is given more than once; give it once."
            )));
        }
        seen.push(key);
    }
    Ok(())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The rate limiter has already authenticated the token.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let token = bearer_token(&parts.headers).ok_or(ApiError::AuthenticationRequired)?;
        Ok(tokens::authenticate(&state.pool, &state.tokens, token).await?)
    }
}

/// The caller of the subject search: one the database confirmed for this request, or one taken
/// from the token cache, which the search's own statement must confirm (see
/// [`crate::auth::cache`]).
pub enum SearchCaller {
    Confirmed(Caller),
    Unconfirmed(Unconfirmed),
}

impl FromRequestParts<AppState> for SearchCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(unconfirmed) = parts.extensions.get::<Unconfirmed>() {
            return Ok(SearchCaller::Unconfirmed(unconfirmed.clone()));
        }
        Caller::from_request_parts(parts, state)
            .await
            .map(SearchCaller::Confirmed)
    }
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What an `Authorization` header says about HTTP Basic credentials.
pub enum Basic {
    /// No header, or another scheme.
    Absent,
    /// The Basic scheme, but not `base64(id:secret)` of UTF-8 text.
    Malformed,
    Credentials {
        id: String,
        secret: String,
    },
}

/// Reads HTTP Basic credentials (`client_id:client_secret`) from a request's headers.
pub fn basic_credentials(headers: &HeaderMap) -> Basic {
    use base64::Engine;
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Basic::Absent;
    };
    let Some((scheme, encoded)) = value.to_str().ok().and_then(|v| v.trim().split_once(' ')) else {
        return Basic::Malformed;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Basic::Absent;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((id, secret)) => Basic::Credentials {
            id: id.to_owned(),
            secret: secret.to_owned(),
        },
        None => Basic::Malformed,
    }
}

/// 403 `missing.any.permissions` unless the caller holds `permission`.
pub fn require(caller: &Caller, permission: Permission) -> Result<(), ApiError> {
    if caller.has(permission) {
        Ok(())
    } else {
        Err(ApiError::MissingPermission(permission))
    }
}
