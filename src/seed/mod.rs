//! Deterministic synthetic demo data.

use sqlx::PgPool;

use crate::config::SeedArgs;
use crate::index::Normalizer;

pub async fn run(_pool: &PgPool, _n: &Normalizer, _args: &SeedArgs) -> anyhow::Result<()> {
    anyhow::bail!("seeding is not built yet")
}
