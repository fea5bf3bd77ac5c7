-- The subject index: one row per known person-record, in the shape of a GDPRSubject, and one row
-- per normalized identifier of that record. A search is one index lookup on
-- subject_identifiers' primary key followed by a primary-key fetch of the records.

CREATE TABLE subjects (
    id                   uuid PRIMARY KEY,
    org_id               uuid NOT NULL REFERENCES organizations (id),
    kind                 text NOT NULL
        CHECK (kind IN ('user', 'externalContact', 'dialerContact', 'journeyCustomer')),
    -- The record's own id within its kind (userId, externalContactId, dialer contact id, or
    -- "type:id" of a journey customer).
    ref_key              text NOT NULL,
    record               jsonb NOT NULL,
    -- Members of one merge set of external contacts share their canonical contact id.
    canonical_contact_id text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT subjects_ref_key UNIQUE (org_id, kind, ref_key)
);
CREATE INDEX subjects_merge_set ON subjects (org_id, canonical_contact_id)
    WHERE canonical_contact_id IS NOT NULL;

CREATE TABLE subject_identifiers (
    org_id     uuid NOT NULL,
    id_type    text NOT NULL CHECK (id_type IN ('NAME', 'ADDRESS', 'PHONE', 'EMAIL', 'TWITTER',
        'INSTAGRAM', 'FACEBOOK', 'APPLE_MESSAGES', 'WHATSAPP', 'EXTERNAL_ID')),
    value      text NOT NULL,
    subject_id uuid NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    PRIMARY KEY (org_id, id_type, value, subject_id)
);
CREATE INDEX subject_identifiers_subject ON subject_identifiers (subject_id);
