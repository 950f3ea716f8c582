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

-- Partial edge hours of a usage query are read from raw records by time.
CREATE INDEX IF NOT EXISTS records_by_ts ON records (ts_ms);

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

-- Hourly rollup kept at ingest, in the insert's transaction.
CREATE TABLE IF NOT EXISTS usage_hourly (
    hour_ms                  INTEGER NOT NULL,
    series_id                INTEGER NOT NULL REFERENCES series (id),
    requests                 INTEGER NOT NULL,
    errors                   INTEGER NOT NULL,
    input_tokens             INTEGER NOT NULL,
    cached_input_tokens      INTEGER NOT NULL,
    cache_write_input_tokens INTEGER NOT NULL,
    output_tokens            INTEGER NOT NULL,
    reasoning_tokens         INTEGER NOT NULL,
    cost_usd                 REAL NOT NULL,
    unpriced_requests        INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, series_id)
) WITHOUT ROWID;

-- Daily rollup, same shape: whole days of a long range are read from here,
-- so a month costs ~30 rows per series instead of ~720.
CREATE TABLE IF NOT EXISTS usage_daily (
    day_ms                   INTEGER NOT NULL,
    series_id                INTEGER NOT NULL REFERENCES series (id),
    requests                 INTEGER NOT NULL,
    errors                   INTEGER NOT NULL,
    input_tokens             INTEGER NOT NULL,
    cached_input_tokens      INTEGER NOT NULL,
    cache_write_input_tokens INTEGER NOT NULL,
    output_tokens            INTEGER NOT NULL,
    reasoning_tokens         INTEGER NOT NULL,
    cost_usd                 REAL NOT NULL,
    unpriced_requests        INTEGER NOT NULL,
    PRIMARY KEY (day_ms, series_id)
) WITHOUT ROWID;

-- Budgets (SPEC §6). Spend is not stored here: it is computed from the
-- rollups when asked. `scope` is a canonical JSON object (sorted keys).
CREATE TABLE IF NOT EXISTS budgets (
    id         TEXT PRIMARY KEY,
    scope      TEXT NOT NULL,
    period     TEXT NOT NULL CHECK (period IN ('day', 'month')),
    amount_usd REAL NOT NULL CHECK (amount_usd > 0),
    soft       REAL NOT NULL,
    hard       REAL NOT NULL,
    CHECK (soft > 0 AND soft <= hard)
);
