//! The Genesys wire models, exactly as Genesys serializes them: camelCase, absent values omitted.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::openapi::{examples, schemas};

/// `GDPRSubject`, plus our `canonicalContactId` (the merge set an external contact belongs to).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(
    as = GDPRSubject,
    description = "A data subject: who a request is about, a search result, or an index record. \
        A request subject names the person by id (`userId`, `externalContactId`, \
        `dialerContactId`, `journeyCustomer`, `externalId`) or by identifiers (the request \
        applies to the data matching any of them).",
    examples(examples::subject)
)]
pub struct GdprSubject {
    /// Full name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Id of a user (an employee).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Id of an external contact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_contact_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialer_contact_id: Option<DialerContactId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journey_customer: Option<JourneyCustomer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub social_handle: Option<SocialHandle>,
    /// An external (business) id, e.g. a CRM id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Postal addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<String>>,
    /// Phone numbers, in E.164 (`+15550100001`) or in the national format of the server's
    /// default region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_numbers: Option<Vec<String>>,
    /// Email addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_addresses: Option<Vec<String>>,
    /// **Extension.** The canonical contact of the merge set this external contact belongs to
    /// (index records and search results).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canonical_contact_id: Option<String>,
}

/// Names the fields that are set, never their values: a subject is personal data.
impl fmt::Debug for GdprSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present = [
            ("name", self.name.is_some()),
            ("userId", self.user_id.is_some()),
            ("externalContactId", self.external_contact_id.is_some()),
            ("dialerContactId", self.dialer_contact_id.is_some()),
            ("journeyCustomer", self.journey_customer.is_some()),
            ("socialHandle", self.social_handle.is_some()),
            ("externalId", self.external_id.is_some()),
            ("addresses", self.addresses.is_some()),
            ("phoneNumbers", self.phone_numbers.is_some()),
            ("emailAddresses", self.email_addresses.is_some()),
            ("canonicalContactId", self.canonical_contact_id.is_some()),
        ];
        let fields: Vec<&str> = present
            .iter()
            .filter(|(_, set)| *set)
            .map(|(n, _)| *n)
            .collect();
        write!(f, "GdprSubject {{ redacted, fields: {fields:?} }}")
    }
}

/// A search result as the subject index holds it: a [`GdprSubject`] that gdprd serialized when it
/// wrote the record, sent on as PostgreSQL gives it back instead of being parsed into its fields
/// and serialized again. Its `Debug` names nothing: the record is personal data.
#[derive(Serialize)]
#[serde(transparent)]
pub struct StoredSubject(pub Box<serde_json::value::RawValue>);

impl fmt::Debug for StoredSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoredSubject { redacted }")
    }
}

/// `DialerContactId`: a contact of an outbound dialer contact list.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DialerContactId {
    /// The contact's id in its list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The contact list's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_list_id: Option<String>,
}

/// `GDPRJourneyCustomer`: a web visitor, e.g. `{"type": "cookie", "id": "<_actmu value>"}`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = GDPRJourneyCustomer)]
pub struct JourneyCustomer {
    /// The type of the id within the journey system, e.g. `cookie`. Required if `id` is given.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    #[schema(examples("cookie"))]
    pub kind: Option<String>,
    /// The customer's id within the journey system, e.g. the `_actmu` cookie value. Required
    /// if `type` is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `SocialHandle`: an account on a social or messaging network.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SocialHandle {
    #[serde(rename = "type")]
    #[schema(schema_with = schemas::social_handle_type)]
    pub kind: String,
    /// The handle, with or without a leading `@`.
    pub value: String,
}

/// Genesys' paging envelope (`GDPRSubjectEntityListing`, `GDPRRequestEntityListing`; its
/// OpenAPI schema is in [`crate::http::openapi`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityListing<T> {
    pub entities: Vec<T>,
    pub page_size: i64,
    pub page_number: i64,
    pub total: i64,
    pub page_count: i64,
    pub self_uri: String,
    pub first_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_uri: Option<String>,
    pub last_uri: String,
}

impl<T> EntityListing<T> {
    /// Builds the envelope; `uri(page)` renders the URI of a page (relative, as Genesys does).
    pub fn new(
        entities: Vec<T>,
        page: Page,
        total: i64,
        uri: impl Fn(i64) -> String,
    ) -> EntityListing<T> {
        let page_count = if total == 0 {
            1
        } else {
            (total + page.size - 1) / page.size
        };
        EntityListing {
            entities,
            page_size: page.size,
            page_number: page.number,
            total,
            page_count,
            self_uri: uri(page.number),
            first_uri: uri(1),
            next_uri: (page.number < page_count).then(|| uri(page.number + 1)),
            previous_uri: (page.number > 1).then(|| uri((page.number - 1).min(page_count))),
            last_uri: uri(page_count),
        }
    }
}

