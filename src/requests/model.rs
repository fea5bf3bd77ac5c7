//! The request types and statuses, exactly as Genesys spells them, and the `GDPRRequest` wire
//! model with our extensions.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::openapi::{examples, schemas};
use crate::index::SearchType;
use crate::wire::{DomainEntityRef, GdprSubject};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(
    description = "`GDPR_EXPORT` (access and portability: a ZIP archive at `resultsUrl`), \
        `GDPR_UPDATE` (rectification with `replacementTerms`), `GDPR_DELETE` (erasure; needs \
        `deleteConfirmed=true`). **Extension:** `GDPR_GET`, an access summary (which services \
        hold data about the subject, how much, why and for how long) without a copy of the \
        data; Genesys' SDKs do not know it."
)]
pub enum RequestType {
    GdprExport,
    GdprUpdate,
    GdprDelete,
    /// Ours: an access summary without a copy of the data (and a dry run before an erasure).
    GdprGet,
}

impl RequestType {
    pub const ALL: [RequestType; 4] = [
        RequestType::GdprExport,
        RequestType::GdprUpdate,
        RequestType::GdprDelete,
        RequestType::GdprGet,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::GdprExport => "GDPR_EXPORT",
            RequestType::GdprUpdate => "GDPR_UPDATE",
            RequestType::GdprDelete => "GDPR_DELETE",
            RequestType::GdprGet => "GDPR_GET",
        }
    }

    pub fn parse(s: &str) -> Option<RequestType> {
        RequestType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for RequestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(
    description = "`INITIATED` (accepted) → `SEARCHING` (jobs locate records) → `UPDATING` / \
        `DELETING` → `FINALIZING` (archive, index clean-up) → `COMPLETED`, or `ERROR` when a \
        job has failed for good (`error` says why)."
)]
pub enum Status {
    Initiated,
    Searching,
    Updating,
    Deleting,
    Finalizing,
    Completed,
    Error,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Initiated,
        Status::Searching,
        Status::Updating,
        Status::Deleting,
        Status::Finalizing,
        Status::Completed,
        Status::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Initiated => "INITIATED",
            Status::Searching => "SEARCHING",
            Status::Updating => "UPDATING",
            Status::Deleting => "DELETING",
            Status::Finalizing => "FINALIZING",
            Status::Completed => "COMPLETED",
            Status::Error => "ERROR",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Error)
    }
}

/// `ReplacementTerm` as Genesys spells it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(
    description = "`ReplacementTerm`: in a `GDPR_UPDATE`, the value to rewrite and its new value.",
    examples(examples::replacement_term)
)]
pub struct ReplacementTerm {
    #[serde(rename = "type")]
    #[schema(value_type = SearchType)]
    pub kind: String,
    /// The value as it is held now.
    pub existing_value: String,
    /// The value to hold instead.
    pub updated_value: String,
}

impl fmt::Debug for ReplacementTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplacementTerm({}, <redacted>)", self.kind)
    }
}

/// The body of `POST /api/v2/gdpr/requests`. Server-set fields a client may echo back are
/// accepted and ignored, as Genesys does.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewRequest {
    pub request_type: Option<String>,
    pub subject: Option<GdprSubject>,
    pub name: Option<String>,
    pub replacement_terms: Option<Vec<ReplacementTerm>>,
    pub callback_url: Option<String>,
}

