//! The state shared by every handler.

use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::cache::TokenCache;
use crate::catalog::Catalog;
use crate::config::HttpSettings;
use crate::db::SearchPool;
use crate::index::Normalizer;
use crate::outbound::Outbound;
use crate::ratelimit::RateLimits;
use crate::requests::store::ResultLinks;

/// What every handler shares, behind one `Arc`: a handler, an extractor or a middleware takes
/// its own handle on each request, and a handle is one reference count, whatever the state
/// holds (its URLs, key and settings are never copied per request).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub pool: PgPool,
    /// Connections of the subject search alone.
    pub search: SearchPool,
    pub normalizer: Normalizer,
    pub settings: Arc<HttpSettings>,
    pub catalog: Arc<Catalog>,
    pub links: ResultLinks,
    /// Attempts a new job gets.
    pub max_attempts: i32,
    pub rate_limits: RateLimits,
    /// Checks outbound URLs clients register (notification callbacks).
    pub outbound: Outbound,
    /// Callers of recently seen tokens, for the subject search only.
    pub tokens: TokenCache,
}
