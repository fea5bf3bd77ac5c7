-- Tenancy and sign-in: organizations, API clients and their bearer tokens.
-- Secrets and tokens are stored only as SHA-256 digests.

CREATE TABLE organizations (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT organizations_name_key UNIQUE (name)
);

CREATE TABLE api_clients (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id),
    name        text NOT NULL,
    secret_hash bytea NOT NULL,
    permissions text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);
CREATE INDEX api_clients_org ON api_clients (org_id);

CREATE TABLE access_tokens (
    token_hash bytea PRIMARY KEY,
    client_id  uuid NOT NULL REFERENCES api_clients (id),
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX access_tokens_client ON access_tokens (client_id);
CREATE INDEX access_tokens_expires ON access_tokens (expires_at);
