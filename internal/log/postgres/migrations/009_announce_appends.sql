-- A statement that inserts events announces it on the channel
-- tributary_events (issue 16): the relay's leader listens there while it is
-- caught up and reads as soon as an append commits, instead of polling every
-- few milliseconds — promptly at any rate of commands, idle at none. Postgres
-- delivers the notification at commit and only then, once per transaction
-- however many statements sent it. The relay still reads at its poll interval
-- without one, so a lost notification delays events, never loses them.
CREATE FUNCTION tributary_announce_append() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tributary_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER announce_append AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION tributary_announce_append();

---- create above / drop below ----

DROP TRIGGER announce_append ON events;
DROP FUNCTION tributary_announce_append;
