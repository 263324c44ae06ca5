-- Per-agreement heads (src/ledger/heads.rs): a version 2 checkpoint also signs every agreement's
-- head line, so that an audit bundle can prove it leaves out none of its agreement's entries.
-- `agreements` holds the lines (64 hex digits each, sorted by agreement id); NULL on version 1
-- checkpoints made before.
ALTER TABLE checkpoints ADD COLUMN agreements TEXT;
-- A cosignature covers the checkpoint note's body, which carries the digest of those lines as an
-- extension line: kept with the cosignature (hex), NULL for a note without it.
ALTER TABLE cosignatures ADD COLUMN agreements TEXT;
