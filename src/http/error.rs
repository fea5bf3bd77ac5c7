//! The one place where errors become Genesys `ErrorBody` responses.
//!
//! A handler returns an [`ApiError`]; its response carries the `ErrorBody` as an extension and
//! [`super::middleware::correlation`] renders it with the request's `contextId`. Internal causes
//! are logged here, inside the request's span, and never sent to the client.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::auth::Permission;
use crate::auth::tokens::AuthError;
use crate::wire::{Detail, ErrorBody};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 with a Genesys code (`bad.request`, `invalid.value`, …).
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        details: Vec<Detail>,
    },
    #[error("no bearer token")]
    AuthenticationRequired,
    #[error("bad credentials")]
    BadCredentials,
    #[error("credentials expired")]
    CredentialsExpired,
    #[error("missing permission {0}")]
    MissingPermission(Permission),
    #[error("{0}")]
    NotFound(String),
    /// 403 `not.authorized` (a result link that is forged or expired).
    #[error("{0}")]
    NotAuthorized(String),
    /// 409 `conflict`, with the candidate subjects of the ambiguity guard when they may be shown.
    #[error("{message}")]
    Conflict {
        message: String,
        candidates: Option<Vec<Vec<crate::wire::GdprSubject>>>,
    },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("body over {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code: "bad.request",
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// 400 `invalid.value` naming the field to fix.
    pub fn invalid_value(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code: "invalid.value",
            message: message.into(),
            details: vec![Detail {
                error_code: Some("invalid.value".into()),
                field_name: Some(field.into()),
                entity_id: None,
                entity_name: None,
            }],
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::AuthenticationRequired
            | ApiError::BadCredentials
            | ApiError::CredentialsExpired => StatusCode::UNAUTHORIZED,
            ApiError::MissingPermission(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NotAuthorized(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> ErrorBody {
        let status = self.status();
        let mut params = BTreeMap::new();
        let (code, message, details) = match self {
            ApiError::BadRequest {
                code,
                message,
                details,
            } => (*code, message.clone(), details.clone()),
            ApiError::AuthenticationRequired => (
                "authentication.required",
                "No authentication bearer token specified in authorization header.".into(),
                vec![],
            ),
            ApiError::BadCredentials => (
                "bad.credentials",
                "Invalid login credentials.".into(),
                vec![],
            ),
            ApiError::CredentialsExpired => (
                "credentials.expired",
                "The supplied credentials are expired and cannot be used.".into(),
                vec![],
            ),
            ApiError::MissingPermission(p) => {
                params.insert("permissions".into(), p.as_str().into());
                (
                    "missing.any.permissions",
                    format!(
                        "Unable to perform the requested action. You must have at least one of \
                         the following permissions assigned: [{p}]"
                    ),
                    vec![],
                )
            }
            ApiError::NotFound(message) => ("not.found", message.clone(), vec![]),
            ApiError::NotAuthorized(message) => ("not.authorized", message.clone(), vec![]),
            ApiError::Conflict { message, .. } => ("conflict", message.clone(), vec![]),
            ApiError::UnsupportedMediaType(message) => {
                ("unsupported.media.type", message.clone(), vec![])
            }
            ApiError::PayloadTooLarge(limit) => (
                "request.entity.too.large",
                format!("The request is over the size limit. Maximum bytes: {limit}"),
                vec![],
            ),
            ApiError::Unavailable(message) => ("service.unavailable", message.clone(), vec![]),
            ApiError::Internal(_) => (
                "internal.server.error",
                "The server encountered an unexpected condition which prevented it from \
                 fulfilling the request."
                    .into(),
                vec![],
            ),
        };
        ErrorBody {
            message,
            code: code.into(),
            status: status.as_u16(),
            context_id: None,
            entity_id: None,
            entity_name: None,
            message_params: params,
            details,
            errors: vec![],
            limit: None,
            candidates: match self {
                ApiError::Conflict { candidates, .. } => candidates.clone(),
                _ => None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %format!("{cause:#}"), "request failed");
        }
        error_response(self.status(), self.body())
    }
}

/// A response carrying `body` for the correlation middleware to render.
pub fn error_response(status: StatusCode, body: ErrorBody) -> Response {
    let mut response = status.into_response();
    response.extensions_mut().insert(body);
    response
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        if database_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            return ApiError::Unavailable(
                "Service Unavailable - the database cannot be reached right now; retry later."
                    .into(),
            );
        }
        ApiError::Internal(e.into())
    }
}

/// Errors that mean the database is gone or going (connection lost, server shutting down or
/// starting), not that the request was wrong: the answer is 503, and a retry will do.
pub fn database_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exception; 57P01-57P03: shutdown, crash, cannot connect now.
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Missing => ApiError::AuthenticationRequired,
            AuthError::BadCredentials => ApiError::BadCredentials,
            AuthError::Expired => ApiError::CredentialsExpired,
            AuthError::Database(e) => e.into(),
        }
    }
}

/// The generic body for a status produced outside our handlers (405 from the router, a
/// panic caught by the panic layer, …).
pub fn body_for_status(status: StatusCode, allow: Option<&str>) -> ErrorBody {
    let (code, message) = match status.as_u16() {
        400 => ("bad.request", "The request could not be understood by the server due to malformed syntax.".to_owned()),
        404 => ("not.found", "The requested resource was not found.".to_owned()),
        405 => (
            "method.not.allowed",
            match allow {
                Some(allow) => format!("The method is not allowed on this resource. Allowed: {allow}"),
                None => "The method is not allowed on this resource.".to_owned(),
            },
        ),
        408 => ("request.timeout", "The client did not produce a request within the server timeout limit.".to_owned()),
        413 => ("request.entity.too.large", "The request is over the size limit.".to_owned()),
        415 => ("unsupported.media.type", "Unsupported Media Type - Unsupported or incorrect media type, such as an incorrect Content-Type value in the header.".to_owned()),
        429 => ("too.many.requests", "Rate limit exceeded the maximum.".to_owned()),
        503 => ("service.unavailable", "Service Unavailable - The server is currently unavailable (because it is overloaded or down for maintenance).".to_owned()),
        504 => ("request.timeout", "The request timed out.".to_owned()),
        s if s < 500 => ("bad.request", "The request could not be processed.".to_owned()),
        _ => ("internal.server.error", "The server encountered an unexpected condition which prevented it from fulfilling the request.".to_owned()),
    };
    ErrorBody {
        message,
        code: code.into(),
        status: status.as_u16(),
        context_id: None,
        entity_id: None,
        entity_name: None,
        message_params: BTreeMap::new(),
        details: vec![],
        errors: vec![],
        limit: None,
        candidates: None,
    }
}