/// A validated page request: `size` in 1..=max, `number` from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub size: i64,
    pub number: i64,
}

impl Page {
    pub fn offset(&self) -> i64 {
        (self.number - 1).saturating_mul(self.size)
    }
}

/// Genesys `ErrorBody`. `messageParams`, `details` and `errors` are always present, as Genesys
/// sends them (`{}` and `[]` when empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(
    description = "Every error response: Genesys' `ErrorBody`. `contextId` equals the \
        `ININ-Correlation-Id` response header.",
    examples(examples::error_body)
)]
pub struct ErrorBody {
    /// What went wrong, and what to do about it.
    pub message: String,
    /// Genesys' error code, e.g. `bad.request`, `invalid.value`, `authentication.required`,
    /// `bad.credentials`, `credentials.expired`, `missing.any.permissions`, `not.authorized`,
    /// `not.found`, `conflict`, `request.entity.too.large`, `unsupported.media.type`,
    /// `too.many.requests`, `internal.server.error`, `service.unavailable`, `request.timeout`.
    pub code: String,
    /// The HTTP status, repeated.
    pub status: u16,
    /// The id of this exchange, for support: equal to the `ININ-Correlation-Id` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_name: Option<String>,
    /// Values of the message's placeholders (`{}` when none).
    pub message_params: BTreeMap<String, String>,
    /// The fields at fault (`[]` when none).
    pub details: Vec<Detail>,
    /// Nested errors (`[]`).
    #[schema(no_recursion)]
    pub errors: Vec<ErrorBody>,
    /// On a 429: the limit that was hit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    /// **Extension.** On a 409 of the ambiguity guard: the people the subject matches, each as
    /// the list of its index records (shown to clients holding `gdpr:subject:view`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<Vec<GdprSubject>>>,
}

/// `Detail`: one field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Detail {
    /// e.g. `invalid.value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The field, e.g. `subject.phoneNumbers[0]` or `searchType`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// Where the field is, e.g. `record 3` of a bulk index write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_name: Option<String>,
}

/// `Limit`: the rate limit a 429 hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limit {
    /// e.g. `gdpr.requests.create.rate.per.minute`.
    pub key: String,
    /// `gdpr`.
    #[schema(examples("gdpr"))]
    pub namespace: String,
    /// The limit, in requests per minute.
    pub value: i64,
}

/// Genesys `DomainEntityRef`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DomainEntityRef {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_uri: Option<String>,
}

/// Why a JSON document could not be read as the expected model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all (or trailing garbage).
    #[error("not valid JSON: {0}")]
    Syntax(String),
    /// JSON, but a field is missing, unknown or of the wrong type. `path` is like
    /// `subject.phoneNumbers[0]` (`.` for the document itself).
    #[error("{path}: {message}")]
    Field { path: String, message: String },
}

impl JsonError {
    /// The error in words that never quote the document's values: serde's message of a value
    /// of the wrong type, or out of range, quotes it, and it may be personal data. Names of
    /// fields, missing or unknown, are kept.
    pub fn without_values(&self) -> String {
        match self {
            JsonError::Syntax(message) => format!("not valid JSON: {message}"),
            JsonError::Field { path, message }
                if message.starts_with("missing field") || message.starts_with("unknown field") =>
            {
                format!("{path}: {message}")
            }
            JsonError::Field { path, .. } => {
                format!("{path}: a value of the wrong type, or out of range")
            }
        }
    }
}

/// Parses JSON into `T`, naming the field whose value is wrong.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            JsonError::Syntax(inner.to_string())
        } else {
            JsonError::Field {
                path,
                message: strip_position(&inner.to_string()),
            }
        }
    })?;
    de.end().map_err(|e| JsonError::Syntax(e.to_string()))?;
    Ok(value)
}

/// serde's messages end with " at line 1 column 42", which says nothing useful about a field.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_subject_goes_out_as_stored_and_debug_names_nothing() {
        let stored = r#"{"name": "Ana García", "emailAddresses": ["ana@example.com"]}"#;
        let subject = StoredSubject(
            serde_json::value::RawValue::from_string(stored.to_owned()).expect("JSON"),
        );
        let listing = serde_json::to_string(&[&subject]).expect("serializes");
        assert_eq!(listing, format!("[{stored}]"));
        let debug = format!("{subject:?}");
        assert!(!debug.contains("Ana") && !debug.contains("ana@"), "{debug}");
    }
}
