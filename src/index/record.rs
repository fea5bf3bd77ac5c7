//! An index record: one known person-record (a user, an external contact, a dialer contact or a
//! journey customer) with every identifier known for it, parsed once and trusted afterwards.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::normalize::{MAX_VALUE_CHARS, Normalized, Normalizer, SearchType};
use crate::wire::GdprSubject;

/// The most values one list of a record (phoneNumbers, emailAddresses, addresses) may hold.
pub const MAX_VALUES_PER_LIST: usize = 100;

/// What kind of person-record an index record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SubjectKind {
    User,
    ExternalContact,
    DialerContact,
    JourneyCustomer,
}

impl SubjectKind {
    pub const ALL: [SubjectKind; 4] = [
        SubjectKind::User,
        SubjectKind::ExternalContact,
        SubjectKind::DialerContact,
        SubjectKind::JourneyCustomer,
    ];

    /// The name stored in `subjects.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::User => "user",
            SubjectKind::ExternalContact => "externalContact",
            SubjectKind::DialerContact => "dialerContact",
            SubjectKind::JourneyCustomer => "journeyCustomer",
        }
    }

    /// The path segment of `/api/v2/gdpr/index/subjects/{kind}/{key}`.
    pub fn path_segment(self) -> &'static str {
        match self {
            SubjectKind::User => "users",
            SubjectKind::ExternalContact => "externalContacts",
            SubjectKind::DialerContact => "dialerContacts",
            SubjectKind::JourneyCustomer => "journeyCustomers",
        }
    }

    pub fn from_path_segment(segment: &str) -> Option<SubjectKind> {
        SubjectKind::ALL
            .into_iter()
            .find(|k| k.path_segment() == segment)
    }
}

/// The identity of a record within its organization: its kind and its own id (`userId`,
/// `externalContactId`, `contactListId:id` of a dialer contact, `type:id` of a journey customer).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RecordKey {
    pub kind: SubjectKind,
    pub key: String,
}

impl fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordKey({}, <redacted>)", self.kind.as_str())
    }
}

/// A field that is wrong, and why. `field` is a JSON path such as `phoneNumbers[1]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A parsed, normalized index record.
#[derive(Clone)]
pub struct IndexRecord {
    pub key: RecordKey,
    /// The record as written (trimmed), in the shape of a GDPRSubject; this is what search returns.
    pub subject: GdprSubject,
    pub canonical_contact_id: Option<String>,
    /// Every normalized identifier of the record, without duplicates.
    pub identifiers: Vec<(SearchType, Normalized)>,
}

impl fmt::Debug for IndexRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexRecord")
            .field("key", &self.key)
            .field("identifiers", &self.identifiers.len())
            .finish()
    }
}

impl IndexRecord {
    pub fn parse(mut subject: GdprSubject, n: &Normalizer) -> Result<IndexRecord, FieldError> {
        trim_subject(&mut subject);
        let mut keys = record_keys(&subject)?;
        let key = match keys.len() {
            1 => keys.remove(0),
            0 => {
                return Err(FieldError::new(
                    "subject",
                    "an index record needs exactly one of userId, externalContactId, \
                     dialerContactId or journeyCustomer",
                ));
            }
            _ => {
                return Err(FieldError::new(
                    "subject",
                    "an index record is one person-record: give only one of userId, \
                     externalContactId, dialerContactId or journeyCustomer",
                ));
            }
        };
        let canonical_contact_id = subject.canonical_contact_id.clone();
        if let Some(canonical) = &canonical_contact_id {
            if key.kind != SubjectKind::ExternalContact {
                return Err(FieldError::new(
                    "canonicalContactId",
                    "only external contacts belong to merge sets",
                ));
            }
            check_id("canonicalContactId", canonical)?;
        }
        let identifiers = identifiers_of(&subject, n)?;
        Ok(IndexRecord {
            key,
            subject,
            canonical_contact_id,
            identifiers,
        })
    }
}

/// Every normalized identifier a subject carries, with the field each came from checked.
pub fn identifiers_of(
    subject: &GdprSubject,
    n: &Normalizer,
) -> Result<Vec<(SearchType, Normalized)>, FieldError> {
    let mut out: Vec<(SearchType, Normalized)> = Vec::new();
    for (kind, value, _) in spellings_of(subject, n)? {
        if !out.iter().any(|(k, v)| *k == kind && *v == value) {
            out.push((kind, value));
        }
    }
    Ok(out)
}

