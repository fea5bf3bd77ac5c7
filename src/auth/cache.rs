//! Callers of recently seen bearer tokens, kept in memory for the subject search, the hot path:
//! with a caller from here, the search needs one statement instead of two, because that statement
//! confirms the token itself (live, client enabled and allowed, same organization; see
//! `index::store::search`). Nothing else trusts an entry: every other endpoint looks its token up
//! in the database, and the search falls back to that lookup when its statement does not confirm
//! the token, so revoking a token or disabling a client takes effect at once, on every instance.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Caller;

/// SHA-256 of a bearer token, as `access_tokens.token_hash` stores it.
pub type TokenDigest = [u8; 32];

/// How many tokens are remembered; the least used are forgotten first.
const CAPACITY: usize = 10_000;

#[derive(Clone)]
pub struct TokenCache {
    entries: Arc<quick_cache::sync::Cache<TokenDigest, Entry>>,
}

#[derive(Clone)]
struct Entry {
    caller: Caller,
    expires_at: DateTime<Utc>,
}

impl Default for TokenCache {
    fn default() -> TokenCache {
        TokenCache {
            entries: Arc::new(quick_cache::sync::Cache::new(CAPACITY)),
        }
    }
}

impl TokenCache {
    /// The caller a token belonged to when it was last looked up, unless it has expired since.
    pub fn get(&self, digest: &TokenDigest) -> Option<Caller> {
        let entry = self.entries.get(digest)?;
        if entry.expires_at <= Utc::now() {
            self.entries.remove(digest);
            return None;
        }
        Some(entry.caller)
    }

    pub fn remember(&self, digest: TokenDigest, caller: &Caller, expires_at: DateTime<Utc>) {
        self.entries.insert(
            digest,
            Entry {
                caller: caller.clone(),
                expires_at,
            },
        );
    }

    pub fn forget(&self, digest: &TokenDigest) {
        self.entries.remove(digest);
    }
}

/// A caller taken from the [`TokenCache`], not confirmed by the database for this request. Only
/// the subject search acts on one, and only through a statement that confirms the token.
#[derive(Clone)]
pub struct Unconfirmed {
    pub caller: Caller,
    pub digest: TokenDigest,
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::auth::Permission;

    fn caller() -> Caller {
        Caller {
            client_id: Uuid::now_v7(),
            client_name: "reports".into(),
            org_id: Uuid::now_v7(),
            permissions: vec![Permission::SubjectView],
        }
    }

    #[test]
    fn remembers_until_expiry_and_forgets_on_demand() {
        let cache = TokenCache::default();
        let (live, expired) = ([1u8; 32], [2u8; 32]);
        let c = caller();
        cache.remember(live, &c, Utc::now() + chrono::Duration::minutes(5));
        cache.remember(expired, &c, Utc::now() - chrono::Duration::seconds(1));
        assert_eq!(cache.get(&live).map(|c| c.client_id), Some(c.client_id));
        assert!(cache.get(&expired).is_none());
        assert!(cache.get(&[3u8; 32]).is_none());
        cache.forget(&live);
        assert!(cache.get(&live).is_none());
    }
}
