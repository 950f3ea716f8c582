-- Migration 5: virtual keys (CONTRACTS §8; store/keys.rs). `tags` and
-- `limits` are canonical JSON objects. Only the sha256 of a secret is kept;
-- a secret rotated out keeps working until `not_after_ms` (NULL: the current
-- one). `api_keys_state` holds one counter bumped by every key write, which
-- replicas read to know whether their cached registry snapshot is current.
CREATE TABLE api_keys (
    key_id        text PRIMARY KEY,
    tags          text NOT NULL,
    limits        text NOT NULL,
    status        text NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL,
    expires_at_ms bigint,
    revision      bigint NOT NULL
);

CREATE TABLE api_key_secrets (
    sha256        text PRIMARY KEY,
    key_id        text NOT NULL REFERENCES api_keys (key_id),
    last4         text NOT NULL,
    created_at_ms bigint NOT NULL,
    not_after_ms  bigint
);
CREATE INDEX api_key_secrets_by_key ON api_key_secrets (key_id);

CREATE TABLE api_keys_state (
    id       integer PRIMARY KEY CHECK (id = 1),
    revision bigint NOT NULL
);
INSERT INTO api_keys_state (id, revision) VALUES (1, 0);
