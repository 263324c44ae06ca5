-- Witnesses' cosignatures on signed checkpoints (C2SP tlog-cosignature, Ed25519 cosignature/v1):
-- each row is one witness's signature over the checkpoint (tree size and root) it saw. Kept with
-- the root it covers, so a cosignature still says what the witness saw whatever becomes of the
-- checkpoint rows. Append-only like the checkpoints: a witness's word is not taken back.
CREATE TABLE cosignatures (
    tree_size INTEGER NOT NULL,
    root      TEXT NOT NULL,    -- hex: the checkpoint's root the cosignature covers
    witness   TEXT NOT NULL,    -- the witness's key name
    key_id    TEXT NOT NULL,    -- hex, 4 bytes: SHA-256(name || 0x0A || 0x04 || public key)[:4]
    time_s    INTEGER NOT NULL, -- the witness's timestamp, seconds since the Unix epoch
    signature TEXT NOT NULL,    -- hex Ed25519 over "cosignature/v1\ntime <t>\n" || note body
    -- Every signature is kept: a row an insider inserted first cannot shadow the witness's own.
    PRIMARY KEY (tree_size, witness, key_id, signature)
) STRICT;

CREATE TRIGGER cosignatures_no_update BEFORE UPDATE ON cosignatures
BEGIN SELECT RAISE(ABORT, 'cosignatures are append-only'); END;
CREATE TRIGGER cosignatures_no_delete BEFORE DELETE ON cosignatures
BEGIN SELECT RAISE(ABORT, 'cosignatures are append-only'); END;
