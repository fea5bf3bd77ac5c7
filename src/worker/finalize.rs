//! Finishing a request once its service jobs are done: the access summary, the export archive,
//! the index update, or — after an erasure — the index clean-up and the masking of every stored
//! trace of the erased identifiers.

use chrono::{Duration, Utc};
use serde_json::json;
use serde_json::value::RawValue;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use super::archive::{self, ServiceExport};
use super::queue::{self, Claimed};
use super::{RequestWork, Worker};
use crate::catalog::Outcome;
use crate::index::store::Staging;
use crate::index::{IndexRecord, SearchType};
use crate::requests::create::{FINALIZE, term_hashes};
use crate::requests::mask::mask_subject;
use crate::requests::model::{RequestType, ServiceSummary, Status, timestamp};
use crate::requests::terms::{Replacement, TermKind, Terms};
use crate::wire::GdprSubject;

/// What a service job did, as the finalization reads it.
#[derive(sqlx::FromRow)]
pub struct JobResult {
    service: String,
    status: String,
    matched: Option<i64>,
    retained: i64,
    last_error: Option<String>,
    attempts: i32,
    result: Option<Json<Box<RawValue>>>,
}

impl JobResult {
    /// The job of `service` that completed at attempt `attempts` with `outcome`, whose export it
    /// takes.
    pub fn completed(service: &str, attempts: i32, outcome: &mut Outcome) -> JobResult {
        JobResult {
            service: service.to_owned(),
            status: "completed".to_owned(),
            matched: Some(outcome.matched),
            retained: outcome.retained,
            last_error: None,
            attempts,
            result: outcome.export.take().map(Json),
        }
    }
}

/// Runs the finalize job `job` in a transaction of its own.
pub async fn run(worker: &Worker, job: &Claimed) -> anyhow::Result<()> {
    let mut tx = worker.begin().await?;
    queue::mark_finalizing(&mut tx, job.request_id).await?;
    if finish(worker, &mut tx, job, None).await? {
        tx.commit().await?;
    }
    Ok(())
}

