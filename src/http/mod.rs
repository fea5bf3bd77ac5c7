//! The HTTP surface: one file per resource, the error mapping, extractors and middleware.

pub mod callbacks;
pub mod error;
pub mod extract;
pub mod health;
pub mod index;
pub mod middleware;
pub mod notifications;
pub mod oauth;
pub mod openapi;
pub mod paging;
pub mod requests;
pub mod subjects;

use std::future::Future;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tower::{BoxError, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::ratelimit::{self, Class};
use crate::state::AppState;
use error::{ApiError, body_for_status, error_response};

/// The whole API, shared by `gdprd serve` and the tests.
pub fn router(state: AppState) -> Router {
    let index_limit = state.settings.index_max_body_bytes;
    let body_limit = state.settings.max_body_bytes;
    let timeout = Duration::from_secs(state.settings.request_timeout_secs);
    let max_in_flight = state.settings.max_in_flight;
    let limited = |class: Class, (schemas, paths, route): UtoipaMethodRouter<AppState>| {
        let route = route.route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), class),
            ratelimit::limit,
        ));
        (schemas, paths, route)
    };
    let (documented, doc) = documented(limited, body_limit, index_limit).split_for_parts();
    let api = documented
        .merge(openapi::routes(&openapi::finish(doc)))
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
    // The global guards wrap the whole router once, so that their limits are shared by every
    // route.
    Router::new()
        .fallback_service(api)
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .load_shed()
                .concurrency_limit(max_in_flight),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn(middleware::correlation))
}

/// Load shedding: past the concurrency limit a request is refused at once with 503 and
/// `Retry-After`, rather than queued until it times out.
async fn overloaded(error: BoxError) -> Response {
    if error.is::<tower::load_shed::error::Overloaded>() {
        let mut body = body_for_status(StatusCode::SERVICE_UNAVAILABLE, None);
        body.message =
            "Service Unavailable - the server is at its limit of requests in flight; retry in a second."
                .into();
        let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, body);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    tracing::error!(error = %error, "request failed in a middleware");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// The documented routes: each handler's `#[utoipa::path]` gives both its route and its
/// OpenAPI operation, so the two cannot drift apart. `limited` puts a route under its rate limit
/// (in [`router`]) or leaves it as it is (in [`openapi::spec`], which has no state).
pub fn documented(
    limited: impl Fn(Class, UtoipaMethodRouter<AppState>) -> UtoipaMethodRouter<AppState>,
    body_limit: usize,
    index_limit: usize,
) -> OpenApiRouter<AppState> {
    // Bulk index writes and job results (which may carry an export) take large bodies.
    let bulk_index = OpenApiRouter::new()
        .routes(limited(Class::IndexWrite, routes!(index::bulk_write)))
        .routes(limited(Class::IndexWrite, routes!(callbacks::job_result)))
        .layer(DefaultBodyLimit::max(index_limit));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(limited(Class::Token, routes!(oauth::token)))
        .routes(limited(Class::Token, routes!(oauth::revoke)))
        .routes(limited(Class::Read, routes!(subjects::search)))
        .routes(limited(Class::Create, routes!(requests::create)))
        .routes(limited(Class::Read, routes!(requests::list)))
        .routes(limited(Class::Read, routes!(requests::get)))
        .routes(limited(Class::Read, routes!(requests::download)))
        .routes(limited(Class::Read, routes!(notifications::delivery_log)))
        .routes(limited(Class::Read, routes!(notifications::get_endpoint)))
        .routes(limited(
            Class::Create,
            routes!(notifications::put_endpoint, notifications::delete_endpoint),
        ))
        .routes(limited(Class::Create, routes!(notifications::rotate)))
        .routes(limited(
            Class::IndexWrite,
            routes!(index::put_one, index::delete_one),
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .merge(bulk_index)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("The requested resource was not found.".into())
}

/// Serves the API on `listener` until `shutdown` completes, then lets in-flight requests finish.
///
/// The drain is bounded: every request in flight has been answered (or timed out with 504) one
/// request timeout after the signal, and a connection still open then (a client that sent half
/// of its headers and nothing more) must not keep the process from exiting.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.rate_limits.clone();
    let sweeper = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            limits.retain_recent();
        }
    });
    let drain = Duration::from_secs(state.settings.request_timeout_secs) + Duration::from_secs(1);
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = signalled.send(());
    };
    let served = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown);
    let drained = async move {
        if on_signal.await.is_ok() {
            tokio::time::sleep(drain).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let served = tokio::select! {
        served = served => served,
        () = drained => {
            tracing::warn!(
                seconds = drain.as_secs(),
                "connections still open after the shutdown drain; closing them"
            );
            Ok(())
        }
    };
    sweeper.abort();
    served
}
