//! Organizations: the tenants. Every client, subject, request and data row belongs to one.

use sqlx::PgConnection;
use uuid::Uuid;

/// The organization the demo data, and clients created without `--org`, belong to.
pub const DEMO_ORG: &str = "demo";

/// The id of the organization named `name`, created when new.
pub async fn get_or_create(conn: &mut PgConnection, name: &str) -> sqlx::Result<Uuid> {
    sqlx::query_scalar(
        "WITH created AS (
             INSERT INTO organizations (id, name) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING
             RETURNING id
         )
         SELECT id FROM created
         UNION ALL
         SELECT id FROM organizations WHERE name = $2
         LIMIT 1",
    )
    .bind(Uuid::now_v7())
    .bind(name)
    .fetch_one(conn)
    .await
}
