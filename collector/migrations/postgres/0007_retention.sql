-- Migration 7: retention (AISPEND_RETENTION_DAYS). Raw records before
-- `records_before_ms` may have been deleted; the hourly and daily rollups
-- keep every record. One row (id 1) once retention has run on this database;
-- it only moves forward and is committed before any record it covers is
-- deleted, so a usage query that would need a deleted record is refused
-- instead of answered short. Shared by every replica.
CREATE TABLE IF NOT EXISTS retention_state (
    id                integer PRIMARY KEY CHECK (id = 1),
    records_before_ms bigint NOT NULL
);
