-- aispend collector schema (SQLite). Applied at every start; idempotent.

-- One row per call, as shipped by the filter plus the price applied at ingest.
-- Its grouping dimensions (key_id, tags, model, provider, operation) live in
-- its `series` row only: fewer bytes per record make ingest faster; the
-- `records_full` view below shows a record with all of them.
-- `id`: a 32-lowercase-hex-digit id is stored as its 16 bytes (a smaller
-- unique index), any other id as text; no blob equals a text, so ids stay
-- unique exactly as given.
CREATE TABLE IF NOT EXISTS records (
    id                       BLOB PRIMARY KEY,
    ts_ms                    INTEGER NOT NULL,
    series_id                INTEGER NOT NULL REFERENCES series (id),
    duration_ms              INTEGER,
    ttft_ms                  INTEGER,
    gateway                  TEXT NOT NULL,
    auth                     TEXT,
    labels                   TEXT NOT NULL,  -- canonical JSON object, sorted keys
    requested_model          TEXT,
    stream                   INTEGER,
    status                   INTEGER NOT NULL,
    error                    TEXT,
    input_tokens             INTEGER NOT NULL,
    cached_input_tokens      INTEGER NOT NULL,
    cache_write_input_tokens INTEGER NOT NULL,
    output_tokens            INTEGER NOT NULL,
    reasoning_tokens         INTEGER NOT NULL,
    cost_usd                 REAL,           -- NULL: model not in the price table
    price_version            TEXT NOT NULL
);

-- Retention (schema version 7, AISPEND_RETENTION_DAYS): raw records before
-- `records_before_ms` may have been deleted; the rollups keep them all. One
-- row (id 1) once retention has run; it only moves forward, and is committed
-- before any record it covers is deleted.
CREATE TABLE IF NOT EXISTS retention_state (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    records_before_ms INTEGER NOT NULL
);

-- Where each hour's records are: one row per (batch, hour) with the
-- smallest and largest rowid the batch gave records of that hour. The
-- partial edge hours of a usage query are read from raw records through
-- these rowid ranges (filtered by ts_ms) instead of an index on ts_ms, which
-- cost ~3,000 instructions per inserted record for a read that touches at
-- most two hours. A range holds every record it was written for (readers
-- filter by ts_ms, so a rowid reused after retention deleted the table's
-- last rows is harmless); retention deletes old hours' records through these
-- ranges, then the spans themselves.
CREATE TABLE IF NOT EXISTS record_spans (
    hour_ms     INTEGER NOT NULL,
    first_rowid INTEGER NOT NULL,
    last_rowid  INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, first_rowid)
) WITHOUT ROWID;

-- A series is one distinct (key_id, tags, model, provider, operation): the
-- dimensions usage is grouped by. Interned so the rollup and the raw records
-- carry a small integer and a query maps each series to its group once.
-- `model` is '' when the record had none.
CREATE TABLE IF NOT EXISTS series (
    id        INTEGER PRIMARY KEY,
    key_id    TEXT NOT NULL,
    tags      TEXT NOT NULL,
    model     TEXT NOT NULL,
    provider  TEXT NOT NULL,
    operation TEXT NOT NULL,
    UNIQUE (key_id, tags, model, provider, operation)
);

-- A record as shipped (id as text, every dimension), for people and exports.
CREATE VIEW IF NOT EXISTS records_full AS
SELECT CASE typeof(r.id) WHEN 'blob' THEN lower(hex(r.id)) ELSE r.id END AS id,
       r.ts_ms, r.duration_ms, r.ttft_ms, r.gateway, s.key_id, r.auth,
       s.tags, r.labels, s.provider, s.operation, nullif(s.model, '') AS model,
       r.requested_model, r.stream, r.status, r.error, r.input_tokens,
       r.cached_input_tokens, r.cache_write_input_tokens, r.output_tokens,
       r.reasoning_tokens, r.cost_usd, r.price_version
FROM records AS r JOIN series AS s ON s.id = r.series_id;

-- Hourly rollup kept at ingest, in the insert's transaction. One row per
-- (hour, series), keyed by one integer, `bucket` = hour number (hour_ms /
-- 3,600,000) * 2^32 + series_id: as the rowid, that key makes an upsert one
-- integer seek and an overwrite in place (rollups cost ~30% fewer
-- instructions than with a (hour_ms, series_id) WITHOUT ROWID key), and a
-- time range is still one key range. `usage_hourly_rows` shows it decoded.
-- `denied` (schema version 4) counts the calls the gateway refused: records
-- whose error is invalid_api_key, rate_limit_exceeded, budget_exceeded or
-- caps_unavailable (they count in requests and errors too).
CREATE TABLE IF NOT EXISTS usage_hourly (
    bucket                   INTEGER PRIMARY KEY,
    requests                 INTEGER NOT NULL,
    errors                   INTEGER NOT NULL,
    input_tokens             INTEGER NOT NULL,
    cached_input_tokens      INTEGER NOT NULL,
    cache_write_input_tokens INTEGER NOT NULL,
    output_tokens            INTEGER NOT NULL,
    reasoning_tokens         INTEGER NOT NULL,
    cost_usd                 REAL NOT NULL,
    unpriced_requests        INTEGER NOT NULL,
    denied                   INTEGER NOT NULL DEFAULT 0
);

