//! Accepting a request: validation, resolution of ids through the index, the ambiguity guard,
//! merge-set fan-out, duplicate suppression — all committed in one transaction before the 202.

use std::collections::HashMap;

use chrono::{Months, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::model::{GdprRequest, NewRequest, ReplacementTerm, RequestType};
use super::store::Created;
use super::terms::{Replacement, TermKind, Terms};
use crate::auth::Caller;
use crate::catalog::{Catalog, Erasure, Location};
use crate::index::record::{record_keys, spellings_of};
use crate::index::{Normalizer, RecordKey, SearchType, SubjectKind};
use crate::notifications;
use crate::outbound::Outbound;
use crate::secrets::ServerKey;
use crate::wire::GdprSubject;

/// Why a request was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    UnknownId(String),
    /// The bare terms of an erasure match more than one person: each candidate is the list of
    /// index records of one person.
    #[error("the subject matches {} people", .0.len())]
    Ambiguous(Vec<Vec<GdprSubject>>),
    #[error("the Idempotency-Key was used for a different request")]
    IdempotencyMismatch,
    /// A duplicate finished while this request was being created: submitting again creates it.
    #[error("a duplicate request finished meanwhile")]
    RetryLater,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn invalid(field: &str, message: impl Into<String>) -> CreateError {
    CreateError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// What a client submitted, with the query and header parts.
pub struct Submission {
    pub body: NewRequest,
    pub delete_confirmed: bool,
    pub idempotency_key: Option<String>,
}

/// Everything creation needs besides the database.
pub struct Context<'a> {
    pub normalizer: &'a Normalizer,
    pub catalog: &'a Catalog,
    pub key: &'a ServerKey,
    pub max_attempts: i32,
    /// Checks callback URLs.
    pub outbound: &'a Outbound,
}

/// The request accepted, or the earlier one it duplicates.
#[derive(Debug)]
pub struct Accepted {
    pub id: Uuid,
    /// The request as it was created (`None` for a duplicate, which is read as it stands).
    pub created: Option<GdprRequest>,
}

pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;

/// How many times a submission inserts again after an identical request finished between its
/// insert and the look-up of that request, before it asks the caller to submit again.
const MAX_RACES: u32 = 3;

pub async fn submit(
    pool: &PgPool,
    ctx: &Context<'_>,
    caller: &Caller,
    submission: Submission,
) -> Result<Accepted, CreateError> {
    let body = submission.body;
    let request_type = parse_type(body.request_type.as_deref())?;
    if request_type == RequestType::GdprDelete && !submission.delete_confirmed {
        return Err(invalid(
            "deleteConfirmed",
            "A GDPR_DELETE erases personal data and cannot be undone: confirm it with the query parameter deleteConfirmed=true.",
        ));
    }
    let replacements = parse_replacements(
        request_type,
        body.replacement_terms.as_deref(),
        ctx.normalizer,
    )?;
    let name = parse_name(body.name)?;
    let callback_url = parse_callback_url(body.callback_url, ctx.outbound)?;
    let subject = body.subject.ok_or_else(|| {
        invalid(
            "subject",
            "The request needs a subject: the person it is about.",
        )
    })?;
    let named = record_keys(&subject).map_err(|e| invalid(&e.field, e.message))?;
    let bare = spellings_of(&subject, ctx.normalizer).map_err(|e| invalid(&e.field, e.message))?;
    if named.is_empty() && bare.is_empty() {
        return Err(invalid(
            "subject",
            "The subject has no identifier: give at least one of name, addresses, phoneNumbers, emailAddresses, socialHandle, externalId, userId, externalContactId, dialerContactId or journeyCustomer.",
        ));
    }

    let mut tx = pool.begin().await?;
    let resolved = resolve(&mut tx, caller.org_id, &named).await?;
    let mut bare_terms = Terms::default();
    for (kind, value, raw) in &bare {
        bare_terms.add(
            TermKind::from_search_type(*kind),
            value.as_str().to_owned(),
            raw,
        );
    }
    if request_type == RequestType::GdprDelete && named.is_empty() && !bare_terms.has_strong() {
        guard_ambiguity(&mut tx, caller.org_id, &bare_terms).await?;
    }
    let groups = fan_out(
        &mut tx,
        caller.org_id,
        &resolved,
        &bare_terms,
        ctx.normalizer,
    )
    .await?;
    let all_terms = groups.iter().fold(Terms::default(), |mut all, g| {
        for t in &g.terms.0 {
            for raw in &t.raw {
                all.add(t.kind, t.value.clone(), raw);
            }
        }
        all
    });

    let replacements_column = replacements.as_ref().map(|parsed| {
        Json(ReplacementsColumn {
            wire: body.replacement_terms.clone().unwrap_or_default(),
            parsed: parsed.clone(),
        })
    });
    let now = Utc::now();
    let parent = NewRow {
        id: Uuid::now_v7(),
        subject: subject.clone(),
        terms: all_terms,
    };
    let subject_hash = subject_hash(ctx.key, request_type, &parent.terms);
    let hashes = term_hashes(ctx.key, &parent.terms);
    // An identical request in flight answers a duplicate. Should it finish between the insert
    // and the look-up of it, the insert is tried again (each statement sees what has committed
    // since): the caller is answered, not asked to submit again.
    let mut races = 0;
    let parent_id = loop {
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO gdpr_requests (id, org_id, client_id, request_type, name, subject, terms,
                 replacement_terms, term_hashes, subject_hash, status, idempotency_key, created_at,
                 due_date, callback_url)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'INITIATED', $11, $12, $13, $14)
             ON CONFLICT DO NOTHING
             RETURNING id",
        )
        .bind(parent.id)
        .bind(caller.org_id)
        .bind(caller.client_id)
        .bind(request_type.as_str())
        .bind(&name)
        .bind(Json(&parent.subject))
        .bind(Json(&parent.terms))
        .bind(&replacements_column)
        .bind(&hashes)
        .bind(&subject_hash)
        .bind(&submission.idempotency_key)
        .bind(now)
        .bind(due_date(now))
        .bind(&callback_url)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = inserted {
            break id;
        }
        match existing(
            &mut tx,
            caller,
            request_type,
            &subject_hash,
            submission.idempotency_key.as_deref(),
        )
        .await
        {
            Err(CreateError::RetryLater) if races < MAX_RACES => races += 1,
            answer => return answer,
        }
    };

    let mut job_rows = JobRows::new(ctx.max_attempts);
    let mut related = Vec::new();
    if groups.len() == 1 {
        job_rows.add_for(parent_id, caller.org_id, request_type, &replacements, ctx);
    } else {
        let children: Vec<NewRow> = groups
            .into_iter()
            .map(|g| NewRow {
                id: Uuid::now_v7(),
                subject: g.subject,
                terms: g.terms,
            })
            .collect();
        let shared = ChildShared {
            parent_id,
            request_type,
            name: &name,
            replacements: &replacements_column,
            callback_url: &callback_url,
            now,
        };
        insert_children(&mut tx, caller, &shared, &children, ctx.key).await?;
        for child in &children {
            job_rows.add_for(child.id, caller.org_id, request_type, &replacements, ctx);
        }
        related = children.iter().map(|c| c.id).collect();
    }
    let created = Created {
        id: parent_id,
        request_type,
        name,
        subject: parent.subject,
        replacement_terms: replacements_column.map(|r| r.0),
        created_at: now,
        due_date: due_date(now),
        client_id: caller.client_id,
        client_name: caller.client_name.clone(),
        callback_url,
        jobs: job_rows.service_jobs_of(parent_id),
        related,
    };
    job_rows.insert(&mut tx).await?;
    if created.callback_url.is_some() {
        notifications::store::ensure_secret(&mut tx, caller.client_id, caller.org_id).await?;
    }
    tx.commit().await?;
    Ok(Accepted {
        id: parent_id,
        // As created: a worker may already be at it, but the answer to its creation is the
        // request as it was accepted.
        created: Some(created.view()),
    })
}

