-- Reconciliation (SPEC §13), migration 12: price changes and contract
-- discounts, append only (a later `effective_from` supersedes an entry; no
-- entry is edited). `model` '' in price_discounts: every model of the provider.
CREATE TABLE price_changes (
    provider          text NOT NULL,
    model             text NOT NULL,
    effective_from_ms bigint NOT NULL,
    input             double precision NOT NULL,
    output            double precision NOT NULL,
    cache_read        double precision NOT NULL,
    cache_write       double precision NOT NULL,
    created_ms        bigint NOT NULL,
    PRIMARY KEY (provider, model, effective_from_ms)
);
CREATE TABLE price_discounts (
    provider          text NOT NULL,
    model             text NOT NULL,
    effective_from_ms bigint NOT NULL,
    fraction          double precision NOT NULL,
    created_ms        bigint NOT NULL,
    PRIMARY KEY (provider, model, effective_from_ms)
);
-- Providers' own usage and cost exports, one row per bucket × result. An
-- import replaces its source's rows in its range (idempotent).
CREATE TABLE provider_usage (
    provider                 text NOT NULL,
    source                   text NOT NULL,
    start_ms                 bigint NOT NULL,
    end_ms                   bigint NOT NULL,
    model                    text NOT NULL,
    line_item                text NOT NULL,
    credential               text NOT NULL,
    requests                 bigint NOT NULL,
    input_tokens             bigint NOT NULL,
    cached_input_tokens      bigint NOT NULL,
    cache_write_input_tokens bigint NOT NULL,
    output_tokens            bigint NOT NULL,
    cost_usd                 double precision
);
CREATE INDEX provider_usage_by_time ON provider_usage (source, start_ms);
