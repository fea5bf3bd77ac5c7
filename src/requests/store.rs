//! Reading requests back: one request, or a page of them, with their jobs, related requests and
//! signed result links — a fixed number of statements however many requests a page holds.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

use super::create::{FINALIZE, ReplacementsColumn};
use super::model::{
    GdprRequest, JobView, RelatedRequest, RequestError, RequestType, ServiceSummary, Status,
    self_uri, timestamp,
};
use crate::secrets::ServerKey;
use crate::wire::{DomainEntityRef, GdprSubject, Page};
use crate::worker::queue::AWAITING_CALLBACK;

/// Builds the absolute, signed, expiring URLs of export archives.
#[derive(Debug, Clone)]
pub struct ResultLinks {
    pub public_url: String,
    pub key: ServerKey,
    pub ttl: Duration,
}

impl ResultLinks {
    pub fn url(&self, request_id: Uuid, file: &str, archive_expires: DateTime<Utc>) -> String {
        let expires = (Utc::now() + self.ttl).min(archive_expires).timestamp();
        let signature = sign(&self.key, request_id, file, expires);
        format!(
            "{}/api/v2/gdpr/requests/{request_id}/results/{file}?expires={expires}&signature={signature}",
            self.public_url.trim_end_matches('/')
        )
    }
}

pub fn sign(key: &ServerKey, request_id: Uuid, file: &str, expires: i64) -> String {
    key.sign(&[
        b"results",
        request_id.as_bytes(),
        file.as_bytes(),
        &expires.to_be_bytes(),
    ])
}

pub fn verify(
    key: &ServerKey,
    request_id: Uuid,
    file: &str,
    expires: i64,
    signature: &str,
) -> bool {
    key.verify(
        &[
            b"results",
            request_id.as_bytes(),
            file.as_bytes(),
            &expires.to_be_bytes(),
        ],
        signature,
    )
}

#[derive(sqlx::FromRow)]
struct RequestRow {
    id: Uuid,
    request_type: String,
    name: Option<String>,
    subject: Json<GdprSubject>,
    replacement_terms: Option<Json<ReplacementsColumn>>,
    status: String,
    error: Option<Json<RequestError>>,
    summary: Option<Json<Vec<ServiceSummary>>>,
    created_at: DateTime<Utc>,
    due_date: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    client_id: Uuid,
    client_name: String,
    callback_url: Option<String>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    request_id: Uuid,
    service: String,
    action: String,
    status: String,
    attempts: i32,
    matched: Option<i64>,
    deleted: i64,
    anonymized: i64,
    updated: i64,
    retained: i64,
    retained_reason: Option<String>,
    last_error: Option<String>,
    locked_by: Option<String>,
    /// A bundle's service jobs (see [`crate::requests::create::BUNDLE`]).
    bundle_jobs: Option<Json<Vec<(String, String)>>>,
}

impl JobRow {
    /// A job not yet run: `queued`, nothing counted.
    fn queued(request_id: Uuid, service: String, action: String) -> JobRow {
        JobRow {
            request_id,
            service,
            action,
            status: "queued".to_owned(),
            attempts: 0,
            matched: None,
            deleted: 0,
            anonymized: 0,
            updated: 0,
            retained: 0,
            retained_reason: None,
            last_error: None,
            locked_by: None,
            bundle_jobs: None,
        }
    }

    /// The job as its services' jobs: a bundle's each with the bundle's state (while it is queued or
    /// runs; once it has run, its services' jobs are rows of their own), any other job itself.
    fn per_service(self) -> Vec<JobRow> {
        let Some(Json(bundle)) = &self.bundle_jobs else {
            return vec![self];
        };
        bundle
            .iter()
            .map(|(service, action)| JobRow {
                status: self.status.clone(),
                attempts: self.attempts,
                last_error: self.last_error.clone(),
                locked_by: self.locked_by.clone(),
                ..JobRow::queued(self.request_id, service.clone(), action.clone())
            })
            .collect()
    }
}

