-- The ledger: append-only, hash-chained. No payload is ever stored here.
-- `entry` is the canonical encoding the hash covers (src/ledger/mod.rs, Entry::canonical_bytes):
-- the one source of truth for every field. The other columns index it and are checked against it
-- by `ledger verify`.
CREATE TABLE ledger_entries (
    seq            INTEGER PRIMARY KEY NOT NULL,
    recorded_at_us INTEGER NOT NULL,
    transfer_id    TEXT NOT NULL,
    kind           TEXT NOT NULL,
    agreement_id   TEXT NOT NULL,
    entry          BLOB NOT NULL,
    hash           BLOB NOT NULL  -- SHA-256 of entry
) STRICT;

CREATE INDEX ledger_entries_by_agreement ON ledger_entries (agreement_id, seq);
CREATE INDEX ledger_entries_by_transfer ON ledger_entries (transfer_id, seq);

-- Ordinary SQL cannot change history; someone who drops these triggers is caught by the chain.
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;

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
    created_at_us  INTEGER NOT NULL,
    updated_at_us  INTEGER NOT NULL,
    decision_seq   INTEGER NOT NULL,
    user_sub       TEXT,
    review_due_at_us INTEGER,
    reviewed_at_us INTEGER,
    subject_informed_due TEXT,
    subject_informed_at_us INTEGER,
    legal_bases    TEXT           -- JSON array, on permitted and held transfers (for counts)
) STRICT;

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
    body               BLOB NOT NULL,
    state              TEXT NOT NULL, -- pending | dead
    attempts           INTEGER NOT NULL,
    created_at_us      INTEGER NOT NULL, -- wall clock, for the age limit
    next_attempt_at_us INTEGER NOT NULL,
    last_error         TEXT
) STRICT;

CREATE INDEX outbox_due ON outbox (state, next_attempt_at_us);

-- Idempotency keys of accepted transfers, per calling system.
CREATE TABLE idempotency_keys (
    sender_system   TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_sha256  TEXT NOT NULL,
    transfer_id     TEXT NOT NULL,
    ledger_seq      INTEGER NOT NULL,
    PRIMARY KEY (sender_system, idempotency_key)
) STRICT;

-- The blind subject index: which transfers were about a person, by the keyed hash of their NHS
-- number (never the number). Filled from decision entries; answers subject access requests.
CREATE TABLE subject_disclosures (
    subject_hash TEXT NOT NULL,
    transfer_id  TEXT NOT NULL,
    PRIMARY KEY (subject_hash, transfer_id)
) STRICT;

-- Signed checkpoints over the Merkle tree of ledger entries (RFC 9162 leaves: 0x00 || canonical
-- entry bytes). An auditor who holds a checkpoint can prove later lists complete and unaltered.
CREATE TABLE checkpoints (
    tree_size INTEGER PRIMARY KEY NOT NULL,
    root      TEXT NOT NULL, -- hex
    at_us     INTEGER NOT NULL,
    signature TEXT NOT NULL  -- hex Ed25519 over the checkpoint's signed message
) STRICT;

-- The partner's reference for a delivered transfer (e.g. the MESH message id), so that a later
-- report (a MESH non-delivery report) can be tied back to the transfer.
CREATE TABLE delivery_refs (
    destination TEXT NOT NULL,
    remote_ref  TEXT NOT NULL,
    transfer_id TEXT NOT NULL,
    PRIMARY KEY (destination, remote_ref)
) STRICT;
