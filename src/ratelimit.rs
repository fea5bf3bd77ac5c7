//! Rate limits per API client and per class of endpoint (token, reads, request creation, index
//! writes), GCRA from the `governor` crate. Every limited response carries Genesys'
//! `inin-ratelimit-*` headers; a throttled call gets 429 `too.many.requests` with `Retry-After`
//! and the `limit` object.
//!
//! The limits are per instance: with N instances a client gets up to N times its limit. The
//! README says how to size them for that.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::auth::cache::Unconfirmed;
use crate::auth::digest;
use crate::auth::tokens::{self, AuthError};
use crate::http::error::{ApiError, body_for_status, error_response};
use crate::http::extract::{Basic, basic_credentials, bearer_token};
use crate::state::AppState;
use crate::wire::Limit;

/// A class of endpoints sharing one limit per client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Token,
    Read,
    Create,
    IndexWrite,
}

impl Class {
    /// The `limit.key` of a 429, after Genesys' `*.rate.per.minute` keys.
    fn key(self) -> &'static str {
        match self {
            Class::Token => "client.credentials.token.rate.per.minute",
            Class::Read => "gdpr.reads.rate.per.minute",
            Class::Create => "gdpr.requests.create.rate.per.minute",
            Class::IndexWrite => "gdpr.index.writes.rate.per.minute",
        }
    }
}

/// Requests per minute and client, per class.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub token: u32,
    pub read: u32,
    pub create: u32,
    pub index_write: u32,
}

type Limiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

struct Bucket {
    per_minute: NonZeroU32,
    limiter: Limiter,
}

/// The limiters of one instance.
#[derive(Clone)]
pub struct RateLimits {
    buckets: Arc<[Bucket; 4]>,
}

impl RateLimits {
    pub fn new(limits: Limits) -> RateLimits {
        let bucket = |per_minute: u32| {
            let per_minute = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
            Bucket {
                per_minute,
                limiter: RateLimiter::keyed(Quota::per_minute(per_minute))
                    .with_middleware::<StateInformationMiddleware>(),
            }
        };
        RateLimits {
            buckets: Arc::new([
                bucket(limits.token),
                bucket(limits.read),
                bucket(limits.create),
                bucket(limits.index_write),
            ]),
        }
    }

    fn bucket(&self, class: Class) -> &Bucket {
        &self.buckets[class as usize]
    }

    /// Forgets clients idle long enough to be back at a full bucket (keeps memory bounded).
    pub fn retain_recent(&self) {
        for bucket in self.buckets.iter() {
            bucket.limiter.retain_recent();
        }
    }
}

/// What a check decided, in the terms of the `inin-ratelimit-*` headers.
struct Verdict {
    allowed: bool,
    /// Requests counted against the limit in the current minute.
    count: u32,
    limit: u32,
    /// Seconds until the bucket is full again (or, when refused, until the next call passes).
    reset_secs: u64,
}

fn check(bucket: &Bucket, key: &str) -> Verdict {
    let limit = bucket.per_minute.get();
    let seconds_per_call = 60.0 / f64::from(limit);
    match bucket.limiter.check_key(&key.to_owned()) {
        Ok(snapshot) => {
            let count = limit - snapshot.remaining_burst_capacity().min(limit);
            Verdict {
                allowed: true,
                count,
                limit,
                reset_secs: (f64::from(count) * seconds_per_call).ceil() as u64,
            }
        }
        Err(not_until) => {
            let wait: Duration = not_until.wait_time_from(DefaultClock::default().now());
            Verdict {
                allowed: false,
                count: limit,
                limit,
                reset_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        }
    }
}

/// The middleware of one class. Authenticated calls count against their client; others against
/// their address. The caller it authenticates is handed on, so the token is looked up once (or,
/// for a token in the token cache, not here at all).
pub async fn limit(
    State((state, class)): State<(AppState, Class)>,
    mut request: Request,
    next: Next,
) -> Response {
    let key = match class {
        Class::Token => basic_client_id(request.headers()),
        _ => None,
    };
    let key = match key {
        Some(key) => Some(key),
        None => match bearer_token(request.headers()).map(digest) {
            Some(token) => match state.tokens.get(&token) {
                // A token seen lately counts against its client at once; the handler confirms it
                // (the subject search within its own statement, any other by looking it up).
                Some(caller) => {
                    let key = format!("client:{}", caller.client_id);
                    request.extensions_mut().insert(Unconfirmed {
                        caller,
                        digest: token,
                    });
                    Some(key)
                }
                None => match tokens::authenticate_digest(&state.pool, &state.tokens, &token).await
                {
                    Ok(caller) => {
                        let key = format!("client:{}", caller.client_id);
                        request.extensions_mut().insert(caller);
                        Some(key)
                    }
                    // Without the database nobody can be authenticated: answer now, rather than
                    // have the handler wait for a connection a second time.
                    Err(AuthError::Database(e)) => return ApiError::from(e).into_response(),
                    Err(_) => None,
                },
            },
            None => None,
        },
    };
    let key = key.unwrap_or_else(|| {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        format!("address:{peer}")
    });

    let bucket = state.rate_limits.bucket(class);
    let verdict = check(bucket, &key);
    let mut response = if verdict.allowed {
        next.run(request).await
    } else {
        throttled(class, &verdict)
    };
    set_headers(response.headers_mut(), &verdict);
    response
}

fn throttled(class: Class, verdict: &Verdict) -> Response {
    let mut body = body_for_status(StatusCode::TOO_MANY_REQUESTS, None);
    body.message = format!(
        "Rate limit exceeded the maximum. Retry the request in [{}] seconds",
        verdict.reset_secs
    );
    body.message_params
        .insert("retryAfter".into(), verdict.reset_secs.to_string());
    body.limit = Some(Limit {
        key: class.key().into(),
        namespace: "gdpr".into(),
        value: i64::from(verdict.limit),
    });
    let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, body);
    if let Ok(value) = HeaderValue::from_str(&verdict.reset_secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn set_headers(headers: &mut HeaderMap, verdict: &Verdict) {
    for (name, value) in [
        ("inin-ratelimit-count", verdict.count as u64),
        ("inin-ratelimit-allowed", verdict.limit as u64),
        ("inin-ratelimit-reset", verdict.reset_secs),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
}

/// The client id of an HTTP Basic `Authorization` header, unverified: it only picks the bucket.
fn basic_client_id(headers: &HeaderMap) -> Option<String> {
    match basic_credentials(headers) {
        Basic::Credentials { id, .. } => {
            let id = uuid::Uuid::parse_str(id.trim()).ok()?;
            Some(format!("client:{id}"))
        }
        _ => None,
    }
}
