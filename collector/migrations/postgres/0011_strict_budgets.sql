-- Strict budgets (SPEC §6), migration 11: how a budget is enforced, and the
-- leases granted to gateway hosts (domain/leases). A grant locks its
-- lease_periods row (SELECT … FOR UPDATE), so replicas granting leases of one
-- budget at once take turns and never over-grant.
ALTER TABLE budgets ADD COLUMN enforce text NOT NULL DEFAULT 'flags'
    CHECK (enforce IN ('flags', 'strict'));
CREATE TABLE lease_periods (
    budget_id    text NOT NULL,
    period_start bigint NOT NULL,
    base_usd     double precision NOT NULL,
    PRIMARY KEY (budget_id, period_start)
);
CREATE TABLE leases (
    budget_id      text NOT NULL,
    period_start   bigint NOT NULL,
    host           text NOT NULL,
    seq            bigint NOT NULL,
    granted_usd    double precision NOT NULL,
    committed_usd  double precision NOT NULL,
    used_usd       double precision NOT NULL,
    burn_usd_per_s double precision NOT NULL,
    updated_ms     bigint NOT NULL,
    expires_ms     bigint NOT NULL,
    PRIMARY KEY (budget_id, period_start, host)
);
