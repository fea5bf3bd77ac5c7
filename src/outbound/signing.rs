//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, sent as `webhook-signature: v1,<base64>`.
//!
//! A secret is rotated by listing the new one first and keeping the old one until every
//! receiver has switched: outbound messages carry one signature per secret (space-separated,
//! as the standard provides), and inbound callbacks verify against any of them.

use std::fmt;

use axum::http::HeaderMap;
use base64::Engine;
use rand::RngCore;
use standardwebhooks::Webhook;

pub use standardwebhooks::{
    HEADER_WEBHOOK_ID as HEADER_ID, HEADER_WEBHOOK_SIGNATURE as HEADER_SIGNATURE,
    HEADER_WEBHOOK_TIMESTAMP as HEADER_TIMESTAMP,
};

const PREFIX: &str = "whsec_";

/// One or more signing secrets, newest first. `Debug` never shows them.
#[derive(Clone)]
pub struct Secrets {
    written: Vec<String>,
    keys: std::sync::Arc<Vec<Webhook>>,
}

/// A secret that is not `whsec_` followed by base64.
#[derive(Debug, thiserror::Error)]
#[error(
    "signing secret #{position} is not valid: write whsec_ followed by base64 of at least 24 \
     random bytes"
)]
pub struct SecretError {
    pub position: usize,
}

impl Secrets {
    /// Parses secrets written `whsec_<base64>`, separated by white space or commas.
    pub fn parse(written: &str) -> Result<Secrets, SecretError> {
        let list: Vec<String> = written
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        Secrets::from_list(list)
    }

    pub fn from_list(list: Vec<String>) -> Result<Secrets, SecretError> {
        if list.is_empty() {
            return Err(SecretError { position: 1 });
        }
        let mut keys = Vec::with_capacity(list.len());
        for (i, secret) in list.iter().enumerate() {
            let error = SecretError { position: i + 1 };
            let encoded = secret
                .strip_prefix(PREFIX)
                .ok_or(SecretError { position: i + 1 })?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| SecretError { position: i + 1 })?;
            if bytes.len() < 24 {
                return Err(error);
            }
            keys.push(Webhook::from_bytes(bytes).map_err(|_| SecretError { position: i + 1 })?);
        }
        Ok(Secrets {
            written: list,
            keys: std::sync::Arc::new(keys),
        })
    }

    /// A fresh random secret, `whsec_` and base64 of 32 bytes.
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    /// The secrets as written, newest first.
    pub fn written(&self) -> &[String] {
        &self.written
    }

    /// The `webhook-signature` value: one `v1,<base64>` per secret.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        self.keys
            .iter()
            .filter_map(|key| key.sign(id, timestamp, body).ok())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Checks an inbound message: the three headers, a timestamp within five minutes, and a
    /// signature by any of the secrets (compared in constant time).
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
        let mut last = String::from("no signing secret");
        for key in self.keys.iter() {
            match key.verify(body, headers) {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets([{} redacted])", self.keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(id: &str, ts: i64, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER_ID, HeaderValue::from_str(id).unwrap());
        h.insert(
            HEADER_TIMESTAMP,
            HeaderValue::from_str(&ts.to_string()).unwrap(),
        );
        h.insert(HEADER_SIGNATURE, HeaderValue::from_str(signature).unwrap());
        h
    }

    #[test]
    fn the_standard_webhooks_test_vector_verifies() {
        // From the Standard Webhooks specification's reference tests.
        let secrets = Secrets::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let ts = 1614265330;
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secrets.sign(id, ts, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn rotation_signs_with_every_secret_and_verifies_with_any() {
        let (new, old) = (Secrets::generate(), Secrets::generate());
        let both = Secrets::parse(&format!("{new} {old}")).unwrap();
        let ts = chrono::Utc::now().timestamp();
        let signature = both.sign("msg_1", ts, b"{}");
        assert_eq!(signature.split(' ').count(), 2);
        let only_old = Secrets::parse(&old).unwrap();
        assert!(
            only_old
                .verify(&headers("msg_1", ts, &signature), b"{}")
                .is_ok()
        );
        let stranger = Secrets::parse(&Secrets::generate()).unwrap();
        assert!(
            stranger
                .verify(&headers("msg_1", ts, &signature), b"{}")
                .is_err()
        );
        assert!(
            only_old
                .verify(&headers("msg_1", ts, &signature), b"{\"x\":1}")
                .is_err()
        );
        let stale = ts - 600;
        let signature = only_old.sign("msg_1", stale, b"{}");
        assert!(
            only_old
                .verify(&headers("msg_1", stale, &signature), b"{}")
                .is_err()
        );
    }

    #[test]
    fn bad_secrets_are_refused_and_never_printed() {
        assert!(Secrets::parse("").is_err());
        assert!(Secrets::parse("plain-text").is_err());
        assert!(Secrets::parse("whsec_c2hvcnQ=").is_err());
        let secret = Secrets::generate();
        let parsed = Secrets::parse(&secret).unwrap();
        assert!(!format!("{parsed:?}").contains(&secret[6..]));
    }
}
