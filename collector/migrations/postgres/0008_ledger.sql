-- GL accounts per cost center and closed months (SPEC §11): see the SQLite
-- schema.sql for what each table holds.
CREATE TABLE gl_accounts (
    cost_center TEXT PRIMARY KEY,
    gl_account  TEXT NOT NULL,
    updated_ms  BIGINT NOT NULL
);

CREATE TABLE closed_months (
    month     TEXT PRIMARY KEY,
    closed_ms BIGINT NOT NULL
);

CREATE TABLE closed_month_lines (
    line_id       BIGSERIAL PRIMARY KEY,
    month         TEXT NOT NULL REFERENCES closed_months (month),
    usage_month   TEXT NOT NULL,
    cost_center   TEXT NOT NULL,
    gl_account    TEXT NOT NULL,
    team          TEXT NOT NULL,
    project       TEXT NOT NULL,
    requests      BIGINT NOT NULL,
    input_tokens  BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost_usd      DOUBLE PRECISION NOT NULL
);
