-- A fingerprint of each subject-index key (a keyed hash of a fixed label, never the key), per
-- scope and year, recorded by the first gateway to load that key. Gateways sharing this database
-- must derive the same keys (or subject access misses what the others indexed): one whose key's
-- fingerprint differs from the one recorded refuses to start.
CREATE TABLE subject_key_fingerprints (
    scope          TEXT NOT NULL,
    year           INTEGER NOT NULL,
    fingerprint    TEXT NOT NULL,
    gateway        TEXT NOT NULL,
    recorded_at_us INTEGER NOT NULL,
    PRIMARY KEY (scope, year)
) STRICT;