/// What `replacement_terms` stores: the terms as sent (shown back) and as parsed (applied).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct ReplacementsColumn {
    pub wire: Vec<ReplacementTerm>,
    pub parsed: Vec<Replacement>,
}

struct NewRow {
    id: Uuid,
    subject: GdprSubject,
    terms: Terms,
}

/// One calendar month from receipt (GDPR Art. 12(3)).
fn due_date(now: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    now.checked_add_months(Months::new(1)).unwrap_or(now)
}

fn parse_type(raw: Option<&str>) -> Result<RequestType, CreateError> {
    let allowed = RequestType::ALL.map(RequestType::as_str).join(", ");
    let raw = raw
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            invalid(
                "requestType",
                format!("The requestType is required. Allowable values are: {allowed}"),
            )
        })?;
    RequestType::parse(raw).ok_or_else(|| {
        let shown: String = raw.chars().take(40).collect();
        invalid(
            "requestType",
            format!("Value [{shown}] is not valid for field type [requestType]. Allowable values are: {allowed}"),
        )
    })
}

fn parse_name(name: Option<String>) -> Result<Option<String>, CreateError> {
    let Some(name) = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            "The name must be at most 200 characters without control characters.",
        ));
    }
    Ok(Some(name))
}

/// A per-request notification URL: checked as a client's endpoint URL is.
fn parse_callback_url(
    url: Option<String>,
    outbound: &Outbound,
) -> Result<Option<String>, CreateError> {
    let Some(url) = url.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    outbound
        .check(&url)
        .map_err(|e| invalid("callbackUrl", format!("The callbackUrl is refused: {e}.")))?;
    Ok(Some(url))
}