/// Finalizes `job`'s request in the caller's transaction and completes `job` (a finalize job, or
/// a bundle whose row the caller has replaced by its services' jobs in that transaction); the caller has
/// marked the request `FINALIZING` (a guarded unit that finishes the request's last service job
/// did so as it released `job`), unless the request finishes in the transaction that finished
/// its last service job, where no other status would be seen (see
/// [`queue::take_finalize_after`]). Returns whether the worker still held the job: when not,
/// another worker took it over and nothing done here may stay (the caller rolls back).
///
/// `known` are the service jobs' results when the caller has them (a bundle's, its exports
/// included, which its jobs' rows are written without); otherwise they are read from the rows.
pub async fn finish(
    worker: &Worker,
    tx: &mut PgConnection,
    job: &Claimed,
    known: Option<Vec<JobResult>>,
) -> anyhow::Result<bool> {
    let work = &job.work;
    let request_type = RequestType::parse(&work.request_type)
        .ok_or_else(|| anyhow::anyhow!("unknown request type {:?}", work.request_type))?;
    // By service, in byte order either way (as requests list their jobs).
    // A bundle's jobs' rows were written without their exports: none to clear after the archive.
    let rows_hold_exports = known.is_none();
    let mut jobs: Vec<JobResult> = match known {
        Some(mut jobs) => {
            jobs.sort_by(|a, b| a.service.cmp(&b.service));
            jobs
        }
        None => {
            sqlx::query_as(
                "SELECT service, status, matched, retained, last_error, attempts, result
                   FROM gdpr_jobs WHERE request_id = $1 AND service <> $2
                  ORDER BY service COLLATE \"C\"",
            )
            .bind(job.request_id)
            .bind(FINALIZE)
            .fetch_all(&mut *tx)
            .await?
        }
    };
    let failed: Vec<String> = jobs
        .iter()
        .filter(|j| j.status == "error")
        .map(|j| {
            format!(
                "{} failed after {} attempts: {}",
                j.service,
                j.attempts,
                j.last_error.as_deref().unwrap_or("no reason recorded")
            )
        })
        .collect();

    let mut summary = None;
    if failed.is_empty() {
        match request_type {
            RequestType::GdprGet => summary = Some(access_summary(worker, &jobs)),
            RequestType::GdprExport => {
                store_archive(
                    worker,
                    &mut *tx,
                    job.request_id,
                    &mut jobs,
                    rows_hold_exports,
                )
                .await?
            }
            RequestType::GdprUpdate => update_index(worker, &mut *tx, work).await?,
            RequestType::GdprDelete => {
                let users_retained = jobs.iter().any(|j| j.retained > 0);
                erase_from_index(&mut *tx, work, users_retained).await?;
                mask_traces(worker, &mut *tx, job.request_id, work).await?;
            }
        }
    }

    let (status, error) = if failed.is_empty() {
        (Status::Completed, None)
    } else {
        let error = json!({ "code": "service.failed", "message": failed.join("; ") });
        (Status::Error, Some(error))
    };
    // The finalize job completed and, when the worker still held it, the request finished: one
    // statement. A bundle has no finalize job: its row is gone already, replaced in this
    // transaction by its services' jobs, which only its holder can do; a bundle whose row is
    // still there is not held.
    let (held, parent): (bool, Option<Uuid>) = sqlx::query_as(
        "WITH held AS (
           UPDATE gdpr_jobs SET status = 'completed', locked_by = NULL, locked_until = NULL,
                  completed_at = now(), last_error = NULL
            WHERE id = $5 AND locked_by = $6 AND status = 'running' AND NOT $7
        RETURNING id),
         bundle_done AS (
           SELECT $7 AND NOT EXISTS (SELECT FROM gdpr_jobs WHERE id = $5) AS done),
         finished AS (
           UPDATE gdpr_requests
              SET status = $2, error = $3, summary = coalesce($4, summary),
                  completed_at = now(), updated_at = now()
            WHERE id = $1 AND status NOT IN ('COMPLETED', 'ERROR')
              AND ((SELECT done FROM bundle_done) OR EXISTS (SELECT FROM held))
        RETURNING parent_id)
         SELECT (SELECT done FROM bundle_done) OR EXISTS (SELECT FROM held),
                (SELECT parent_id FROM finished)",
    )
    .bind(job.request_id)
    .bind(status.as_str())
    .bind(error)
    .bind(summary.map(Json))
    .bind(job.id)
    .bind(&worker.id)
    .bind(job.bundle_jobs.is_some())
    .fetch_one(&mut *tx)
    .await?;
    if !held {
        return Ok(false);
    }
    if let Some(parent) = parent {
        queue::refresh_parent(&mut *tx, parent).await?;
    }
    Ok(true)
}

fn access_summary(worker: &Worker, jobs: &[JobResult]) -> Vec<ServiceSummary> {
    jobs.iter()
        .filter_map(|j| {
            let service = worker.catalog.service(&j.service)?;
            Some(ServiceSummary {
                service: service.name.clone(),
                records: j.matched.unwrap_or(0),
                purpose: service.purpose.clone(),
                categories: service.categories.clone(),
                retention: service.retention.clone(),
                erasure: match service.erasure {
                    crate::catalog::Erasure::Delete => "delete".into(),
                    crate::catalog::Erasure::Anonymize => "anonymize".into(),
                },
            })
        })
        .collect()
}

