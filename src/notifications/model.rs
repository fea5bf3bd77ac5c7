//! The wire models of notification endpoints, the payload sent, and the delivery log.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::openapi::schemas;
use crate::requests::model::{RequestType, Status};

/// The body of `PUT /api/v2/gdpr/notifications/endpoint`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(
    as = GDPRNotificationEndpointUpdate,
    description = "**Extension.** Where to POST the status changes of the client's requests.",
    example = json!({"url": "https://privacy.example.com/hooks/gdpr"})
)]
pub struct EndpointUpdate {
    /// An `https://` URL on a public address.
    pub url: Option<String>,
}

/// A client's notification endpoint and its signing secrets.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(
    as = GDPRNotificationEndpoint,
    description = "**Extension.** Where the status changes of the client's requests are POSTed, \
        and the Standard Webhooks secrets that sign them.",
    example = json!({
        "url": "https://privacy.example.com/hooks/gdpr",
        "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwVGhpcyBpcyBub3Q="],
        "createdDate": "2026-03-02T09:15:27.512Z",
        "updatedDate": "2026-03-02T09:15:27.512Z"
    })
)]
pub struct Endpoint {
    /// Absent when the client only gives a `callbackUrl` per request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The signing secrets, newest first; every message is signed with each of them.
    pub secrets: Vec<String>,
    /// After a rotation: when the secrets after the first stop signing.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub previous_secret_expires_date: Option<String>,
    #[schema(format = DateTime)]
    pub created_date: String,
    #[schema(format = DateTime)]
    pub updated_date: String,
}

/// What is POSTed on a status change: ids, type, statuses and dates, never personal data.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(
    as = GDPRNotification,
    description = "**Extension.** The body POSTed to a notification endpoint when a request \
        changes status (`type` is `gdpr.request.status`).",
    example = json!({
        "type": "gdpr.request.status",
        "timestamp": "2026-03-02T09:15:29.104Z",
        "data": {
            "id": "0195a3c4-8d2e-7b10-9f3a-6c1d2e3f4a5b",
            "requestType": "GDPR_EXPORT",
            "status": "COMPLETED",
            "previousStatus": "FINALIZING",
            "createdDate": "2026-03-02T09:15:27.512Z",
            "updatedDate": "2026-03-02T09:15:29.101Z"
        }
    })
)]
pub struct Payload {
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub data: PayloadData,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GDPRNotificationData)]
pub struct PayloadData {
    /// The request.
    pub id: Uuid,
    pub request_type: RequestType,
    /// The status it has now.
    pub status: Status,
    /// The status it had before.
    pub previous_status: Status,
    /// For a related request of a merge set: the request it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Uuid>,
    #[schema(format = DateTime)]
    pub created_date: String,
    #[schema(format = DateTime)]
    pub updated_date: String,
}

/// The notifications of one request and how their delivery went.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(
    as = GDPRNotificationListing,
    description = "**Extension.** The notifications of one request, oldest first."
)]
pub struct NotificationListing {
    pub entities: Vec<NotificationView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(
    as = GDPRNotificationDelivery,
    description = "**Extension.** One status change of a request, as notified."
)]
pub struct NotificationView {
    /// The message id: `webhook-id` is `msg_` and this id without dashes, on every attempt.
    pub id: Uuid,
    /// The request's status this notification announces.
    pub status: Status,
    pub previous_status: Status,
    /// Where it is sent.
    pub url: String,
    #[schema(schema_with = schemas::notification_state)]
    pub state: String,
    /// Attempts so far.
    pub attempts: i32,
    #[schema(format = DateTime)]
    pub created_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub delivered_date: Option<String>,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Every attempt, oldest first.
    pub deliveries: Vec<Attempt>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GDPRNotificationAttempt)]
pub struct Attempt {
    pub attempt: i32,
    #[schema(format = DateTime)]
    pub date: String,
    /// The receiver's answer, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    /// Why the attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: i64,
}
