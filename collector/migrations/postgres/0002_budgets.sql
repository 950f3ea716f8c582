-- Budgets (CONTRACTS §6), migration 2. Spend is not stored here: it is computed
-- from the rollups when asked. `scope` is a canonical JSON object (sorted keys).
CREATE TABLE budgets (
    id         text PRIMARY KEY,
    scope      text NOT NULL,
    period     text NOT NULL CHECK (period IN ('day', 'month')),
    amount_usd double precision NOT NULL CHECK (amount_usd > 0),
    soft       double precision NOT NULL,
    hard       double precision NOT NULL,
    CHECK (soft > 0 AND soft <= hard)
);