async fn store_archive(
    worker: &Worker,
    conn: &mut PgConnection,
    request_id: Uuid,
    jobs: &mut [JobResult],
    rows_hold_exports: bool,
) -> anyhow::Result<()> {
    let (request_type, created_at): (String, chrono::DateTime<Utc>) =
        sqlx::query_as("SELECT request_type, created_at FROM gdpr_requests WHERE id = $1")
            .bind(request_id)
            .fetch_one(&mut *conn)
            .await?;
    let empty = Outcome::empty_export();
    let exports: Vec<ServiceExport<'_>> = jobs
        .iter()
        .filter_map(|j| {
            let service = worker.catalog.service(&j.service)?;
            Some(ServiceExport {
                service: &service.name,
                purpose: &service.purpose,
                categories: &service.categories,
                retention: &service.retention,
                data: j.result.as_ref().map_or(&*empty, |r| &*r.0),
            })
        })
        .collect();
    let created = timestamp(created_at);
    let bytes = archive::build(request_id, &request_type, &created, &exports)?;
    // The rows are in the archive now. Their text goes before the archive is written: the
    // statement takes a copy of the archive, and the largest exports are not held beside both.
    drop(exports);
    for job in jobs.iter_mut() {
        job.result = None;
    }
    let expires = Utc::now() + Duration::seconds(worker.settings.export_ttl_secs as i64);
    sqlx::query(
        "INSERT INTO export_archives (request_id, file_name, content, expires_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (request_id, file_name) DO UPDATE
            SET content = EXCLUDED.content, expires_at = EXCLUDED.expires_at",
    )
    .bind(request_id)
    .bind(format!("gdpr-export-{request_id}.zip"))
    .bind(bytes)
    .bind(expires)
    .execute(&mut *conn)
    .await?;
    // The rows now live in the archive only, which expires. (Only the jobs that hold rows are
    // written: the others, and the finalize job, need no new row version.)
    if rows_hold_exports {
        sqlx::query(
            "UPDATE gdpr_jobs SET result = NULL WHERE request_id = $1 AND result IS NOT NULL",
        )
        .bind(request_id)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Applies the replacement terms to the index records holding the existing values.
async fn update_index(
    worker: &Worker,
    conn: &mut PgConnection,
    work: &RequestWork,
) -> anyhow::Result<()> {
    let replacements = work
        .replacement_terms
        .as_ref()
        .map(|r| r.0.parsed.clone())
        .unwrap_or_default();
    let searchable: Vec<(SearchType, &Replacement)> = replacements
        .iter()
        .filter_map(|r| r.kind.search_type().map(|t| (t, r)))
        .collect();
    if searchable.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = searchable.iter().map(|(t, _)| t.as_str()).collect();
    let values: Vec<&str> = searchable
        .iter()
        .map(|(_, r)| r.existing.as_str())
        .collect();
    let records: Vec<Json<GdprSubject>> = sqlx::query_scalar(
        "SELECT s.record FROM subjects s
          WHERE s.id IN (SELECT i.subject_id FROM unnest($2::text[], $3::text[]) AS t(id_type, value)
                           JOIN subject_identifiers i
                             ON i.org_id = $1 AND i.id_type = t.id_type AND i.value = t.value)",
    )
    .bind(work.org_id)
    .bind(&kinds)
    .bind(&values)
    .fetch_all(&mut *conn)
    .await?;
    let mut rewritten = Vec::with_capacity(records.len());
    for record in records {
        let mut subject = record.0;
        for (kind, replacement) in &searchable {
            replace_in_subject(&mut subject, *kind, replacement, &worker.normalizer);
        }
        rewritten.push(
            IndexRecord::parse(subject, &worker.normalizer).map_err(|e| {
                anyhow::anyhow!("an updated index record is no longer valid: {}", e.field)
            })?,
        );
    }
    let mut staging = Staging::begin(conn, work.org_id).await?;
    staging.add(conn, &rewritten).await?;
    staging.merge(conn).await?;
    Ok(())
}

/// Rewrites the values of `kind` that normalize to the replacement's existing value.
fn replace_in_subject(
    s: &mut GdprSubject,
    kind: SearchType,
    r: &Replacement,
    n: &crate::index::Normalizer,
) {
    let is_existing = |v: &str| n.normalize(kind, v).is_ok_and(|x| x.as_str() == r.existing);
    let replace = |v: &mut String| {
        if is_existing(v) {
            *v = r.updated.clone();
        }
    };
    match kind {
        SearchType::Name => s.name.iter_mut().for_each(replace),
        SearchType::Address => s.addresses.iter_mut().flatten().for_each(replace),
        SearchType::Phone => s.phone_numbers.iter_mut().flatten().for_each(replace),
        SearchType::Email => s.email_addresses.iter_mut().flatten().for_each(replace),
        SearchType::ExternalId => s.external_id.iter_mut().for_each(replace),
        social => {
            if let Some(h) = s
                .social_handle
                .as_mut()
                .filter(|h| h.kind == social.as_str())
            {
                replace(&mut h.value);
            }
        }
    }
}

/// Removes the erased person's records from the index: those named by id and those holding
/// one of the identifiers the erasure matched on. An active employee's user record stays when
/// the directory retained it. Every branch is an index lookup.
async fn erase_from_index(
    conn: &mut PgConnection,
    work: &RequestWork,
    keep_users: bool,
) -> anyhow::Result<()> {
    let terms: &Terms = &work.terms.0;
    let (mut kinds, mut values): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let (mut id_kinds, mut id_keys): (Vec<&str>, Vec<String>) = (Vec::new(), Vec::new());
    let mut dialer_ids: Vec<&str> = Vec::new();
    for term in terms.matching() {
        match term.kind {
            TermKind::UserId => {
                id_kinds.push("user");
                id_keys.push(term.value.clone());
            }
            TermKind::ExternalContactId => {
                id_kinds.push("externalContact");
                id_keys.push(term.value.clone());
            }
            TermKind::JourneyCookie => {
                id_kinds.push("journeyCustomer");
                id_keys.push(format!("cookie:{}", term.value));
            }
            TermKind::DialerContactId => dialer_ids.push(&term.value),
            kind => {
                kinds.push(kind.as_str());
                values.push(&term.value);
            }
        }
    }
    sqlx::query(
        "DELETE FROM subjects
          WHERE org_id = $1 AND NOT ($6 AND kind = 'user')
            AND id IN (SELECT i.subject_id
                         FROM unnest($2::text[], $3::text[]) AS t(id_type, value)
                         JOIN subject_identifiers i
                           ON i.org_id = $1 AND i.id_type = t.id_type AND i.value = t.value
                       UNION ALL
                       SELECT s.id
                         FROM unnest($4::text[], $5::text[]) AS k(kind, ref_key)
                         JOIN subjects s
                           ON s.org_id = $1 AND s.kind = k.kind AND s.ref_key = k.ref_key)",
    )
    .bind(work.org_id)
    .bind(&kinds)
    .bind(&values)
    .bind(&id_kinds)
    .bind(&id_keys)
    .bind(keep_users)
    .execute(&mut *conn)
    .await?;
    if !dialer_ids.is_empty() {
        // A dialer contact's index key is `contactListId:id`; the request knows the id.
        sqlx::query(
            "DELETE FROM subjects
              WHERE org_id = $1 AND kind = 'dialerContact'
                AND split_part(ref_key, ':', 2) = ANY($2)",
        )
        .bind(work.org_id)
        .bind(&dialer_ids)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// After an erasure, no stored request may still hold the erased identifiers in plain text:
/// this one and every finished request naming any of them keep a masked subject only; their
/// identifiers, replacement terms, job results and export archives go.
async fn mask_traces(
    worker: &Worker,
    conn: &mut PgConnection,
    request_id: Uuid,
    work: &RequestWork,
) -> anyhow::Result<()> {
    let hashes = term_hashes(&worker.key, &work.terms.0);
    let requests: Vec<(Uuid, Json<GdprSubject>, Option<String>)> = sqlx::query_as(
        "SELECT id, subject, name FROM gdpr_requests
          WHERE org_id = $1 AND term_hashes && $2
            AND (id = $3 OR status IN ('COMPLETED', 'ERROR')
                 OR id = (SELECT parent_id FROM gdpr_requests WHERE id = $3))",
    )
    .bind(work.org_id)
    .bind(&hashes)
    .bind(request_id)
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = requests.iter().map(|r| r.0).collect();
    let masked: Vec<Json<GdprSubject>> = requests
        .iter()
        .map(|r| Json(mask_subject(&r.1.0)))
        .collect();
    let names: Vec<Option<String>> = requests
        .iter()
        .map(|r| r.2.as_ref().map(|_| "[masked]".to_owned()))
        .collect();
    // The requests masked, their jobs' results and their archives dropped: one statement.
    sqlx::query(
        "WITH masked AS (
           UPDATE gdpr_requests r
              SET subject = m.subject, name = m.name, terms = '[]'::jsonb,
                  replacement_terms = NULL, updated_at = now()
             FROM unnest($1::uuid[], $2::jsonb[], $3::text[]) AS m(id, subject, name)
            WHERE r.id = m.id),
         results AS (
           UPDATE gdpr_jobs SET result = NULL WHERE request_id = ANY($1) AND result IS NOT NULL)
         DELETE FROM export_archives WHERE request_id = ANY($1)",
    )
    .bind(&ids)
    .bind(&masked)
    .bind(&names)
    .execute(conn)
    .await?;
    Ok(())
}
