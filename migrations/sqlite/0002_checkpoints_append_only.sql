-- Signed checkpoints are append-only, like the entries they sign: a deleted checkpoint would let
-- a rewritten history verify with fewer checkpoints to contradict it. (A trigger stops ordinary
-- SQL, not someone who rewrites the file: the checkpoints kept outside the database do that.)
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
