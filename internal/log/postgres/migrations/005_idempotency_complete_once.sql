-- An Idempotency-Key is completed once. A request whose claim expired while
-- it ran (a stalled database or network, a paused process) may find that a
-- retry took the key over and completed it first; completing it again must
-- fail, and with it the transaction that appended the late request's events:
-- one key, one effect (G2). The chaos suite's 40 s Postgres stall found this:
-- both runs of a withdrawal were stored.
CREATE FUNCTION tributary_idempotency_complete_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.completed_at IS NOT NULL THEN
        RAISE EXCEPTION 'idempotency key % of principal % is completed already', OLD.key, OLD.principal
            USING ERRCODE = 'TB001';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER idempotency_complete_once BEFORE UPDATE OF completed_at ON idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION tributary_idempotency_complete_once();

---- create above / drop below ----

DROP TRIGGER idempotency_complete_once ON idempotency_keys;
DROP FUNCTION tributary_idempotency_complete_once;
