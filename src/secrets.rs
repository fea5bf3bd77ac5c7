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
        let key: Vec<u8> = sqlx::query_scalar(
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
        .bind(fresh)
        .fetch_one(pool)
        .await?;
        Ok(ServerKey(key))
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
