-- Access (CONTRACTS §9), migration 6: API tokens (sha256 of the secret only),
-- the append-only audit log, hard-cap overrides and their approvals.
CREATE TABLE api_tokens (
    id         text PRIMARY KEY,
    sha256     text NOT NULL UNIQUE,
    role       text NOT NULL CHECK (role IN ('admin', 'finance', 'viewer', 'gateway')),
    scope      text,
    label      text NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint,
    revoked_at bigint,
    created_by text NOT NULL
);

-- The collector only INSERTs (and SELECTs) here: its database role needs no
-- UPDATE, DELETE or TRUNCATE on this table (README, "Security").
CREATE TABLE audit_log (
    seq        bigserial PRIMARY KEY,
    at         bigint NOT NULL,
    actor      text NOT NULL,
    action     text NOT NULL,
    target     text NOT NULL,
    before     text,
    after      text,
    request_id text NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE overrides (
    id           text PRIMARY KEY,
    budget_id    text NOT NULL,
    amount_usd   double precision NOT NULL CHECK (amount_usd > 0),
    expires_at   bigint NOT NULL,
    reason       text NOT NULL,
    requested_by text NOT NULL,
    created_at   bigint NOT NULL
);
CREATE TABLE override_approvals (
    override_id text NOT NULL REFERENCES overrides (id),
    actor       text NOT NULL,
    role        text NOT NULL,
    at          bigint NOT NULL,
    PRIMARY KEY (override_id, actor),
    UNIQUE (override_id, role)
);
