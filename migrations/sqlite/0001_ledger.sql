-- The ledger: append-only, hash-chained. No payload is ever stored here.
CREATE TABLE ledger_entries (
    seq               INTEGER PRIMARY KEY NOT NULL,
    recorded_at_us    INTEGER NOT NULL,
    transfer_id       TEXT NOT NULL,
    kind              TEXT NOT NULL,
    status            TEXT NOT NULL,
    decision          TEXT,
    agreement_id      TEXT NOT NULL,
    agreement_version TEXT,
    agreement_hash    TEXT,
    message_type      TEXT,
    schema_hash       TEXT,
    sender_system     TEXT NOT NULL,
    recipient         TEXT,
    legal_bases       TEXT NOT NULL, -- JSON array of legal-basis codes
    reason_code       TEXT,
    received_sha256   TEXT,
    sent_sha256       TEXT,
    pointers_removed  TEXT NOT NULL, -- JSON array of JSON pointers
    detail            TEXT,
    data_classes      TEXT NOT NULL, -- JSON array: classes of data that left
    treatments        TEXT NOT NULL, -- JSON array: "op pointer" for each pseudonymisation step
    key_ref           TEXT,          -- token key used: agreement/<id>/v<N>
    consent_status    TEXT,
    consent_reason    TEXT,
    consent_evidence_ref TEXT,
    subject_informed  TEXT,
    subject_index     TEXT NOT NULL, -- JSON array: keyed hashes of subjects' NHS numbers
    prev_hash         TEXT NOT NULL, -- hex
    hash              TEXT NOT NULL  -- hex
) STRICT;

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
    decision_seq   INTEGER NOT NULL
) STRICT;

CREATE INDEX transfers_by_agreement ON transfers (agreement_id, created_at_us);
