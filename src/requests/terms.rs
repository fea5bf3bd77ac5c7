//! The identifiers a request applies to, normalized once when the request is created and
//! trusted by every job afterwards.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::index::SearchType;

/// What kind of identifier a term is: one of the searchable identifier types, or the id of a
/// person-record in one of the systems gdprd knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TermKind {
    Name,
    Address,
    Phone,
    Email,
    Twitter,
    Instagram,
    Facebook,
    AppleMessages,
    Whatsapp,
    ExternalId,
    /// A directory user's id (`userId`).
    UserId,
    /// An external contact's id (`externalContactId`).
    ExternalContactId,
    /// A dialer contact's id (`dialerContactId.id`).
    DialerContactId,
    /// A web visitor's tracking cookie (`journeyCustomer.id` with type `cookie`).
    JourneyCookie,
}

impl TermKind {
    pub fn from_search_type(t: SearchType) -> TermKind {
        match t {
            SearchType::Name => TermKind::Name,
            SearchType::Address => TermKind::Address,
            SearchType::Phone => TermKind::Phone,
            SearchType::Email => TermKind::Email,
            SearchType::Twitter => TermKind::Twitter,
            SearchType::Instagram => TermKind::Instagram,
            SearchType::Facebook => TermKind::Facebook,
            SearchType::AppleMessages => TermKind::AppleMessages,
            SearchType::Whatsapp => TermKind::Whatsapp,
            SearchType::ExternalId => TermKind::ExternalId,
        }
    }

    /// The search type of a searchable term (ids have none).
    pub fn search_type(self) -> Option<SearchType> {
        SearchType::ALL
            .into_iter()
            .find(|t| TermKind::from_search_type(*t) == self)
    }

    /// The name used in catalogs and stored terms (`EMAIL`, `USER_ID`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TermKind::Name => "NAME",
            TermKind::Address => "ADDRESS",
            TermKind::Phone => "PHONE",
            TermKind::Email => "EMAIL",
            TermKind::Twitter => "TWITTER",
            TermKind::Instagram => "INSTAGRAM",
            TermKind::Facebook => "FACEBOOK",
            TermKind::AppleMessages => "APPLE_MESSAGES",
            TermKind::Whatsapp => "WHATSAPP",
            TermKind::ExternalId => "EXTERNAL_ID",
            TermKind::UserId => "USER_ID",
            TermKind::ExternalContactId => "EXTERNAL_CONTACT_ID",
            TermKind::DialerContactId => "DIALER_CONTACT_ID",
            TermKind::JourneyCookie => "JOURNEY_COOKIE",
        }
    }

    pub const ALL: [TermKind; 14] = [
        TermKind::Name,
        TermKind::Address,
        TermKind::Phone,
        TermKind::Email,
        TermKind::Twitter,
        TermKind::Instagram,
        TermKind::Facebook,
        TermKind::AppleMessages,
        TermKind::Whatsapp,
        TermKind::ExternalId,
        TermKind::UserId,
        TermKind::ExternalContactId,
        TermKind::DialerContactId,
        TermKind::JourneyCookie,
    ];

    pub fn parse(s: &str) -> Option<TermKind> {
        TermKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Names and addresses are shared by different people: they identify someone only when
    /// nothing stronger is known (see PRODUCT.md, the ambiguity guard).
    pub fn is_weak(self) -> bool {
        matches!(self, TermKind::Name | TermKind::Address)
    }
}

impl fmt::Display for TermKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One identifier of a request: its normalized value (what matching compares) and every raw
/// spelling known for it (what free-text redaction looks for).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    pub kind: TermKind,
    pub value: String,
    pub raw: Vec<String>,
}

impl fmt::Debug for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Term({}, <redacted>)", self.kind)
    }
}

/// Every identifier a request applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms(pub Vec<Term>);

impl Terms {
    /// Adds a term, merging raw spellings into an existing term with the same value.
    pub fn add(&mut self, kind: TermKind, value: String, raw: &str) {
        match self
            .0
            .iter_mut()
            .find(|t| t.kind == kind && t.value == value)
        {
            Some(term) => {
                if !term.raw.iter().any(|r| r == raw) {
                    term.raw.push(raw.to_owned());
                }
            }
            None => self.0.push(Term {
                kind,
                value,
                raw: vec![raw.to_owned()],
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any term other than a name or an address is known.
    pub fn has_strong(&self) -> bool {
        self.0.iter().any(|t| !t.kind.is_weak())
    }

    /// The terms used to find a person's rows: all of them when only weak ones are known,
    /// otherwise only the strong ones (a name must not pull in a namesake's rows).
    pub fn matching(&self) -> impl Iterator<Item = &Term> {
        let strong = self.has_strong();
        self.0.iter().filter(move |t| !strong || !t.kind.is_weak())
    }

    /// `text` (e.g. what an outside system answered) with every value and spelling of the
    /// terms replaced by `[redacted]`, ignoring ASCII case, longest first; phone numbers also in
    /// their bare digits. What is stored or logged never carries the subject's identifiers.
    pub fn redact(&self, text: &str) -> String {
        let mut needles: Vec<String> = Vec::new();
        for term in &self.0 {
            let digits = (term.kind == TermKind::Phone)
                .then(|| term.value.chars().filter(char::is_ascii_digit).collect());
            needles.extend(term.raw.iter().map(|r| r.trim().to_owned()));
            needles.push(term.value.clone());
            needles.extend(digits);
        }
        needles.retain(|n| n.chars().count() >= 2);
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        let mut out = text.to_owned();
        for needle in needles {
            let needle = needle.to_ascii_lowercase();
            let mut from = 0;
            while let Some(at) = out[from..].to_ascii_lowercase().find(&needle) {
                let at = from + at;
                out.replace_range(at..at + needle.len(), REDACTED);
                from = at + REDACTED.len();
            }
        }
        out
    }

    /// The normalized values of one kind among the matching terms.
    pub fn values(&self, kind: TermKind) -> Vec<String> {
        self.matching()
            .filter(|t| t.kind == kind)
            .map(|t| t.value.clone())
            .collect()
    }
}

/// What [`Terms::redact`] writes in place of an identifier.
pub const REDACTED: &str = "[redacted]";

/// A rewrite of one identifier for `GDPR_UPDATE`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    pub kind: TermKind,
    /// Normalized existing value (what matching compares).
    pub existing: String,
    /// The existing value as the requester wrote it.
    pub existing_raw: String,
    /// The new value, as it is to be stored.
    pub updated: String,
}

impl fmt::Debug for Replacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Replacement({}, <redacted>)", self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_every_spelling_whatever_its_case() {
        let mut terms = Terms::default();
        terms.add(
            TermKind::Email,
            "lena.berg@example.org".into(),
            "Lena.Berg@Example.org",
        );
        terms.add(TermKind::Phone, "+15550109999".into(), "(555) 010-9999");
        terms.add(TermKind::Name, "lena berg".into(), "Lena Berg");
        let answer = "no customer LENA.BERG@example.org (Lena Berg, tel 15550109999 or \
                      (555) 010-9999); lena berg unknown";
        let redacted = terms.redact(answer);
        assert_eq!(
            redacted,
            "no customer [redacted] ([redacted], tel [redacted] or [redacted]); [redacted] unknown"
        );
        assert_eq!(terms.redact("CRM database is down"), "CRM database is down");
    }
}
