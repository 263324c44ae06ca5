-- A person's own transfers, newest first (the console's "My transfers"): without this index the
-- page would read every transfer in the period and filter them in memory.
CREATE INDEX transfers_by_user ON transfers (user_sub, decision_seq);
