//! The HTTP surface: one file per resource, the error mapping, extractors and middleware.

pub mod error;
pub mod extract;
pub mod health;
pub mod index;
pub mod middleware;
pub mod oauth;
pub mod paging;
pub mod requests;
pub mod subjects;

use std::future::Future;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::state::AppState;
use error::ApiError;

/// The whole API, shared by `gdprd serve` and the tests.
pub fn router(state: AppState) -> Router {
    let index_limit = state.settings.index_max_body_bytes;
    let body_limit = state.settings.max_body_bytes;
    let bulk_index = Router::new()
        .route("/api/v2/gdpr/index/subjects", post(index::bulk_write))
        .layer(DefaultBodyLimit::max(index_limit));
    let api = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/oauth/token", post(oauth::token))
        .route("/api/v2/tokens/me", delete(oauth::revoke))
        .route("/api/v2/gdpr/subjects", get(subjects::search))
        .route(
            "/api/v2/gdpr/requests",
            post(requests::create).get(requests::list),
        )
        .route("/api/v2/gdpr/requests/{requestId}", get(requests::get))
        .route(
            "/api/v2/gdpr/requests/{requestId}/results/{file}",
            get(requests::download),
        )
        .route(
            "/api/v2/gdpr/index/subjects/{kind}/{key}",
            put(index::put_one).delete(index::delete_one),
        )
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(bulk_index)
        .fallback(not_found)
        .with_state(state)
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(middleware::request_span)
                .on_failure(()),
        );
    // Outside the routes, so that it also sees what the router adds after them (the `Allow`
    // header of a 405).
    Router::new()
        .fallback_service(api)
        .layer(axum::middleware::from_fn(middleware::correlation))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("The requested resource was not found.".into())
}

/// Serves the API on `listener` until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
