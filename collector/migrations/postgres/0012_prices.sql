-- Prices in time (SPEC §13), migration 12: price changes and contract
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
