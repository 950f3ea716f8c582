-- aispend collector schema (PostgreSQL), migration 1. Runs once, inside the
-- migration transaction, under the migration advisory lock.
-- Same shape as the SQLite schema so both stores answer identically.

-- A series is one distinct (key_id, tags, model, provider, operation): the
-- dimensions usage is grouped by. Interned so raw records and rollups carry a
-- small integer. `tags` is the canonical JSON text (sorted keys); `model` is
-- '' when the record had none.
CREATE TABLE series (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id    text NOT NULL,
    tags      text NOT NULL,
    model     text NOT NULL,
    provider  text NOT NULL,
    operation text NOT NULL,
    UNIQUE (key_id, tags, model, provider, operation)
);

-- One row per call. `id` is the idempotency key across every replica.
-- No foreign key to series: ids come from series rows committed before the
-- batch, and the check would cost a lookup per inserted record.
CREATE TABLE records (
    id                       text PRIMARY KEY,
    ts_ms                    bigint NOT NULL,
    duration_ms              bigint,
    ttft_ms                  bigint,
    gateway                  text NOT NULL,
    key_id                   text NOT NULL,
    auth                     text,
    tags                     text NOT NULL,
    labels                   text NOT NULL,
    provider                 text NOT NULL,
    operation                text NOT NULL,
    model                    text,
    requested_model          text,
    stream                   boolean,
    status                   integer NOT NULL,
    error                    text,
    input_tokens             bigint NOT NULL,
    cached_input_tokens      bigint NOT NULL,
    cache_write_input_tokens bigint NOT NULL,
    output_tokens            bigint NOT NULL,
    reasoning_tokens         bigint NOT NULL,
    cost_usd                 double precision,  -- NULL: model not in the price table
    price_version            text NOT NULL,
    series_id                bigint NOT NULL
);

-- Partial edge hours of a usage query are read from raw records by time.
CREATE INDEX records_by_ts ON records (ts_ms);

-- Hourly rollup, fed in the ingest transaction from exactly the rows the
-- insert returned, with additive upserts (correct under concurrent replicas).
CREATE TABLE usage_hourly (
    hour_ms                  bigint NOT NULL,
    series_id                bigint NOT NULL,
    requests                 bigint NOT NULL,
    errors                   bigint NOT NULL,
    input_tokens             bigint NOT NULL,
    cached_input_tokens      bigint NOT NULL,
    cache_write_input_tokens bigint NOT NULL,
    output_tokens            bigint NOT NULL,
    reasoning_tokens         bigint NOT NULL,
    cost_usd                 double precision NOT NULL,
    unpriced_requests        bigint NOT NULL,
    PRIMARY KEY (hour_ms, series_id)
);

-- Daily rollup, same shape: whole days of a long range are read from here.
CREATE TABLE usage_daily (
    day_ms                   bigint NOT NULL,
    series_id                bigint NOT NULL,
    requests                 bigint NOT NULL,
    errors                   bigint NOT NULL,
    input_tokens             bigint NOT NULL,
    cached_input_tokens      bigint NOT NULL,
    cache_write_input_tokens bigint NOT NULL,
    output_tokens            bigint NOT NULL,
    reasoning_tokens         bigint NOT NULL,
    cost_usd                 double precision NOT NULL,
    unpriced_requests        bigint NOT NULL,
    PRIMARY KEY (day_ms, series_id)
);
