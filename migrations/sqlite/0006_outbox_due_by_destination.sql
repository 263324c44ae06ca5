-- A claim picks one destination's due entries: without the destination in the index, a claim for
-- one partner walked every other partner's due backlog (one partner down, its entries piling up).
CREATE INDEX outbox_due_by_destination ON outbox (state, destination, next_attempt_at_us);
