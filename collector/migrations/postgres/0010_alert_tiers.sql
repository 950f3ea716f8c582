-- Alerts (CONTRACTS §10), migration 10: per-budget alert tiers (JSON; NULL
-- reads as the defaults) and the z-score of anomaly alerts. An anomaly has no
-- budget: its `budget_id` column holds its own alert id, so the UNIQUE
-- (budget_id, level, period_start) keeps one alert per (team, model, day).
ALTER TABLE budgets ADD COLUMN alerts text;
ALTER TABLE alerts ADD COLUMN z_score double precision;
