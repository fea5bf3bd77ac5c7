//! `POST /oauth/token`: OAuth2 client credentials, as Genesys' login service takes them (HTTP
//! Basic `client_id:client_secret`, form body `grant_type=client_credentials`), and
//! `DELETE /api/v2/tokens/me`, which revokes the token it is called with.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use serde::Serialize;

use super::error::ApiError;
use super::extract::{Json, bearer_token, body_bytes, require_content_type};
use crate::auth::tokens;
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

pub async fn token(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<TokenResponse>, ApiError> {
    let headers = request.headers().clone();
    require_content_type(
        &headers,
        &["application/x-www-form-urlencoded"],
        "application/x-www-form-urlencoded with grant_type=client_credentials",
    )?;
    let body = body_bytes(request, &state, state.settings.max_body_bytes).await?;
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::bad_request(format!("The form body is malformed: {e}")))?;
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return Err(ApiError::invalid_value(
                "grant_type",
                "Only grant_type=client_credentials is supported.",
            ));
        }
        None => {
            return Err(ApiError::invalid_value(
                "grant_type",
                "The form body needs grant_type=client_credentials.",
            ));
        }
    }
    let (client_id, secret) = credentials(&headers, &form)?;
    let issued =
        tokens::issue(&state.pool, &client_id, &secret, state.settings.token_ttl()).await?;
    Ok(Json(TokenResponse {
        access_token: issued.access_token,
        token_type: "bearer",
        expires_in: issued.expires_in,
    }))
}

/// The client id and secret, from HTTP Basic or, failing that, from the form body (RFC 6749 2.3.1).
fn credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(String, String), ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| ApiError::BadCredentials)?;
        let (scheme, encoded) = value
            .trim()
            .split_once(' ')
            .ok_or(ApiError::BadCredentials)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(ApiError::bad_request(
                "Send the client credentials with HTTP Basic authentication (client_id:client_secret).",
            ));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| ApiError::BadCredentials)?;
        let decoded = String::from_utf8(decoded).map_err(|_| ApiError::BadCredentials)?;
        let (id, secret) = decoded.split_once(':').ok_or(ApiError::BadCredentials)?;
        return Ok((id.to_owned(), secret.to_owned()));
    }
    match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Ok((id.clone(), secret.clone())),
        _ => Err(ApiError::AuthenticationRequired),
    }
}

pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let token = bearer_token(&headers).ok_or(ApiError::AuthenticationRequired)?;
    if tokens::revoke(&state.pool, token).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::BadCredentials)
    }
}
