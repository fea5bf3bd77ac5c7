//! The request types and statuses, exactly as Genesys spells them, and the `GDPRRequest` wire
//! model with our extensions.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::wire::{DomainEntityRef, GdprSubject};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplacementTerm {
    #[serde(rename = "type")]
    pub kind: String,
    pub existing_value: String,
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
}

/// `GDPRRequest`, plus the extensions (`jobs`, `error`, `dueDate`, `completedDate`,
/// `relatedRequests`, `accessSummary`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GdprRequest {
    pub id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub created_by: DomainEntityRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacement_terms: Option<Vec<ReplacementTerm>>,
    pub request_type: RequestType,
    pub created_date: String,
    pub status: Status,
    pub subject: GdprSubject,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results_urls: Option<Vec<String>>,
    pub self_uri: String,
    pub jobs: Vec<JobView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RequestError>,
    pub due_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related_requests: Option<Vec<RelatedRequest>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_summary: Option<Vec<ServiceSummary>>,
}

/// One data service's part of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub service: String,
    /// `summarize`, `export`, `update`, `delete` or `anonymize`.
    pub action: String,
    /// `QUEUED`, `RUNNING`, `RETRYING`, `COMPLETED` or `ERROR`.
    pub status: String,
    pub attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<i64>,
    pub deleted: i64,
    pub anonymized: i64,
    pub updated: i64,
    pub retained: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retained_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelatedRequest {
    pub id: Uuid,
    pub self_uri: String,
}

/// One line of a `GDPR_GET` access summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSummary {
    pub service: String,
    pub records: i64,
    pub purpose: String,
    pub categories: Vec<String>,
    pub retention: String,
    /// What an erasure does here: `delete` or `anonymize`.
    pub erasure: String,
}

pub fn self_uri(id: Uuid) -> String {
    format!("/api/v2/gdpr/requests/{id}")
}

/// ISO-8601 UTC with milliseconds and `Z`, as Genesys writes dates.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
