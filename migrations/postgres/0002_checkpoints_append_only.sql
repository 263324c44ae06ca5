-- Signed checkpoints are append-only, like the entries they sign: a deleted checkpoint would let
-- a rewritten history verify with fewer checkpoints to contradict it. (A trigger stops ordinary
-- SQL, not a superuser: the checkpoints kept outside the database do that.)
CREATE FUNCTION checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'checkpoints are append-only';
END;
$$;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
FOR EACH ROW EXECUTE FUNCTION checkpoints_append_only();
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
FOR EACH ROW EXECUTE FUNCTION checkpoints_append_only();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
FOR EACH STATEMENT EXECUTE FUNCTION checkpoints_append_only();
