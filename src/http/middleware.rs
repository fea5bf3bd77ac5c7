//! Cross-cutting HTTP concerns: the correlation id, the `ErrorBody` rendering of every error
//! response, and the request span (which never records a URI: query strings carry identifiers).

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Span;
use uuid::Uuid;

use super::error::body_for_status;
use crate::wire::ErrorBody;

pub const CORRELATION_HEADER: HeaderName = HeaderName::from_static("inin-correlation-id");

/// The id of one HTTP exchange: `contextId` of its errors, `ININ-Correlation-Id` of its response,
/// and a field of every log line it causes.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// Assigns the correlation id (a client's own `ININ-Correlation-Id` is kept when it is a plain
/// token), renders error bodies with it, and echoes it on every response.
pub async fn correlation(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_plain_token(v))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    request.extensions_mut().insert(CorrelationId(id.clone()));

    let mut response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        response = render_error(response, &id);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    response
}

fn is_plain_token(v: &str) -> bool {
    (8..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn render_error(response: Response, context_id: &str) -> Response {
    let (mut parts, _) = response.into_parts();
    let mut body = parts.extensions.remove::<ErrorBody>().unwrap_or_else(|| {
        let allow = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok());
        body_for_status(parts.status, allow)
    });
    body.context_id = Some(context_id.to_owned());
    let json = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(json))
}

/// The span of one HTTP exchange: method, route template and correlation id. Health checks are
/// logged at debug level.
pub fn request_span(request: &Request) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let correlation_id = request
        .extensions()
        .get::<CorrelationId>()
        .map(|c| c.0.as_str())
        .unwrap_or("");
    if route == "/healthz" || route == "/readyz" {
        tracing::debug_span!("http", method = %request.method(), route, correlation_id)
    } else {
        tracing::info_span!("http", method = %request.method(), route, correlation_id)
    }
}

/// The response of a panic caught by the panic layer: a plain 500, rendered as an `ErrorBody`.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}