/// `GDPRRequest`, plus the extensions (`jobs`, `error`, `dueDate`, `completedDate`,
/// `relatedRequests`, `accessSummary`, `callbackUrl`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(
    as = GDPRRequest,
    description = "`GDPRRequest`: one GDPR request. A client sends `requestType`, `subject`, \
        optionally `name` and, for `GDPR_UPDATE`, `replacementTerms`; the server sets the rest \
        (read-only). Fields marked **Extension** are not in Genesys' model; Genesys clients \
        ignore them.",
    examples(examples::request)
)]
pub struct GdprRequest {
    /// The request's id.
    #[schema(read_only)]
    pub id: Uuid,
    /// A free-text label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The API client that made the request.
    #[schema(read_only)]
    pub created_by: DomainEntityRef,
    /// For `GDPR_UPDATE` only (and required there): the values to rewrite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacement_terms: Option<Vec<ReplacementTerm>>,
    pub request_type: RequestType,
    /// When the request was received (ISO-8601, UTC).
    #[schema(read_only, format = DateTime)]
    pub created_date: String,
    #[schema(read_only)]
    pub status: Status,
    /// Who the request is about.
    pub subject: GdprSubject,
    /// `GDPR_EXPORT`, once `COMPLETED`: where to download the archive (a ZIP). A signed,
    /// expiring link that needs no bearer token; every GET of the request gives a fresh one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub results_url: Option<String>,
    /// Every archive of the export (`resultsUrl` is the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub results_urls: Option<Vec<String>>,
    /// `/api/v2/gdpr/requests/{id}`.
    #[schema(read_only)]
    pub self_uri: String,
    /// **Extension.** One job per data service: what it does there and how far it got.
    #[schema(read_only)]
    pub jobs: Vec<JobView>,
    /// **Extension.** Why the request is in `ERROR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub error: Option<RequestError>,
    /// **Extension.** When the answer is due: one calendar month after receipt (GDPR Art.
    /// 12(3)).
    #[schema(read_only, format = DateTime)]
    pub due_date: String,
    /// **Extension.** When the request reached `COMPLETED` or `ERROR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(read_only, format = DateTime)]
    pub completed_date: Option<String>,
    /// **Extension.** For a subject in a merge set of external contacts: the independent
    /// request made for each member.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub related_requests: Option<Vec<RelatedRequest>>,
    /// **Extension.** `GDPR_GET`, once `COMPLETED`: what each service holds about the subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub access_summary: Option<Vec<ServiceSummary>>,
    /// **Extension.** Where this request's status changes are POSTed (instead of the client's
    /// notification endpoint), signed with the client's secrets: see
    /// `GET /api/v2/gdpr/notifications/endpoint`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

/// One data service's part of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(
    as = GDPRJob,
    description = "**Extension.** One data service's part of a request."
)]
pub struct JobView {
    /// The data service, as the catalog names it.
    pub service: String,
    /// `summarize`, `export`, `update`, `delete` or `anonymize`.
    #[schema(schema_with = schemas::job_action)]
    pub action: String,
    /// `QUEUED`, `RUNNING`, `AWAITING_CALLBACK`, `RETRYING`, `COMPLETED` or `ERROR`.
    #[schema(schema_with = schemas::job_status)]
    pub status: String,
    /// Attempts so far.
    pub attempts: i32,
    /// Records found (once the job has searched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<i64>,
    pub deleted: i64,
    pub anonymized: i64,
    pub updated: i64,
    /// Records kept on purpose (see `retainedReason`).
    pub retained: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_reason: Option<String>,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a request is in `ERROR`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GDPRRequestError)]
pub struct RequestError {
    pub code: String,
    pub message: String,
}

/// A related request of a merge set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GDPRRelatedRequest)]
pub struct RelatedRequest {
    pub id: Uuid,
    pub self_uri: String,
}

/// One line of a `GDPR_GET` access summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GDPRServiceSummary)]
pub struct ServiceSummary {
    /// The data service.
    pub service: String,
    /// How many records it holds about the subject.
    pub records: i64,
    /// Why it holds them.
    pub purpose: String,
    /// The categories of personal data it holds.
    pub categories: Vec<String>,
    /// How long it keeps them.
    pub retention: String,
    /// What an erasure does here: `delete` or `anonymize`.
    #[schema(schema_with = schemas::erasure)]
    pub erasure: String,
}

pub fn self_uri(id: Uuid) -> String {
    format!("/api/v2/gdpr/requests/{id}")
}

/// ISO-8601 UTC with milliseconds and `Z`, as Genesys writes dates.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
