-- Listings page in decision order (`decision_seq > after`): without this index every page sorted
-- the whole table, and `ledger verify`'s listing check grew with the square of the ledger.
CREATE INDEX transfers_by_decision ON transfers (decision_seq);
