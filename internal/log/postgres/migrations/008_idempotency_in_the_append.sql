-- An idempotency key is recorded by the append itself (issue 16): a command
-- that did not claim its key first — a process manager's step — inserts it,
-- completed, in the same statement as its events, instead of paying a
-- transaction (and a WAL flush) for the claim. A key claimed first (the
-- writer's Idempotency-Key) is completed as before.
--
-- One key, one effect (G2) still holds in the database: completing a key a
-- second time fails with TB001 (005), and recording a key for a request
-- other than the one that claimed or completed it fails with TB002 — and
-- either failure fails the transaction that carried the events.
CREATE OR REPLACE FUNCTION tributary_idempotency_complete_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.completed_at IS NOT NULL THEN
        RAISE EXCEPTION 'idempotency key % of principal % is completed already', OLD.key, OLD.principal
            USING ERRCODE = 'TB001';
    END IF;
    IF NEW.request_hash IS DISTINCT FROM OLD.request_hash THEN
        RAISE EXCEPTION 'idempotency key % of principal % belongs to another request', OLD.key, OLD.principal
            USING ERRCODE = 'TB002';
    END IF;
    RETURN NEW;
END;
$$;

-- Group commit with one more per-command column, c_idem_hash, the request's
-- hash. The key is inserted completed, or its claim (same request) completed;
-- two commands of one batch with the same key fail the statement
-- (cardinality_violation), and the caller sends them one by one. 007's form
-- stays for binaries of the previous schema version still running during a
-- deploy; the next migration drops it.
CREATE FUNCTION tributary_append_commands(
    c_type text[], c_id text[], c_expected bigint[],
    c_correlation text[], c_causation text[], c_principal text[], c_on_behalf_of text[],
    c_traceparent text[], c_tracestate text[],
    c_snap_version bigint[], c_snap_schema integer[], c_snap_state text[],
    c_idem_principal text[], c_idem_key text[], c_idem_status integer[], c_idem_hash bytea[],
    e_cmd integer[], e_ord integer[], e_id uuid[], e_type text[], e_schema integer[], e_payload text[])
RETURNS TABLE (o_event_id uuid, o_version bigint, o_global_position bigint, o_recorded_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF NOT (0 < ANY (c_snap_version) OR '' <> ANY (c_idem_key)) THEN
        RETURN QUERY
        WITH cmd AS (
            SELECT * FROM unnest(c_type, c_id, c_expected, c_correlation, c_causation, c_principal, c_on_behalf_of, c_traceparent, c_tracestate)
                WITH ORDINALITY AS c(typ, id, expected, correlation, causation, principal, on_behalf_of, traceparent, tracestate, i)
        ), ok AS (
            SELECT cmd.* FROM cmd
            WHERE cmd.expected = (SELECT coalesce(max(ev.version), 0) FROM events ev
                                  WHERE ev.aggregate_type = cmd.typ AND ev.aggregate_id = cmd.id)
        ), ins AS (
            INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version,
                                payload, correlation_id, causation_id, principal, on_behalf_of, traceparent, tracestate)
            SELECT e.id, ok.typ, ok.id, ok.expected + e.ord, e.typ, e.sv, e.payload::jsonb,
                   ok.correlation, ok.causation, ok.principal, ok.on_behalf_of, ok.traceparent, ok.tracestate
            FROM unnest(e_cmd, e_ord, e_id, e_type, e_schema, e_payload)
                AS e(cmd, ord, id, typ, sv, payload)
            JOIN ok ON ok.i = e.cmd
            ORDER BY e.cmd, e.ord
            RETURNING event_id, version, global_position, recorded_at
        )
        SELECT ins.event_id, ins.version, ins.global_position, ins.recorded_at FROM ins;
        RETURN;
    END IF;
    RETURN QUERY
    WITH cmd AS (
        SELECT * FROM unnest(c_type, c_id, c_expected, c_correlation, c_causation, c_principal, c_on_behalf_of, c_traceparent, c_tracestate,
                             c_snap_version, c_snap_schema, c_snap_state, c_idem_principal, c_idem_key, c_idem_status, c_idem_hash)
            WITH ORDINALITY AS c(typ, id, expected, correlation, causation, principal, on_behalf_of, traceparent, tracestate,
                                 snap_version, snap_schema, snap_state, idem_principal, idem_key, idem_status, idem_hash, i)
    ), ok AS (
        SELECT cmd.* FROM cmd
        WHERE cmd.expected = (SELECT coalesce(max(ev.version), 0) FROM events ev
                              WHERE ev.aggregate_type = cmd.typ AND ev.aggregate_id = cmd.id)
    ), ins AS (
        INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version,
                            payload, correlation_id, causation_id, principal, on_behalf_of, traceparent, tracestate)
        SELECT e.id, ok.typ, ok.id, ok.expected + e.ord, e.typ, e.sv, e.payload::jsonb,
               ok.correlation, ok.causation, ok.principal, ok.on_behalf_of, ok.traceparent, ok.tracestate
        FROM unnest(e_cmd, e_ord, e_id, e_type, e_schema, e_payload)
            AS e(cmd, ord, id, typ, sv, payload)
        JOIN ok ON ok.i = e.cmd
        ORDER BY e.cmd, e.ord
        RETURNING event_id, version, global_position, recorded_at
    ), snap AS (
        INSERT INTO snapshots (aggregate_type, aggregate_id, version, schema_version, state)
        SELECT ok.typ, ok.id, ok.snap_version, ok.snap_schema, ok.snap_state::jsonb FROM ok WHERE ok.snap_version > 0
        ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
            SET version = excluded.version, schema_version = excluded.schema_version,
                state = excluded.state, taken_at = now()
            WHERE snapshots.version < excluded.version OR snapshots.schema_version <> excluded.schema_version
    ), idem AS (
        INSERT INTO idempotency_keys AS k (principal, key, request_hash, claimed_until, completed_at, response_status,
                                           aggregate_type, aggregate_id, first_version, last_version)
        SELECT ok.idem_principal, ok.idem_key, ok.idem_hash, now(), now(), ok.idem_status, ok.typ, ok.id, ok.expected + 1,
               ok.expected + (SELECT count(*) FROM unnest(e_cmd) AS x(cmd) WHERE x.cmd = ok.i)
        FROM ok WHERE ok.idem_key <> ''
        ON CONFLICT (principal, key) DO UPDATE
            SET completed_at = excluded.completed_at, response_status = excluded.response_status,
                request_hash = excluded.request_hash,
                aggregate_type = excluded.aggregate_type, aggregate_id = excluded.aggregate_id,
                first_version = excluded.first_version, last_version = excluded.last_version
    )
    SELECT ins.event_id, ins.version, ins.global_position, ins.recorded_at FROM ins;
END;
$$;

---- create above / drop below ----

DROP FUNCTION tributary_append_commands(text[], text[], bigint[], text[], text[], text[], text[], text[], text[],
    bigint[], integer[], text[], text[], text[], integer[], bytea[], integer[], integer[], uuid[], text[], integer[], text[]);

CREATE OR REPLACE FUNCTION tributary_idempotency_complete_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.completed_at IS NOT NULL THEN
        RAISE EXCEPTION 'idempotency key % of principal % is completed already', OLD.key, OLD.principal
            USING ERRCODE = 'TB001';
    END IF;
    RETURN NEW;
END;
$$;
