//! `POST /oauth/token`: OAuth2 client credentials, as Genesys' login service takes them (HTTP
//! Basic `client_id:client_secret`, form body `grant_type=client_credentials`), and
//! `DELETE /api/v2/tokens/me`, which revokes the token it is called with.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{
    Basic, Json, basic_credentials, bearer_token, body_bytes, require_content_type,
};
use super::openapi::{
    BadRequest, GatewayTimeout, InternalServerError, PayloadTooLarge, ServiceUnavailable,
    TooManyRequests, Unauthorized, UnsupportedMediaType, schemas,
};
use crate::auth::tokens;
use crate::state::AppState;

/// The form body of `POST /oauth/token`.
#[derive(Deserialize, ToSchema)]
pub struct TokenForm {
    /// `client_credentials`.
    #[schema(schema_with = schemas::grant_type, required = true)]
    grant_type: Option<String>,
    /// The client id, when it is not sent with HTTP Basic.
    client_id: Option<String>,
    /// The client secret, when it is not sent with HTTP Basic.
    client_secret: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The bearer token: send it as `Authorization: Bearer <access_token>`.
    access_token: String,
    /// `bearer`.
    #[schema(examples("bearer"))]
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: u64,
}

/// Get an access token
///
/// OAuth2 client credentials, as Genesys' login service takes them: the client id and secret
/// with HTTP Basic (`client_id:client_secret`; or, failing that, as `client_id` and
/// `client_secret` form fields), and the form body `grant_type=client_credentials`.
#[utoipa::path(
    post,
    path = "/oauth/token",
    operation_id = "postOauthToken",
    tag = "OAuth",
    security(("Client credentials" = [])),
    request_body(
        content = TokenForm,
        content_type = "application/x-www-form-urlencoded",
        example = json!({"grant_type": "client_credentials"})
    ),
    responses(
        (status = 200, description = "The access token.", body = TokenResponse,
            example = json!({
                "access_token": "k3mYbqX0TzJ4oN6bPpM1rS2tUv5wXy8zA9BcDeFgHiQ",
                "token_type": "bearer",
                "expires_in": 86400
            })),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
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
    let form: TokenForm = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::bad_request(format!("The form body is malformed: {e}")))?;
    match form.grant_type.as_deref() {
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
fn credentials(headers: &HeaderMap, form: &TokenForm) -> Result<(String, String), ApiError> {
    match basic_credentials(headers) {
        Basic::Credentials { id, secret } => Ok((id, secret)),
        Basic::Malformed => Err(ApiError::BadCredentials),
        Basic::Absent if headers.contains_key(header::AUTHORIZATION) => Err(ApiError::bad_request(
            "Send the client credentials with HTTP Basic authentication (client_id:client_secret).",
        )),
        Basic::Absent => match (&form.client_id, &form.client_secret) {
            (Some(id), Some(secret)) => Ok((id.clone(), secret.clone())),
            _ => Err(ApiError::AuthenticationRequired),
        },
    }
}

/// Revoke the token
///
/// Revokes the bearer token this call is made with.
#[utoipa::path(
    delete,
    path = "/api/v2/tokens/me",
    operation_id = "deleteTokensMe",
    tag = "OAuth",
    security(("PureCloud OAuth" = []), ("Bearer" = [])),
    responses(
        (status = 204, description = "The token is revoked."),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 500, response = InternalServerError),
        (status = 503, response = ServiceUnavailable),
        (status = 504, response = GatewayTimeout),
    )
)]
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
