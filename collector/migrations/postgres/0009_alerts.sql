-- Alerts (CONTRACTS §10), migration 9: one alert per (budget, level, period)
-- enforced by the database, so every replica may evaluate and each alert
-- exists once; webhooks; the outbox of deliveries, one row per (event,
-- webhook), written in the transaction that stores the alert.
CREATE TABLE alerts (
    id           text PRIMARY KEY,
    budget_id    text NOT NULL,
    level        text NOT NULL,
    kind         text NOT NULL,
    scope        text NOT NULL,
    threshold    double precision NOT NULL,
    spend_usd    double precision NOT NULL,
    amount_usd   double precision NOT NULL,
    forecast_usd double precision NOT NULL,
    period_start bigint NOT NULL,
    at           bigint NOT NULL,
    acked_at     bigint,
    acked_by     text,
    escalated_at bigint,
    UNIQUE (budget_id, level, period_start)
);

CREATE TABLE webhooks (
    id         text PRIMARY KEY,
    url        text NOT NULL,
    secret     text NOT NULL,
    events     text NOT NULL,
    format     text NOT NULL,
    created_at bigint NOT NULL,
    created_by text NOT NULL
);

CREATE TABLE webhook_outbox (
    id              bigserial PRIMARY KEY,
    event_id        text NOT NULL,
    webhook_id      text NOT NULL,
    event           text NOT NULL,
    state           text NOT NULL,
    attempts        bigint NOT NULL DEFAULT 0,
    next_attempt_at bigint NOT NULL,
    last_status     bigint,
    last_error      text,
    created_at      bigint NOT NULL,
    delivered_at    bigint,
    UNIQUE (event_id, webhook_id)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_attempt_at);