fn parse_replacements(
    request_type: RequestType,
    terms: Option<&[ReplacementTerm]>,
    n: &Normalizer,
) -> Result<Option<Vec<Replacement>>, CreateError> {
    let terms = terms.filter(|t| !t.is_empty());
    match (request_type, terms) {
        (RequestType::GdprUpdate, None) => Err(invalid(
            "replacementTerms",
            "A GDPR_UPDATE needs replacementTerms: [{\"type\", \"existingValue\", \"updatedValue\"}].",
        )),
        (RequestType::GdprUpdate, Some(terms)) => {
            if terms.len() > 100 {
                return Err(invalid(
                    "replacementTerms",
                    "At most 100 replacement terms are accepted.",
                ));
            }
            terms
                .iter()
                .enumerate()
                .map(|(i, t)| parse_replacement(i, t, n))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        }
        (_, Some(_)) => Err(invalid(
            "replacementTerms",
            format!(
                "replacementTerms apply only to GDPR_UPDATE, not to {request_type}: remove them."
            ),
        )),
        (_, None) => Ok(None),
    }
}

fn parse_replacement(
    i: usize,
    t: &ReplacementTerm,
    n: &Normalizer,
) -> Result<Replacement, CreateError> {
    let field = |f: &str| format!("replacementTerms[{i}].{f}");
    let kind: SearchType = t.kind.trim().parse().map_err(|_| {
        invalid(
            &field("type"),
            format!("The type must be one of: {}", SearchType::allowed()),
        )
    })?;
    let existing = n
        .normalize(kind, &t.existing_value)
        .map_err(|e| invalid(&field("existingValue"), e.to_string()))?;
    let updated = n
        .normalize(kind, &t.updated_value)
        .map_err(|e| invalid(&field("updatedValue"), e.to_string()))?;
    if existing == updated {
        return Err(invalid(
            &field("updatedValue"),
            "The updated value is the same as the existing value.",
        ));
    }
    Ok(Replacement {
        kind: TermKind::from_search_type(kind),
        existing: existing.into_string(),
        existing_raw: t.existing_value.trim().to_owned(),
        updated: t.updated_value.trim().to_owned(),
    })
}

/// An index record the subject resolved to.
struct Resolved {
    key: RecordKey,
    subject: GdprSubject,
    canonical_contact_id: Option<String>,
}