/// Every identifier a subject carries: its type, normalized value and raw spelling (one entry
/// per field value, duplicates included).
pub fn spellings_of(
    subject: &GdprSubject,
    n: &Normalizer,
) -> Result<Vec<(SearchType, Normalized, String)>, FieldError> {
    let mut out = Vec::new();
    let mut push = |field: String, kind: SearchType, raw: &str| -> Result<(), FieldError> {
        let value = n
            .normalize(kind, raw)
            .map_err(|e| FieldError::new(field, e.to_string()))?;
        out.push((kind, value, raw.trim().to_owned()));
        Ok(())
    };
    if let Some(name) = &subject.name {
        push("name".into(), SearchType::Name, name)?;
    }
    let lists = [
        ("addresses", SearchType::Address, &subject.addresses),
        ("phoneNumbers", SearchType::Phone, &subject.phone_numbers),
        (
            "emailAddresses",
            SearchType::Email,
            &subject.email_addresses,
        ),
    ];
    for (field, kind, values) in lists {
        let values = values.as_deref().unwrap_or_default();
        if values.len() > MAX_VALUES_PER_LIST {
            return Err(FieldError::new(
                field,
                format!("at most {MAX_VALUES_PER_LIST} values are accepted"),
            ));
        }
        for (i, raw) in values.iter().enumerate() {
            push(format!("{field}[{i}]"), kind, raw)?;
        }
    }
    if let Some(handle) = &subject.social_handle {
        let kind = handle
            .kind
            .trim()
            .parse::<SearchType>()
            .ok()
            .filter(|k| k.is_social())
            .ok_or_else(|| {
                FieldError::new(
                    "socialHandle.type",
                    "must be one of TWITTER, INSTAGRAM, FACEBOOK, APPLE_MESSAGES, WHATSAPP",
                )
            })?;
        push("socialHandle.value".into(), kind, &handle.value)?;
    }
    if let Some(external_id) = &subject.external_id {
        push("externalId".into(), SearchType::ExternalId, external_id)?;
    }
    Ok(out)
}

/// The ids of person-records a subject names (userId, externalContactId, dialerContactId,
/// journeyCustomer), checked.
pub fn record_keys(subject: &GdprSubject) -> Result<Vec<RecordKey>, FieldError> {
    let mut keys = Vec::new();
    if let Some(id) = &subject.user_id {
        check_id("userId", id)?;
        keys.push(RecordKey {
            kind: SubjectKind::User,
            key: id.trim().to_owned(),
        });
    }
    if let Some(id) = &subject.external_contact_id {
        check_id("externalContactId", id)?;
        keys.push(RecordKey {
            kind: SubjectKind::ExternalContact,
            key: id.trim().to_owned(),
        });
    }
    if let Some(dialer) = &subject.dialer_contact_id {
        let id = dialer.id.as_deref().unwrap_or_default();
        let list = dialer.contact_list_id.as_deref().unwrap_or_default();
        check_id("dialerContactId.id", id)?;
        check_id("dialerContactId.contactListId", list)?;
        keys.push(RecordKey {
            kind: SubjectKind::DialerContact,
            key: format!("{}:{}", list.trim(), id.trim()),
        });
    }
    if let Some(customer) = &subject.journey_customer {
        let kind = customer.kind.as_deref().unwrap_or_default();
        let id = customer.id.as_deref().unwrap_or_default();
        check_id("journeyCustomer.type", kind)?;
        check_id("journeyCustomer.id", id)?;
        keys.push(RecordKey {
            kind: SubjectKind::JourneyCustomer,
            key: format!("{}:{}", kind.trim().to_lowercase(), id.trim()),
        });
    }
    Ok(keys)
}

fn check_id(field: &str, value: &str) -> Result<(), FieldError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(FieldError::new(field, "is required and must not be blank"));
    }
    if value.chars().count() > MAX_VALUE_CHARS || value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_VALUE_CHARS} characters without control characters"),
        ));
    }
    Ok(())
}

/// Trims every string of a subject, so that what is stored and displayed is what was meant.
fn trim_subject(s: &mut GdprSubject) {
    let trim = |v: &mut Option<String>| {
        if let Some(x) = v {
            *x = x.trim().to_owned();
        }
    };
    trim(&mut s.name);
    trim(&mut s.user_id);
    trim(&mut s.external_contact_id);
    trim(&mut s.external_id);
    trim(&mut s.canonical_contact_id);
    for list in [
        &mut s.addresses,
        &mut s.phone_numbers,
        &mut s.email_addresses,
    ]
    .into_iter()
    .flatten()
    {
        for v in list.iter_mut() {
            *v = v.trim().to_owned();
        }
    }
    if let Some(d) = &mut s.dialer_contact_id {
        trim(&mut d.id);
        trim(&mut d.contact_list_id);
    }
    if let Some(j) = &mut s.journey_customer {
        trim(&mut j.kind);
        trim(&mut j.id);
    }
    if let Some(h) = &mut s.social_handle {
        h.kind = h.kind.trim().to_owned();
        h.value = h.value.trim().to_owned();
    }
}