const SELECT_REQUESTS: &str = "SELECT r.id, r.request_type, r.name, r.subject, r.replacement_terms,
        r.status, r.error, r.summary, r.created_at, r.due_date, r.completed_at,
        c.id AS client_id, c.name AS client_name, r.callback_url
   FROM gdpr_requests r JOIN api_clients c ON c.id = r.client_id";

/// What a request's creation wrote: enough to answer with the request as it stands, without
/// reading it back.
pub struct Created {
    pub id: Uuid,
    pub request_type: RequestType,
    pub name: Option<String>,
    pub subject: GdprSubject,
    pub replacement_terms: Option<ReplacementsColumn>,
    pub created_at: DateTime<Utc>,
    pub due_date: DateTime<Utc>,
    pub client_id: Uuid,
    pub client_name: String,
    pub callback_url: Option<String>,
    /// Its service jobs: service and action.
    pub jobs: Vec<(String, &'static str)>,
    /// Its related requests (the members of a merge set).
    pub related: Vec<Uuid>,
}

impl Created {
    /// The request as [`get`] shows it before a worker has taken any of its jobs: `INITIATED`,
    /// every job queued.
    pub fn view(self) -> GdprRequest {
        let id = self.id;
        let row = RequestRow {
            id,
            request_type: self.request_type.as_str().to_owned(),
            name: self.name,
            subject: Json(self.subject),
            replacement_terms: self.replacement_terms.map(Json),
            status: Status::Initiated.as_str().to_owned(),
            error: None,
            summary: None,
            created_at: self.created_at,
            due_date: self.due_date,
            completed_at: None,
            client_id: self.client_id,
            client_name: self.client_name,
            callback_url: self.callback_url,
        };
        let mut jobs: Vec<JobRow> = self
            .jobs
            .into_iter()
            .map(|(service, action)| JobRow::queued(id, service, action.to_owned()))
            .collect();
        jobs.sort_by(|a, b| a.service.cmp(&b.service));
        let mut related = self.related;
        related.sort();
        let related = related
            .into_iter()
            .map(|id| RelatedRequest {
                id,
                self_uri: self_uri(id),
            })
            .collect();
        view(
            row,
            jobs.iter().map(job_view).collect(),
            Vec::new(),
            related,
        )
    }
}

pub async fn get(
    pool: &PgPool,
    org_id: Uuid,
    id: Uuid,
    links: &ResultLinks,
) -> sqlx::Result<Option<GdprRequest>> {
    let row: Option<RequestRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_REQUESTS} WHERE r.org_id = $1 AND r.id = $2"
    )))
    .bind(org_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(render(pool, vec![row], links).await?.pop())
}

/// A page of an organization's requests, newest first (related requests of a merge set are
/// listed under their parent, not on their own), and how many there are.
pub async fn list(
    pool: &PgPool,
    org_id: Uuid,
    page: Page,
    links: &ResultLinks,
) -> sqlx::Result<(Vec<GdprRequest>, i64)> {
    let rows: Vec<RequestRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_REQUESTS} WHERE r.org_id = $1 AND r.parent_id IS NULL
          ORDER BY r.created_at DESC, r.id DESC LIMIT $2 OFFSET $3"
    )))
    .bind(org_id)
    .bind(page.size)
    .bind(page.offset())
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM gdpr_requests WHERE org_id = $1 AND parent_id IS NULL",
    )
    .bind(org_id)
    .fetch_one(pool)
    .await?;
    Ok((render(pool, rows, links).await?, total))
}