/// Looks up the records the subject names by id; every one must be known.
async fn resolve(
    conn: &mut PgConnection,
    org_id: Uuid,
    named: &[RecordKey],
) -> Result<Vec<Resolved>, CreateError> {
    if named.is_empty() {
        return Ok(Vec::new());
    }
    let kinds: Vec<&str> = named.iter().map(|k| k.kind.as_str()).collect();
    let keys: Vec<&str> = named.iter().map(|k| k.key.as_str()).collect();
    let rows: Vec<(String, String, Json<GdprSubject>, Option<String>)> = sqlx::query_as(
        "SELECT s.kind, s.ref_key, s.record, s.canonical_contact_id
           FROM unnest($2::text[], $3::text[]) AS n(kind, ref_key)
           JOIN subjects s ON s.org_id = $1 AND s.kind = n.kind AND s.ref_key = n.ref_key",
    )
    .bind(org_id)
    .bind(&kinds)
    .bind(&keys)
    .fetch_all(conn)
    .await?;
    named
        .iter()
        .map(|key| {
            rows.iter()
                .find(|(kind, ref_key, _, _)| kind == key.kind.as_str() && ref_key == &key.key)
                .map(|(_, _, record, canonical)| Resolved {
                    key: key.clone(),
                    subject: record.0.clone(),
                    canonical_contact_id: canonical.clone(),
                })
                .ok_or_else(|| {
                    CreateError::UnknownId(format!(
                        "No {} with that id is known to gdprd's subject index.",
                        id_field(key.kind)
                    ))
                })
        })
        .collect()
}

fn id_field(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::User => "userId",
        SubjectKind::ExternalContact => "externalContactId",
        SubjectKind::DialerContact => "dialerContactId",
        SubjectKind::JourneyCustomer => "journeyCustomer",
    }
}

/// Every identifier of an index record, plus the record's own id.
fn record_terms(record: &Resolved, n: &Normalizer, terms: &mut Terms) {
    // Index records were validated when written; a spelling that no longer parses (say, after a
    // change of default region) is skipped rather than failing the request.
    if let Ok(spellings) = spellings_of(&record.subject, n) {
        for (kind, value, raw) in spellings {
            terms.add(TermKind::from_search_type(kind), value.into_string(), &raw);
        }
    }
    let (kind, id) = match record.key.kind {
        SubjectKind::User => (TermKind::UserId, record.key.key.clone()),
        SubjectKind::ExternalContact => (TermKind::ExternalContactId, record.key.key.clone()),
        SubjectKind::DialerContact => match record.key.key.split_once(':') {
            Some((_, id)) => (TermKind::DialerContactId, id.to_owned()),
            None => return,
        },
        SubjectKind::JourneyCustomer => match record.key.key.split_once(':') {
            Some(("cookie", id)) => (TermKind::JourneyCookie, id.to_owned()),
            _ => return,
        },
    };
    terms.add(kind, id.clone(), &id);
}

/// One request's worth of work: the subject shown and the terms its jobs use.
struct Group {
    subject: GdprSubject,
    terms: Terms,
}

/// A request naming a member of a merge set becomes one related request per member; whatever
/// else the subject names goes into one more. Otherwise there is one group.
async fn fan_out(
    conn: &mut PgConnection,
    org_id: Uuid,
    resolved: &[Resolved],
    bare: &Terms,
    n: &Normalizer,
) -> Result<Vec<Group>, CreateError> {
    let canonical: Vec<&str> = resolved
        .iter()
        .filter(|r| r.key.kind == SubjectKind::ExternalContact)
        .filter_map(|r| r.canonical_contact_id.as_deref())
        .collect();
    let members: Vec<(String, Json<GdprSubject>)> = if canonical.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT ref_key, record FROM subjects
              WHERE org_id = $1 AND kind = 'externalContact' AND canonical_contact_id = ANY($2)
              ORDER BY canonical_contact_id, ref_key",
        )
        .bind(org_id)
        .bind(&canonical)
        .fetch_all(&mut *conn)
        .await?
    };
    if members.len() < 2 {
        let mut terms = bare.clone();
        for record in resolved {
            record_terms(record, n, &mut terms);
        }
        return Ok(vec![Group {
            subject: GdprSubject::default(),
            terms,
        }]);
    }
    let mut groups: Vec<Group> = members
        .into_iter()
        .map(|(key, record)| {
            let member = Resolved {
                key: RecordKey {
                    kind: SubjectKind::ExternalContact,
                    key: key.clone(),
                },
                subject: record.0,
                canonical_contact_id: None,
            };
            let mut terms = Terms::default();
            record_terms(&member, n, &mut terms);
            Group {
                subject: GdprSubject {
                    external_contact_id: Some(key),
                    ..GdprSubject::default()
                },
                terms,
            }
        })
        .collect();
    let mut rest = bare.clone();
    let mut rest_subject = GdprSubject::default();
    for record in resolved
        .iter()
        .filter(|r| r.canonical_contact_id.is_none() || r.key.kind != SubjectKind::ExternalContact)
    {
        record_terms(record, n, &mut rest);
        merge_ids(&mut rest_subject, &record.subject);
    }
    if !rest.is_empty() {
        groups.push(Group {
            subject: rest_subject,
            terms: rest,
        });
    }
    Ok(groups)
}

