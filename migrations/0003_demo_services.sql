-- The demo data services: a Genesys-like contact center whose personal data gdprd answers for.
-- They live in their own schema, as a controller's application tables would; gdprd's catalog
-- describes them, and nothing in gdprd's code names them.

CREATE SCHEMA demo;

-- Directory: users (employees, agents).
CREATE TABLE demo.directory_users (
    id         uuid PRIMARY KEY,
    org_id     uuid NOT NULL REFERENCES organizations (id),
    name       text NOT NULL,
    email      text NOT NULL,
    phone      text,
    title      text,
    department text,
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX directory_users_org ON demo.directory_users (org_id);

-- External contacts, possibly merged into one canonical contact (a merge set).
CREATE TABLE demo.external_contacts (
    id                   uuid PRIMARY KEY,
    org_id               uuid NOT NULL REFERENCES organizations (id),
    canonical_contact_id uuid,
    name                 text,
    title                text,
    work_email           text,
    personal_email       text,
    work_phone           text,
    cell_phone           text,
    address              text,
    twitter_handle       text,
    instagram_handle     text,
    facebook_id          text,
    whatsapp_number      text,
    external_id          text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    modified_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX external_contacts_org ON demo.external_contacts (org_id);
CREATE INDEX external_contacts_canonical ON demo.external_contacts (canonical_contact_id);

-- Outbound dialer: contact lists and their contacts.
CREATE TABLE demo.contact_lists (
    id         uuid PRIMARY KEY,
    org_id     uuid NOT NULL REFERENCES organizations (id),
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE demo.dialer_contacts (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id),
    contact_list_id uuid NOT NULL REFERENCES demo.contact_lists (id),
    name            text,
    phone           text,
    alt_phone       text,
    email           text,
    address         text,
    callable        boolean NOT NULL DEFAULT true,
    last_attempt_at timestamptz,
    last_result     text
);
CREATE INDEX dialer_contacts_org ON demo.dialer_contacts (org_id);
CREATE INDEX dialer_contacts_list ON demo.dialer_contacts (contact_list_id);

-- Conversations with their participants, transcripts and attachments.
CREATE TABLE demo.conversations (
    id         uuid PRIMARY KEY,
    org_id     uuid NOT NULL REFERENCES organizations (id),
    channel    text NOT NULL CHECK (channel IN ('voice', 'chat', 'email', 'message')),
    queue_name text,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz
);
CREATE INDEX conversations_org ON demo.conversations (org_id);

CREATE TABLE demo.conversation_participants (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id),
    conversation_id uuid NOT NULL REFERENCES demo.conversations (id) ON DELETE CASCADE,
    purpose         text NOT NULL CHECK (purpose IN ('customer', 'agent')),
    name            text,
    -- The participant's address on the channel: a phone number, an email address or a handle.
    address         text,
    user_id         uuid
);
CREATE INDEX conversation_participants_conversation
    ON demo.conversation_participants (conversation_id);
CREATE INDEX conversation_participants_org ON demo.conversation_participants (org_id);

CREATE TABLE demo.transcript_lines (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id),
    conversation_id uuid NOT NULL REFERENCES demo.conversations (id) ON DELETE CASCADE,
    seq             integer NOT NULL,
    speaker         text NOT NULL CHECK (speaker IN ('customer', 'agent')),
    body            text NOT NULL
);
CREATE INDEX transcript_lines_conversation ON demo.transcript_lines (conversation_id, seq);

CREATE TABLE demo.attachments (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id),
    conversation_id uuid REFERENCES demo.conversations (id) ON DELETE SET NULL,
    uploaded_by     text,
    file_name       text NOT NULL,
    content_type    text NOT NULL,
    content         text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attachments_org ON demo.attachments (org_id);
CREATE INDEX attachments_conversation ON demo.attachments (conversation_id);

-- Web journeys: visitors keyed by their tracking cookie, their sessions and events.
CREATE TABLE demo.journey_visitors (
    org_id     uuid NOT NULL REFERENCES organizations (id),
    cookie_id  text NOT NULL,
    name       text,
    email      text,
    phone      text,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    PRIMARY KEY (org_id, cookie_id)
);

CREATE TABLE demo.journey_sessions (
    id         uuid PRIMARY KEY,
    org_id     uuid NOT NULL REFERENCES organizations (id),
    cookie_id  text NOT NULL,
    started_at timestamptz NOT NULL,
    ip_address text,
    user_agent text,
    referrer   text
);
CREATE INDEX journey_sessions_cookie ON demo.journey_sessions (org_id, cookie_id);

CREATE TABLE demo.journey_events (
    id         uuid PRIMARY KEY,
    org_id     uuid NOT NULL REFERENCES organizations (id),
    session_id uuid NOT NULL REFERENCES demo.journey_sessions (id) ON DELETE CASCADE,
    cookie_id  text NOT NULL,
    event_type text NOT NULL,
    page_url   text,
    -- What the visitor typed into a search box or form, which may be personal data.
    input_text text,
    created_at timestamptz NOT NULL
);
CREATE INDEX journey_events_cookie ON demo.journey_events (org_id, cookie_id);
CREATE INDEX journey_events_session ON demo.journey_events (session_id);

-- Consent records, as captured by web forms and agents.
CREATE TABLE demo.consent_records (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id),
    email       text,
    phone       text,
    cookie_id   text,
    purpose     text NOT NULL,
    granted     boolean NOT NULL,
    source      text NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX consent_records_org ON demo.consent_records (org_id);
