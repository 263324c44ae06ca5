-- Which gateway last claimed an outbox entry, and when. The claim itself is a lease: the claiming
-- gateway moves next_attempt_at_us to the end of the lease, so no other gateway sharing the ledger
-- finds the entry due while the first may still be sending it.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE outbox ADD COLUMN claimed_at_us INTEGER;
