-- Completion notifications: where each API client wants to hear about its requests, an outbox of
-- status changes filled by a trigger (in the transaction that changes the status), and a log of
-- every delivery attempt.

-- One per API client. `url` is NULL when the client only uses per-request callback URLs: the row
-- then exists for its signing secrets.
CREATE TABLE notification_endpoints (
    client_id                  uuid PRIMARY KEY REFERENCES api_clients (id) ON DELETE CASCADE,
    org_id                     uuid NOT NULL REFERENCES organizations (id),
    url                        text,
    -- Standard Webhooks secrets (`whsec_…`), newest first; every one signs.
    secrets                    text[] NOT NULL CHECK (cardinality(secrets) >= 1),
    -- After a rotation: when the secrets after the first stop signing.
    previous_secret_expires_at timestamptz,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

-- Overrides the client's endpoint URL for one request (and its related requests).
ALTER TABLE gdpr_requests ADD COLUMN callback_url text;

CREATE TABLE notifications (
    id            uuid PRIMARY KEY,
    -- Delivery order within one request.
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    org_id        uuid NOT NULL REFERENCES organizations (id),
    client_id     uuid NOT NULL REFERENCES api_clients (id) ON DELETE CASCADE,
    request_id    uuid NOT NULL REFERENCES gdpr_requests (id) ON DELETE CASCADE,
    url           text NOT NULL,
    -- What is sent: ids, type, statuses and dates; never personal data.
    payload       jsonb NOT NULL,
    state         text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivering', 'delivered', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    -- Set from the worker's GDPRD_NOTIFY_MAX_ATTEMPTS at the first attempt.
    max_attempts  integer,
    run_at        timestamptz NOT NULL DEFAULT now(),
    locked_by     text,
    locked_until  timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz
);
CREATE INDEX notifications_request ON notifications (request_id, seq);
CREATE INDEX notifications_ready ON notifications (run_at) WHERE state = 'pending';
CREATE INDEX notifications_leased ON notifications (locked_until) WHERE state = 'delivering';

CREATE TABLE notification_attempts (
    notification_id uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    http_status     integer,
    error           text,
    duration_ms     bigint NOT NULL,
    PRIMARY KEY (notification_id, attempt)
);

-- Every status change of a request whose client wants to hear about it becomes an outbox row in
-- the same transaction: a change is never lost, and never announced unless it committed.
CREATE FUNCTION gdpr_requests_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    target text;
BEGIN
    target := NEW.callback_url;
    IF target IS NULL THEN
        SELECT url INTO target FROM notification_endpoints WHERE client_id = NEW.client_id;
    END IF;
    IF target IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO notifications (id, org_id, client_id, request_id, url, payload)
    VALUES (gen_random_uuid(), NEW.org_id, NEW.client_id, NEW.id, target, jsonb_build_object(
        'type', 'gdpr.request.status',
        'timestamp', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'data', jsonb_strip_nulls(jsonb_build_object(
            'id', NEW.id,
            'requestType', NEW.request_type,
            'status', NEW.status,
            'previousStatus', OLD.status,
            'parentId', NEW.parent_id,
            'createdDate', to_char(NEW.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
            'updatedDate', to_char(NEW.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
        ))
    ));
    PERFORM pg_notify('gdpr_notifications', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER gdpr_requests_status_notify
    AFTER UPDATE OF status ON gdpr_requests
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION gdpr_requests_notify();