fn merge_ids(into: &mut GdprSubject, from: &GdprSubject) {
    into.user_id = into.user_id.take().or_else(|| from.user_id.clone());
    into.dialer_contact_id = into
        .dialer_contact_id
        .take()
        .or_else(|| from.dialer_contact_id.clone());
    into.journey_customer = into
        .journey_customer
        .take()
        .or_else(|| from.journey_customer.clone());
    into.external_contact_id = into
        .external_contact_id
        .take()
        .or_else(|| from.external_contact_id.clone());
}

/// Refuses an erasure by name or address alone that matches more than one person. Records of
/// one merge set, or sharing a strong identifier (an email, a phone number, …), are one person.
async fn guard_ambiguity(
    conn: &mut PgConnection,
    org_id: Uuid,
    terms: &Terms,
) -> Result<(), CreateError> {
    let kinds: Vec<&str> = terms.0.iter().map(|t| t.kind.as_str()).collect();
    let values: Vec<&str> = terms.0.iter().map(|t| t.value.as_str()).collect();
    let records: Vec<(Uuid, Json<GdprSubject>, Option<String>)> = sqlx::query_as(
        "SELECT DISTINCT s.id, s.record, s.canonical_contact_id
           FROM unnest($2::text[], $3::text[]) AS t(id_type, value)
           JOIN subject_identifiers i ON i.org_id = $1 AND i.id_type = t.id_type AND i.value = t.value
           JOIN subjects s ON s.id = i.subject_id",
    )
    .bind(org_id)
    .bind(&kinds)
    .bind(&values)
    .fetch_all(&mut *conn)
    .await?;
    if records.len() < 2 {
        return Ok(());
    }
    let ids: Vec<Uuid> = records.iter().map(|r| r.0).collect();
    let shared: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT subject_id, id_type, value FROM subject_identifiers
          WHERE org_id = $1 AND subject_id = ANY($2) AND id_type NOT IN ('NAME', 'ADDRESS')",
    )
    .bind(org_id)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;

    let mut people = UnionFind::new(records.len());
    let index: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut first_with: HashMap<String, usize> = HashMap::new();
    for (i, (_, _, canonical)) in records.iter().enumerate() {
        if let Some(c) = canonical {
            let j = *first_with.entry(format!("merge\0{c}")).or_insert(i);
            people.union(i, j);
        }
    }
    for (subject_id, id_type, value) in &shared {
        let i = index[subject_id];
        let j = *first_with.entry(format!("{id_type}\0{value}")).or_insert(i);
        people.union(i, j);
    }
    let mut groups: HashMap<usize, Vec<GdprSubject>> = HashMap::new();
    for (i, (_, record, _)) in records.into_iter().enumerate() {
        groups.entry(people.find(i)).or_default().push(record.0);
    }
    if groups.len() > 1 {
        let mut candidates: Vec<Vec<GdprSubject>> = groups.into_values().collect();
        candidates.sort_by_key(|people| serde_json::to_string(&people[0]).unwrap_or_default());
        return Err(CreateError::Ambiguous(candidates));
    }
    Ok(())
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn new(n: usize) -> UnionFind {
        UnionFind((0..n).collect())
    }

    fn find(&mut self, i: usize) -> usize {
        let parent = self.0[i];
        if parent == i {
            return i;
        }
        let root = self.find(parent);
        self.0[i] = root;
        root
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        self.0[ra] = rb;
    }
}

