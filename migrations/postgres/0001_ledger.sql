-- PostgreSQL: the same tables as migrations/sqlite, kept column for column in step with it.
-- Several gateways may share one database: appends take a transaction-scoped advisory lock.

-- The ledger: append-only, hash-chained. No payload is ever stored here.
-- `entry` is the canonical encoding the hash covers (src/ledger/mod.rs, Entry::canonical_bytes):
-- the one source of truth for every field. The other columns index it and are checked against it
-- by `ledger verify`.
CREATE TABLE ledger_entries (
    seq            BIGINT PRIMARY KEY NOT NULL,
    recorded_at_us BIGINT NOT NULL,
    transfer_id    TEXT NOT NULL,
    kind           TEXT NOT NULL,
    agreement_id   TEXT NOT NULL,
    entry          BYTEA NOT NULL,
    hash           BYTEA NOT NULL  -- SHA-256 of entry
);

CREATE INDEX ledger_entries_by_agreement ON ledger_entries (agreement_id, seq);
CREATE INDEX ledger_entries_by_transfer ON ledger_entries (transfer_id, seq);

-- Ordinary SQL cannot change history; someone who drops these triggers is caught by the chain.
CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only';
END;
$$;
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only();

-- The current state of each transfer, maintained in the same transaction as the ledger append.
-- Derivable from ledger_entries; kept for fast listing.
CREATE TABLE transfers (
    transfer_id    TEXT PRIMARY KEY NOT NULL,
    agreement_id   TEXT NOT NULL,
    message_type   TEXT,
    sender_system  TEXT NOT NULL,
    recipient      TEXT,
    status         TEXT NOT NULL,
    reason_code    TEXT,
    created_at_us  BIGINT NOT NULL,
    updated_at_us  BIGINT NOT NULL,
    decision_seq   BIGINT NOT NULL,
    user_sub       TEXT,
    review_due_at_us BIGINT,
    reviewed_at_us BIGINT,
    subject_informed_due TEXT,
    subject_informed_at_us BIGINT,
    legal_bases    TEXT           -- JSON array, on permitted and held transfers (for counts)
);

CREATE INDEX transfers_by_agreement ON transfers (agreement_id, created_at_us);

-- The durable outbox: a permitted transfer's outbound bytes, written in the same transaction as
-- its decision, removed in the same transaction as its "delivered" event. Dead letters keep their
-- body so an operator can requeue them once the partner is fixed.
CREATE TABLE outbox (
    transfer_id        TEXT PRIMARY KEY NOT NULL,
    destination        TEXT NOT NULL,
    agreement_id       TEXT NOT NULL,
    message_type       TEXT NOT NULL,
    sender_system      TEXT NOT NULL,
    recipient          TEXT,
    body               BYTEA NOT NULL,
    state              TEXT NOT NULL, -- pending | dead
    attempts           BIGINT NOT NULL,
    created_at_us      BIGINT NOT NULL, -- wall clock, for the age limit
    next_attempt_at_us BIGINT NOT NULL,
    last_error         TEXT
);

CREATE INDEX outbox_due ON outbox (state, next_attempt_at_us);

-- Idempotency keys of accepted transfers, per calling system.
CREATE TABLE idempotency_keys (
    sender_system   TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_sha256  TEXT NOT NULL,
    transfer_id     TEXT NOT NULL,
    ledger_seq      BIGINT NOT NULL,
    PRIMARY KEY (sender_system, idempotency_key)
);

-- The blind subject index: which transfers were about a person, by the keyed hash of their NHS
-- number (never the number). Filled from decision entries; answers subject access requests.
CREATE TABLE subject_disclosures (
    subject_hash TEXT NOT NULL,
    transfer_id  TEXT NOT NULL,
    PRIMARY KEY (subject_hash, transfer_id)
);

-- Signed checkpoints over the Merkle tree of ledger entries (RFC 9162 leaves: 0x00 || canonical
-- entry bytes). An auditor who holds a checkpoint can prove later lists complete and unaltered.
CREATE TABLE checkpoints (
    tree_size BIGINT PRIMARY KEY NOT NULL,
    root      TEXT NOT NULL, -- hex
    at_us     BIGINT NOT NULL,
    signature TEXT NOT NULL  -- hex Ed25519 over the checkpoint's signed message
);

-- The partner's reference for a delivered transfer (e.g. the MESH message id), so that a later
-- report (a MESH non-delivery report) can be tied back to the transfer.
CREATE TABLE delivery_refs (
    destination TEXT NOT NULL,
    remote_ref  TEXT NOT NULL,
    transfer_id TEXT NOT NULL,
    PRIMARY KEY (destination, remote_ref)
);