-- Daily rollup, same shape, `bucket` = day number (day_ms / 86,400,000) *
-- 2^32 + series_id: whole days of a long range are read from here, so a
-- month costs ~30 rows per series instead of ~720. It holds exactly the days
-- before `rollup_state.daily_before_ms` ("sealed" days) and nothing after:
-- ingest adds a record here only when its day is sealed (a late record),
-- and a batch whose oldest record is more than an hour into a later day
-- seals the days before it by summing their hourly rows, once. Upserting
-- every record's day at ingest cost ~2,000 instructions per record (the
-- bench's batches touch ~290 daily rows per 1,000 records).
CREATE TABLE IF NOT EXISTS usage_daily (
    bucket                   INTEGER PRIMARY KEY,
    requests                 INTEGER NOT NULL,
    errors                   INTEGER NOT NULL,
    input_tokens             INTEGER NOT NULL,
    cached_input_tokens      INTEGER NOT NULL,
    cache_write_input_tokens INTEGER NOT NULL,
    output_tokens            INTEGER NOT NULL,
    reasoning_tokens         INTEGER NOT NULL,
    cost_usd                 REAL NOT NULL,
    unpriced_requests        INTEGER NOT NULL,
    denied                   INTEGER NOT NULL DEFAULT 0
);

-- One row (id 1) once a day has been sealed; no row: no day sealed yet.
CREATE TABLE IF NOT EXISTS rollup_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    daily_before_ms INTEGER NOT NULL
);

-- The rollups with their keys decoded, for people and exports.
CREATE VIEW IF NOT EXISTS usage_hourly_rows AS
SELECT (bucket >> 32) * 3600000 AS hour_ms, bucket & 4294967295 AS series_id, requests,
       errors, input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens,
       reasoning_tokens, cost_usd, unpriced_requests, denied
FROM usage_hourly;

CREATE VIEW IF NOT EXISTS usage_daily_rows AS
SELECT (bucket >> 32) * 86400000 AS day_ms, bucket & 4294967295 AS series_id, requests,
       errors, input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens,
       reasoning_tokens, cost_usd, unpriced_requests, denied
FROM usage_daily;

-- Budgets (CONTRACTS §6). Spend is not stored here: it is computed from the
-- rollups when asked. `scope` is a canonical JSON object (sorted keys).
CREATE TABLE IF NOT EXISTS budgets (
    id         TEXT PRIMARY KEY,
    scope      TEXT NOT NULL,
    period     TEXT NOT NULL CHECK (period IN ('day', 'month')),
    amount_usd REAL NOT NULL CHECK (amount_usd > 0),
    soft       REAL NOT NULL,
    hard       REAL NOT NULL,
    -- Alert tiers as JSON (schema 10); NULL: the defaults.
    alerts     TEXT,
    enforce    TEXT NOT NULL DEFAULT 'flags',
    CHECK (soft > 0 AND soft <= hard)
);

-- Virtual keys (CONTRACTS §8; store/keys.rs), schema version 5. `tags` and
-- `limits` are canonical JSON objects. Only the sha256 of a secret is kept;
-- a secret rotated out keeps working until `not_after_ms` (NULL: the current
-- one). `api_keys_state` holds one counter bumped by every key write.
CREATE TABLE IF NOT EXISTS api_keys (
    key_id        TEXT PRIMARY KEY,
    tags          TEXT NOT NULL,
    limits        TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER,
    revision      INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS api_key_secrets (
    sha256        TEXT PRIMARY KEY,
    key_id        TEXT NOT NULL REFERENCES api_keys (key_id),
    last4         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    not_after_ms  INTEGER
);
CREATE INDEX IF NOT EXISTS api_key_secrets_by_key ON api_key_secrets (key_id);

CREATE TABLE IF NOT EXISTS api_keys_state (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);

-- Access (CONTRACTS §9), schema step 6. API tokens: only the sha256 of the
-- secret (hex); a revoked token stays listed.
CREATE TABLE IF NOT EXISTS api_tokens (
    id         TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'finance', 'viewer', 'gateway')),
    scope      TEXT,
    label      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    created_by TEXT NOT NULL
);

-- The audit log: the collector only ever INSERTs here.
CREATE TABLE IF NOT EXISTS audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    before     TEXT,
    after      TEXT,
    request_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);