/// Keyed hash of the request type and every normalized identifier: equal for the same subject
/// however it is spelled, and useless to anyone without the server key.
fn subject_hash(key: &ServerKey, request_type: RequestType, terms: &Terms) -> Vec<u8> {
    let mut parts: Vec<String> = terms
        .0
        .iter()
        .map(|t| format!("{}\0{}", t.kind, t.value))
        .collect();
    parts.sort();
    parts.dedup();
    let mut all: Vec<&[u8]> = vec![request_type.as_str().as_bytes()];
    all.extend(parts.iter().map(|p| p.as_bytes()));
    key.hash(&all)
}

/// Keyed hash of each identifier: lets a later erasure find the requests that name it.
pub fn term_hashes(key: &ServerKey, terms: &Terms) -> Vec<Vec<u8>> {
    terms
        .0
        .iter()
        .map(|t| key.hash(&[b"term", t.kind.as_str().as_bytes(), t.value.as_bytes()]))
        .collect()
}

/// The earlier request a duplicate submission is answered with.
async fn existing(
    conn: &mut PgConnection,
    caller: &Caller,
    request_type: RequestType,
    subject_hash: &[u8],
    idempotency_key: Option<&str>,
) -> Result<Accepted, CreateError> {
    if let Some(key) = idempotency_key {
        let found: Option<(Uuid, String, Vec<u8>)> = sqlx::query_as(
            "SELECT id, request_type, subject_hash FROM gdpr_requests
              WHERE client_id = $1 AND idempotency_key = $2",
        )
        .bind(caller.client_id)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((id, found_type, found_hash)) = found {
            if found_type != request_type.as_str() || found_hash != subject_hash {
                return Err(CreateError::IdempotencyMismatch);
            }
            return Ok(Accepted { id, created: None });
        }
    }
    let in_flight: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM gdpr_requests
          WHERE org_id = $1 AND request_type = $2 AND subject_hash = $3 AND parent_id IS NULL
            AND in_flight",
    )
    .bind(caller.org_id)
    .bind(request_type.as_str())
    .bind(subject_hash)
    .fetch_optional(&mut *conn)
    .await?;
    match in_flight {
        Some(id) => Ok(Accepted { id, created: None }),
        // The earlier request finished between our insert and this look-up: a retry creates
        // a new one.
        None => Err(CreateError::RetryLater),
    }
}

/// What the related requests of a merge set share with their parent.
struct ChildShared<'a> {
    parent_id: Uuid,
    request_type: RequestType,
    name: &'a Option<String>,
    replacements: &'a Option<Json<ReplacementsColumn>>,
    callback_url: &'a Option<String>,
    now: chrono::DateTime<Utc>,
}

/// Inserts the related requests of a merge set. A merge set has a handful of members, and each
/// request's `term_hashes` array has its own length, which `unnest` cannot carry: one statement
/// per member.
async fn insert_children(
    conn: &mut PgConnection,
    caller: &Caller,
    shared: &ChildShared<'_>,
    children: &[NewRow],
    key: &ServerKey,
) -> Result<(), CreateError> {
    for child in children {
        sqlx::query(
            "INSERT INTO gdpr_requests (id, org_id, client_id, request_type, name, subject, terms,
                 replacement_terms, term_hashes, subject_hash, status, parent_id, created_at,
                 due_date, callback_url)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'INITIATED', $11, $12, $13, $14)",
        )
        .bind(child.id)
        .bind(caller.org_id)
        .bind(caller.client_id)
        .bind(shared.request_type.as_str())
        .bind(shared.name)
        .bind(Json(&child.subject))
        .bind(Json(&child.terms))
        .bind(shared.replacements)
        .bind(term_hashes(key, &child.terms))
        .bind(subject_hash(key, shared.request_type, &child.terms))
        .bind(shared.parent_id)
        .bind(shared.now)
        .bind(due_date(shared.now))
        .bind(shared.callback_url)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The jobs of new requests, inserted in one statement.
struct JobRows {
    max_attempts: i32,
    ids: Vec<Uuid>,
    requests: Vec<Uuid>,
    services: Vec<String>,
    actions: Vec<&'static str>,
    statuses: Vec<&'static str>,
    /// A bundle's service jobs (see [`BUNDLE`]); `None` for every other job.
    bundles: Vec<Option<Json<BundleJobs>>>,
}