async fn render(
    pool: &PgPool,
    rows: Vec<RequestRow>,
    links: &ResultLinks,
) -> sqlx::Result<Vec<GdprRequest>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let job_rows: Vec<JobRow> = sqlx::query_as(
        "SELECT request_id, service, action, status, attempts, matched, deleted, anonymized,
                updated, retained, retained_reason, last_error, locked_by, bundle_jobs
           FROM gdpr_jobs WHERE request_id = ANY($1) AND service <> $2",
    )
    .bind(&ids)
    .bind(FINALIZE)
    .fetch_all(pool)
    .await?;
    let mut jobs: Vec<JobRow> = job_rows.into_iter().flat_map(JobRow::per_service).collect();
    // By service, in byte order (the order of `COLLATE "C"`).
    jobs.sort_by(|a, b| a.service.cmp(&b.service));
    let children: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT parent_id, id FROM gdpr_requests WHERE parent_id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let archives: Vec<(Uuid, Uuid, String, DateTime<Utc>)> = sqlx::query_as(
        // The archives of the requests and those of their related requests, each found by
        // its own index (one condition with OR read every archive whole).
        "SELECT coalesce(r.parent_id, r.id), a.request_id, a.file_name, a.expires_at
           FROM gdpr_requests r JOIN export_archives a ON a.request_id = r.id
          WHERE r.id = ANY($1) AND a.expires_at > now()
         UNION
         SELECT coalesce(r.parent_id, r.id), a.request_id, a.file_name, a.expires_at
           FROM gdpr_requests r JOIN export_archives a ON a.request_id = r.id
          WHERE r.parent_id = ANY($1) AND a.expires_at > now()
          ORDER BY 2, 3",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;

    Ok(rows
        .into_iter()
        .map(|row| {
            let urls: Vec<String> = archives
                .iter()
                .filter(|(owner, ..)| *owner == row.id)
                .map(|(_, request_id, file, expires)| links.url(*request_id, file, *expires))
                .collect();
            let related: Vec<RelatedRequest> = children
                .iter()
                .filter(|(parent, _)| *parent == row.id)
                .map(|(_, id)| RelatedRequest {
                    id: *id,
                    self_uri: self_uri(*id),
                })
                .collect();
            let jobs = jobs
                .iter()
                .filter(|j| j.request_id == row.id)
                .map(job_view)
                .collect();
            view(row, jobs, urls, related)
        })
        .collect())
}

fn view(
    row: RequestRow,
    jobs: Vec<JobView>,
    urls: Vec<String>,
    related: Vec<RelatedRequest>,
) -> GdprRequest {
    GdprRequest {
        id: row.id,
        name: row.name,
        created_by: DomainEntityRef {
            id: row.client_id.to_string(),
            name: Some(row.client_name),
            self_uri: Some(format!("/api/v2/oauth/clients/{}", row.client_id)),
        },
        replacement_terms: row.replacement_terms.map(|r| r.0.wire),
        request_type: RequestType::parse(&row.request_type).unwrap_or(RequestType::GdprGet),
        created_date: timestamp(row.created_at),
        status: Status::parse(&row.status).unwrap_or(Status::Error),
        subject: row.subject.0,
        results_url: urls.first().cloned(),
        results_urls: (!urls.is_empty()).then_some(urls),
        self_uri: self_uri(row.id),
        jobs,
        error: row.error.map(|e| e.0),
        due_date: timestamp(row.due_date),
        completed_date: row.completed_at.map(timestamp),
        related_requests: (!related.is_empty()).then_some(related),
        access_summary: row.summary.map(|s| s.0),
        callback_url: row.callback_url,
    }
}

fn job_view(j: &JobRow) -> JobView {
    let awaiting = j.status == "running" && j.locked_by.as_deref() == Some(AWAITING_CALLBACK);
    let status = match (j.status.as_str(), j.attempts) {
        _ if awaiting => "AWAITING_CALLBACK",
        ("queued", 0) | ("waiting", _) => "QUEUED",
        ("queued", _) => "RETRYING",
        ("running", _) => "RUNNING",
        ("completed", _) => "COMPLETED",
        _ => "ERROR",
    };
    JobView {
        service: j.service.clone(),
        action: j.action.clone(),
        status: status.to_owned(),
        attempts: j.attempts,
        matched: j.matched,
        deleted: j.deleted,
        anonymized: j.anonymized,
        updated: j.updated,
        retained: j.retained,
        retained_reason: j.retained_reason.clone(),
        // While a service works on a job it accepted, the text is what happens if it never
        // calls back, not a failure.
        error: j.last_error.clone().filter(|_| !awaiting),
    }
}
