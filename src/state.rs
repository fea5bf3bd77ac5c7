//! The state shared by every handler.

use std::sync::Arc;

use sqlx::PgPool;

use crate::config::HttpSettings;
use crate::index::Normalizer;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub normalizer: Normalizer,
    pub settings: Arc<HttpSettings>,
}