/// A bundle's service jobs: service and action of each.
type BundleJobs = Vec<(String, &'static str)>;

impl JobRows {
    fn new(max_attempts: i32) -> JobRows {
        JobRows {
            max_attempts,
            ids: Vec::new(),
            requests: Vec::new(),
            services: Vec::new(),
            actions: Vec::new(),
            statuses: Vec::new(),
            bundles: Vec::new(),
        }
    }

    fn add_for(
        &mut self,
        request_id: Uuid,
        org_id: Uuid,
        request_type: RequestType,
        replacements: &Option<Vec<Replacement>>,
        ctx: &Context<'_>,
    ) {
        let mut jobs: BundleJobs = Vec::new();
        let mut all_local = true;
        for service in ctx.catalog.services.iter().filter(|s| s.serves(org_id)) {
            let action = match request_type {
                RequestType::GdprGet => "summarize",
                RequestType::GdprExport => "export",
                RequestType::GdprUpdate => {
                    let touches = replacements
                        .iter()
                        .flatten()
                        .any(|r| service.can_update(r.kind));
                    if !touches {
                        continue;
                    }
                    "update"
                }
                RequestType::GdprDelete => match service.erasure {
                    Erasure::Delete => "delete",
                    Erasure::Anonymize => "anonymize",
                },
            };
            all_local &= matches!(service.location, Location::Local);
            jobs.push((service.name.clone(), action));
        }
        if all_local && !jobs.is_empty() {
            // Every service on gdprd's own tables: one job for them all (see [`BUNDLE`]).
            self.push(request_id, BUNDLE, "bundle", "queued", Some(Json(jobs)));
            return;
        }
        let finalize_status = if jobs.is_empty() { "queued" } else { "waiting" };
        for (service, action) in jobs {
            self.push(request_id, &service, action, "queued", None);
        }
        self.push(request_id, FINALIZE, "finalize", finalize_status, None);
    }

    fn push(
        &mut self,
        request_id: Uuid,
        service: &str,
        action: &'static str,
        status: &'static str,
        bundle: Option<Json<BundleJobs>>,
    ) {
        self.ids.push(Uuid::now_v7());
        self.requests.push(request_id);
        self.services.push(service.to_owned());
        self.actions.push(action);
        self.statuses.push(status);
        self.bundles.push(bundle);
    }

    /// The service jobs (service and action) of `request_id`, those of its bundle included.
    fn service_jobs_of(&self, request_id: Uuid) -> Vec<(String, &'static str)> {
        let mut jobs = Vec::new();
        for i in (0..self.ids.len()).filter(|&i| self.requests[i] == request_id) {
            match &self.bundles[i] {
                Some(bundle) => jobs.extend(bundle.0.iter().cloned()),
                None if self.services[i] != FINALIZE => {
                    jobs.push((self.services[i].clone(), self.actions[i]))
                }
                None => {}
            }
        }
        jobs
    }

    /// Inserts the jobs and wakes the workers (the notification is delivered at commit).
    async fn insert(self, conn: &mut PgConnection) -> sqlx::Result<()> {
        sqlx::query(
            "WITH inserted AS (
               INSERT INTO gdpr_jobs (id, request_id, service, action, status, max_attempts,
                                      bundle_jobs)
               SELECT id, request_id, service, action, status, $6, bundle_jobs
                 FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                             $7::jsonb[])
                      AS j(id, request_id, service, action, status, bundle_jobs))
             SELECT pg_notify('gdpr_jobs', '')",
        )
        .bind(&self.ids)
        .bind(&self.requests)
        .bind(&self.services)
        .bind(&self.actions)
        .bind(&self.statuses)
        .bind(self.max_attempts)
        .bind(&self.bundles)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// The service name of the job that finishes a request.
pub const FINALIZE: &str = "_finalize";

/// The service name of a bundle: the one job of a request whose services all keep their tables
/// in gdprd's own database, which runs them all and the finalization in one transaction and
/// there becomes their jobs as they completed (its action is `bundle`, its jobs are in
/// `bundle_jobs`; migration 0010, `Worker::process_bundle`).
pub const BUNDLE: &str = "_bundle";
