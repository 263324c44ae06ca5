-- The console's signed-in sessions: beside the ledger, not in it (a session is not a record of a
-- disclosure). The cookie carries a random id; only its SHA-256 is stored, so a copy of the
-- database signs nobody in. Rows go at sign-out, after 15 minutes idle or 8 hours in all.
CREATE TABLE console_sessions (
    id_sha256 TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    sub TEXT NOT NULL,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    seen_at_us BIGINT NOT NULL
);
CREATE INDEX console_sessions_seen ON console_sessions (seen_at_us);