-- Hard-cap overrides and their approvals (one per approver).
CREATE TABLE IF NOT EXISTS overrides (
    id           TEXT PRIMARY KEY,
    budget_id    TEXT NOT NULL,
    amount_usd   REAL NOT NULL CHECK (amount_usd > 0),
    expires_at   INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS override_approvals (
    override_id TEXT NOT NULL REFERENCES overrides (id),
    actor       TEXT NOT NULL,
    role        TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (override_id, actor),
    UNIQUE (override_id, role)
);

-- GL accounts per cost center (SPEC §11, schema step 8): the chargeback
-- export's `gl_account`; a cost center without a row is `UNMAPPED`.
CREATE TABLE IF NOT EXISTS gl_accounts (
    cost_center TEXT PRIMARY KEY,
    gl_account  TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL
);

-- Closed months (finance) and the chargeback lines booked when each was
-- closed: its usage lines (`usage_month` = `month`) and the adjustments it
-- carried for earlier closed months (`usage_month` < `month`). A closed
-- month's chargeback is served from here; what arrives later for it is an
-- adjustment in the next open month (README, "Closing a month").
CREATE TABLE IF NOT EXISTS closed_months (
    month     TEXT PRIMARY KEY,
    closed_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS closed_month_lines (
    month         TEXT NOT NULL REFERENCES closed_months (month),
    usage_month   TEXT NOT NULL,
    cost_center   TEXT NOT NULL,
    gl_account    TEXT NOT NULL,
    team          TEXT NOT NULL,
    project       TEXT NOT NULL,
    requests      INTEGER NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd      REAL NOT NULL
);

-- Alerts (CONTRACTS §10), version 9: one alert per (budget, level, period),
-- so evaluation is idempotent; webhooks; the outbox of deliveries, one row
-- per (event, webhook), written in the transaction that stores the alert.
CREATE TABLE IF NOT EXISTS alerts (
    id           TEXT PRIMARY KEY,
    budget_id    TEXT NOT NULL,
    level        TEXT NOT NULL,
    kind         TEXT NOT NULL,
    scope        TEXT NOT NULL,
    threshold    REAL NOT NULL,
    spend_usd    REAL NOT NULL,
    amount_usd   REAL NOT NULL,
    forecast_usd REAL NOT NULL,
    period_start INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    acked_at     INTEGER,
    acked_by     TEXT,
    escalated_at INTEGER,
    -- Anomaly alerts (schema 10): the day's z-score. An anomaly has no
    -- budget: `budget_id` holds its own alert id, so the UNIQUE below keeps
    -- one alert per (team, model, day).
    z_score      REAL,
    UNIQUE (budget_id, level, period_start)
);
CREATE TABLE IF NOT EXISTS webhooks (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    events     TEXT NOT NULL,
    format     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL,
    webhook_id      TEXT NOT NULL,
    event           TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    UNIQUE (event_id, webhook_id)
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (state, next_attempt_at);

-- Leases of strict budgets (SPEC §6), version 11 (domain/leases). One row per
-- budget and period holds the spend recorded before its first lease; one row
-- per (budget, period, gateway host) holds that host's lease.
CREATE TABLE IF NOT EXISTS lease_periods (
    budget_id    TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    base_usd     REAL NOT NULL,
    PRIMARY KEY (budget_id, period_start)
);
CREATE TABLE IF NOT EXISTS leases (
    budget_id      TEXT NOT NULL,
    period_start   INTEGER NOT NULL,
    host           TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    granted_usd    REAL NOT NULL,
    committed_usd  REAL NOT NULL,
    used_usd       REAL NOT NULL,
    burn_usd_per_s REAL NOT NULL,
    updated_ms     INTEGER NOT NULL,
    expires_ms     INTEGER NOT NULL,
    PRIMARY KEY (budget_id, period_start, host)
);

-- Prices in time (SPEC §13, schema version 12). Append only: a change or a
-- discount is never edited; a later `effective_from` supersedes it. A record
-- keeps the cost it was priced with until `POST /v1/prices/recompute`.
CREATE TABLE IF NOT EXISTS price_changes (
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    effective_from_ms INTEGER NOT NULL,
    input             REAL NOT NULL,
    output            REAL NOT NULL,
    cache_read        REAL NOT NULL,
    cache_write       REAL NOT NULL,
    created_ms        INTEGER NOT NULL,
    PRIMARY KEY (provider, model, effective_from_ms)
);

-- `model` '' : every model of the provider.
CREATE TABLE IF NOT EXISTS price_discounts (
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    effective_from_ms INTEGER NOT NULL,
    fraction          REAL NOT NULL,
    created_ms        INTEGER NOT NULL,
    PRIMARY KEY (provider, model, effective_from_ms)
);

-- Providers' own usage and cost exports (SPEC §13), one row per bucket ×
-- result. An import replaces its source's rows in its range (idempotent).
-- `model`, `line_item`, `credential`: '' when the export names none.
CREATE TABLE IF NOT EXISTS provider_usage (
    provider                 TEXT NOT NULL,
    source                   TEXT NOT NULL,
    start_ms                 INTEGER NOT NULL,
    end_ms                   INTEGER NOT NULL,
    model                    TEXT NOT NULL,
    line_item                TEXT NOT NULL,
    credential               TEXT NOT NULL,
    requests                 INTEGER NOT NULL,
    input_tokens             INTEGER NOT NULL,
    cached_input_tokens      INTEGER NOT NULL,
    cache_write_input_tokens INTEGER NOT NULL,
    output_tokens            INTEGER NOT NULL,
    cost_usd                 REAL
);
CREATE INDEX IF NOT EXISTS provider_usage_by_time ON provider_usage (source, start_ms);
