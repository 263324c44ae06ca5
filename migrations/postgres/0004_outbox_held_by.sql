-- Who asked for a held transfer, so that one user cannot fill the held queue of an agreement:
-- counted in the transaction that would add another.
ALTER TABLE outbox ADD COLUMN held_by TEXT;
