//! Sign-in: API clients with permissions, and the opaque bearer tokens they obtain.

pub mod cache;
pub mod clients;
pub mod tokens;

use std::fmt;

use uuid::Uuid;

/// A permission an API client may hold. Each endpoint requires one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    SubjectView,
    RequestAdd,
    RequestView,
    IndexWrite,
}

impl Permission {
    pub const ALL: [Permission; 4] = [
        Permission::SubjectView,
        Permission::RequestAdd,
        Permission::RequestView,
        Permission::IndexWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::SubjectView => "gdpr:subject:view",
            Permission::RequestAdd => "gdpr:request:add",
            Permission::RequestView => "gdpr:request:view",
            Permission::IndexWrite => "gdpr:index:write",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s.trim())
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated API client behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: Uuid,
    pub client_name: String,
    pub org_id: Uuid,
    pub permissions: Vec<Permission>,
}

impl Caller {
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }
}

/// SHA-256 of a high-entropy secret or token: what is stored instead of the value itself.
pub fn digest(secret: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes()).into()
}

/// A new random secret: 32 bytes, URL-safe base64.
pub fn random_secret() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
