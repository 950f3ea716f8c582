-- aispend collector schema (SQLite). Applied at every start; idempotent.

-- One row per call, as shipped by the filter plus the price applied at ingest.
CREATE TABLE IF NOT EXISTS records (
    id                       TEXT PRIMARY KEY,
    ts_ms                    INTEGER NOT NULL,
    duration_ms              INTEGER,
    ttft_ms                  INTEGER,
    gateway                  TEXT NOT NULL,
    key_id                   TEXT NOT NULL,
    auth                     TEXT,
    tags                     TEXT NOT NULL,  -- canonical JSON object, sorted keys
    labels                   TEXT NOT NULL,
    provider                 TEXT NOT NULL,
    operation                TEXT NOT NULL,
    model                    TEXT,
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
    price_version            TEXT NOT NULL,
    series_id                INTEGER NOT NULL REFERENCES series (id)
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
