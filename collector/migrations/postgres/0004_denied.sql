-- Migration 4: the rollups count refused calls (`denied`): records the
-- gateway filter wrote for calls it refused itself, whose `error` is
-- invalid_api_key, rate_limit_exceeded, budget_exceeded or caps_unavailable.
-- Runs once, inside the migration transaction, under the migration advisory
-- lock. Adding a column with a constant default rewrites nothing; existing
-- rollup rows then get the count of their stored refusal records (0 for data
-- written before the filter recorded refusals), in one pass over `records`.

ALTER TABLE usage_hourly ADD COLUMN denied bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN denied bigint NOT NULL DEFAULT 0;

CREATE TEMP TABLE denied_hours ON COMMIT DROP AS
SELECT floor(ts_ms / 3600000::float8)::int8 * 3600000 AS hour_ms, series_id, count(*) AS n
FROM records
WHERE error IN ('invalid_api_key', 'rate_limit_exceeded', 'budget_exceeded', 'caps_unavailable')
GROUP BY 1, 2;

UPDATE usage_hourly AS h SET denied = d.n
FROM denied_hours AS d
WHERE h.hour_ms = d.hour_ms AND h.series_id = d.series_id;

UPDATE usage_daily AS r SET denied = d.n
FROM (SELECT floor(hour_ms / 86400000::float8)::int8 * 86400000 AS day_ms, series_id,
             sum(n)::int8 AS n
      FROM denied_hours GROUP BY 1, 2) AS d
WHERE r.day_ms = d.day_ms AND r.series_id = d.series_id;
