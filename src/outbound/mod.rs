//! Calls gdprd makes to the outside: HTTP data services and completion notifications.
//!
//! Every call goes through one [`Outbound`] client: Standard Webhooks signatures
//! ([`signing`]), no redirects, bounded timeouts, and the SSRF guard ([`guard`]), which refuses
//! private, loopback and link-local targets (for IP literals and for every address a host name
//! resolves to) unless the configuration allows them.

pub mod guard;
pub mod signing;

use std::sync::{Arc, Once};
use std::time::Duration;

use reqwest::Url;
use serde::Serialize;
use uuid::Uuid;

pub use guard::{GuardSettings, UrlError};
use signing::Secrets;

/// The client for every outbound call.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    guard: GuardSettings,
}

/// What came back from a delivered call.
#[derive(Debug)]
pub struct Delivered {
    pub status: u16,
    /// The body, cut at [`MAX_BODY`] bytes.
    pub body: Vec<u8>,
}

/// Why a call did not get an answer (or got one it could not read).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("timed out after {0} s")]
    Timeout(u64),
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("the answer exceeds {MAX_BODY} bytes")]
    TooLarge,
    #[error("{0}")]
    Other(String),
}

/// The largest answer gdprd reads (an export from an HTTP data service included).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// Makes `ring` the process's TLS crypto provider (once; a provider installed before stays).
/// Every HTTPS client of the process needs one: gdprd's outbound calls, and the tests' clients.
pub fn install_crypto_provider() {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Outbound {
    pub fn new(guard: GuardSettings) -> Outbound {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .dns_resolver(Arc::new(guard::GuardedResolver::new(guard.clone())))
            .user_agent(concat!("gdprd/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the outbound HTTP client has a valid configuration");
        Outbound { client, guard }
    }

    pub fn guard(&self) -> &GuardSettings {
        &self.guard
    }

    /// Checks a URL before it is stored: syntax, scheme and, for IP literals, the address.
    pub fn check(&self, url: &str) -> Result<Url, UrlError> {
        self.guard.check(url)
    }

    /// POSTs `payload` as JSON, signed with every one of `secrets` (Standard Webhooks; several
    /// signatures while a secret is being rotated). `message_id` is the `webhook-id`: the same
    /// for every retry of one message, so that receivers can drop duplicates.
    pub async fn post_signed(
        &self,
        url: &str,
        message_id: Uuid,
        secrets: &Secrets,
        payload: &impl Serialize,
        timeout: Duration,
    ) -> Result<Delivered, CallError> {
        let url = self.guard.check(url)?;
        let body = serde_json::to_vec(payload).map_err(|e| CallError::Other(e.to_string()))?;
        let timestamp = chrono::Utc::now().timestamp();
        let id = format!("msg_{}", message_id.simple());
        let signature = secrets.sign(&id, timestamp, &body);
        let sent = self
            .client
            .post(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signing::HEADER_ID, &id)
            .header(signing::HEADER_TIMESTAMP, timestamp.to_string())
            .header(signing::HEADER_SIGNATURE, signature)
            .body(body)
            .send()
            .await;
        let mut response = sent.map_err(|e| classify(e, timeout))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(CallError::TooLarge);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(classify(e, timeout)),
            }
        }
        Ok(Delivered { status, body })
    }
}

fn classify(error: reqwest::Error, timeout: Duration) -> CallError {
    if error.is_timeout() {
        return CallError::Timeout(timeout.as_secs().max(1));
    }
    // The guard's refusal travels inside the connect error as its source.
    let mut source: Option<&dyn std::error::Error> = Some(&error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<UrlError>() {
            return CallError::Url(refused.clone());
        }
        source = e.source();
    }
    if error.is_connect() {
        let mut text = String::new();
        let mut source = std::error::Error::source(&error);
        while let Some(e) = source {
            text = e.to_string();
            source = e.source();
        }
        return CallError::Connect(if text.is_empty() {
            error.to_string()
        } else {
            text
        });
    }
    CallError::Other(error.without_url().to_string())
}

/// A short, printable excerpt of an answer's body, for job errors and delivery logs.
pub fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.chars().count() <= MAX {
        return text.to_owned();
    }
    let cut: String = text.chars().take(MAX).collect();
    format!("{cut}…")
}
