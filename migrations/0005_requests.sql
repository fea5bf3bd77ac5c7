-- GDPR requests, their per-service jobs (the work queue), export archives and the server's own
-- secret (shared by every instance through the database).

CREATE TABLE server_secrets (
    name       text PRIMARY KEY,
    value      bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gdpr_requests (
    id                uuid PRIMARY KEY,
    org_id            uuid NOT NULL REFERENCES organizations (id),
    client_id         uuid NOT NULL REFERENCES api_clients (id),
    request_type      text NOT NULL
        CHECK (request_type IN ('GDPR_EXPORT', 'GDPR_UPDATE', 'GDPR_DELETE', 'GDPR_GET')),
    name              text,
    -- The subject as sent, until an erasure completes; then its masked form.
    subject           jsonb NOT NULL,
    -- The identifiers the jobs work with (normalized and raw); emptied when an erasure completes.
    terms             jsonb NOT NULL,
    replacement_terms jsonb,
    -- Keyed hashes of the normalized identifiers: what lets a later erasure find this request
    -- (to mask it) without keeping the identifiers themselves.
    term_hashes       bytea[] NOT NULL,
    -- Keyed hash of (type, every normalized identifier): duplicate detection.
    subject_hash      bytea NOT NULL,
    status            text NOT NULL CHECK (status IN ('INITIATED', 'SEARCHING', 'UPDATING',
        'DELETING', 'FINALIZING', 'COMPLETED', 'ERROR')),
    error             jsonb,
    summary           jsonb,
    parent_id         uuid REFERENCES gdpr_requests (id),
    idempotency_key   text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    due_date          timestamptz NOT NULL,
    completed_at      timestamptz,
    CONSTRAINT gdpr_requests_idempotency UNIQUE (client_id, idempotency_key)
);
CREATE INDEX gdpr_requests_listing ON gdpr_requests (org_id, created_at DESC, id DESC);
CREATE INDEX gdpr_requests_parent ON gdpr_requests (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX gdpr_requests_term_hashes ON gdpr_requests USING gin (term_hashes);
-- At most one request of a type for one subject in flight: concurrent duplicates collide here.
CREATE UNIQUE INDEX gdpr_requests_in_flight ON gdpr_requests (org_id, request_type, subject_hash)
    WHERE parent_id IS NULL AND status NOT IN ('COMPLETED', 'ERROR');

-- One job per data service of a request, plus one `finalize` job that runs when they are done.
CREATE TABLE gdpr_jobs (
    id              uuid PRIMARY KEY,
    request_id      uuid NOT NULL REFERENCES gdpr_requests (id) ON DELETE CASCADE,
    service         text NOT NULL,
    action          text NOT NULL CHECK (action IN ('summarize', 'export', 'update', 'delete',
        'anonymize', 'finalize')),
    -- waiting: a finalize job whose service jobs are not done yet.
    status          text NOT NULL CHECK (status IN ('waiting', 'queued', 'running', 'completed',
        'error')),
    -- A service job first searches (counts what it will touch), then acts.
    phase           text NOT NULL DEFAULT 'search' CHECK (phase IN ('search', 'act')),
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL,
    run_at          timestamptz NOT NULL DEFAULT now(),
    locked_by       text,
    locked_until    timestamptz,
    matched         bigint,
    deleted         bigint NOT NULL DEFAULT 0,
    anonymized      bigint NOT NULL DEFAULT 0,
    updated         bigint NOT NULL DEFAULT 0,
    retained        bigint NOT NULL DEFAULT 0,
    retained_reason text,
    last_error      text,
    result          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);
CREATE INDEX gdpr_jobs_request ON gdpr_jobs (request_id);
CREATE INDEX gdpr_jobs_ready ON gdpr_jobs (run_at) WHERE status = 'queued';
CREATE INDEX gdpr_jobs_leased ON gdpr_jobs (locked_until) WHERE status = 'running';

-- Export archives, served behind signed, expiring URLs.
CREATE TABLE export_archives (
    request_id uuid NOT NULL REFERENCES gdpr_requests (id) ON DELETE CASCADE,
    file_name  text NOT NULL,
    content    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (request_id, file_name)
);
CREATE INDEX export_archives_expiry ON export_archives (expires_at);
