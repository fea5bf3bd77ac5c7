//! The server's secret key: one per database, created on first start and shared by every
//! instance. It keys the hashes that replace erased identifiers and signs result URLs.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::PgPool;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct ServerKey(Vec<u8>);

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerKey(<redacted>)")
    }
}

impl ServerKey {
    /// The key stored in the database, created when there is none yet.
    pub async fn load_or_create(pool: &PgPool) -> sqlx::Result<ServerKey> {
        use rand::RngCore;
        let mut fresh = vec![0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        // Of two processes starting at once on a new database, the one whose insert waited for
        // the other's finds in that statement neither row: not its own (it inserted nothing),
        // nor the other's (committed after the statement began). The next statement sees it.
        for _ in 0..3 {
            let key: Option<Vec<u8>> = sqlx::query_scalar(
                "WITH created AS (
                     INSERT INTO server_secrets (name, value) VALUES ('server-key', $1)
                     ON CONFLICT (name) DO NOTHING
                     RETURNING value
                 )
                 SELECT value FROM created
                 UNION ALL
                 SELECT value FROM server_secrets WHERE name = 'server-key'
                 LIMIT 1",
            )
            .bind(&fresh)
            .fetch_optional(pool)
            .await?;
            if let Some(key) = key {
                return Ok(ServerKey(key));
            }
        }
        Err(sqlx::Error::RowNotFound)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// HMAC-SHA256 of `parts`, each length-prefixed so that no two part lists collide.
    pub fn hash(&self, parts: &[&[u8]]) -> Vec<u8> {
        self.mac(parts).finalize().into_bytes().to_vec()
    }

    /// Checks a hex signature made by [`ServerKey::sign`], in constant time.
    pub fn verify(&self, parts: &[&[u8]], signature_hex: &str) -> bool {
        let Ok(signature) = hex::decode(signature_hex) else {
            return false;
        };
        self.mac(parts).verify_slice(&signature).is_ok()
    }

    pub fn sign(&self, parts: &[&[u8]]) -> String {
        hex::encode(self.hash(parts))
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        // HMAC accepts keys of any length.
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }
}

#[cfg(test)]
mod tests {
    use sqlx::PgPool;

    use super::*;

    #[sqlx::test]
    async fn a_key_another_process_creates_meanwhile_is_the_one_loaded(pool: PgPool) {
        // Another process is creating the key: its transaction has inserted it, not committed.
        let mut other = pool.begin().await.unwrap();
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES ('server-key', '\\x0102')")
            .execute(&mut *other)
            .await
            .unwrap();
        let loading = tokio::spawn({
            let pool = pool.clone();
            async move { ServerKey::load_or_create(&pool).await }
        });
        // Once this one's insert waits for the other's, the other commits.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT FROM pg_stat_activity
                                 WHERE datname = current_database() AND wait_event_type = 'Lock')",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if waiting {
                break;
            }
            assert!(
                !loading.is_finished(),
                "the load did not wait for the other's insert"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "the load never reached its insert"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        other.commit().await.unwrap();
        let key = loading
            .await
            .unwrap()
            .expect("the key the other process created");
        assert_eq!(key.bytes(), [1, 2]);
    }
}
