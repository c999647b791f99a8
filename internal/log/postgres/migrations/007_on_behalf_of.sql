-- Who asked (DESIGN G11): an event records, besides the principal that acted,
-- the principal it acted for — the requester of a transfer on the steps a
-- process manager appends for it. Empty when the actor asked for itself.
-- A constant default makes the new column a catalog-only change: existing
-- rows are not rewritten.
ALTER TABLE events ADD COLUMN on_behalf_of text NOT NULL DEFAULT '';

-- 003's plpgsql loop has been unused since 004 replaced it.
DROP FUNCTION tributary_append_batch;

-- Group commit, 006's two statements with one more per-command column,
-- c_on_behalf_of. The argument list changes, so the old function goes: a
-- binary of the previous schema version refuses to start (CheckSchema), and
-- one still running fails its appends until it is replaced.
DROP FUNCTION tributary_append_commands;

CREATE FUNCTION tributary_append_commands(
    c_type text[], c_id text[], c_expected bigint[],
    c_correlation text[], c_causation text[], c_principal text[], c_on_behalf_of text[],
    c_traceparent text[], c_tracestate text[],
    c_snap_version bigint[], c_snap_schema integer[], c_snap_state text[],
    c_idem_principal text[], c_idem_key text[], c_idem_status integer[],
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
                             c_snap_version, c_snap_schema, c_snap_state, c_idem_principal, c_idem_key, c_idem_status)
            WITH ORDINALITY AS c(typ, id, expected, correlation, causation, principal, on_behalf_of, traceparent, tracestate,
                                 snap_version, snap_schema, snap_state, idem_principal, idem_key, idem_status, i)
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
        UPDATE idempotency_keys k
        SET completed_at = now(), response_status = ok.idem_status,
            aggregate_type = ok.typ, aggregate_id = ok.id,
            first_version = ok.expected + 1,
            last_version = ok.expected + (SELECT count(*) FROM unnest(e_cmd) AS x(cmd) WHERE x.cmd = ok.i)
        FROM ok
        WHERE ok.idem_key <> '' AND k.principal = ok.idem_principal AND k.key = ok.idem_key
    )
    SELECT ins.event_id, ins.version, ins.global_position, ins.recorded_at FROM ins;
END;
$$;

---- create above / drop below ----

DROP FUNCTION tributary_append_commands;

CREATE FUNCTION tributary_append_commands(
    c_type text[], c_id text[], c_expected bigint[],
    c_correlation text[], c_causation text[], c_principal text[], c_traceparent text[], c_tracestate text[],
    c_snap_version bigint[], c_snap_schema integer[], c_snap_state text[],
    c_idem_principal text[], c_idem_key text[], c_idem_status integer[],
    e_cmd integer[], e_ord integer[], e_id uuid[], e_type text[], e_schema integer[], e_payload text[])
RETURNS TABLE (o_event_id uuid, o_version bigint, o_global_position bigint, o_recorded_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    IF NOT (0 < ANY (c_snap_version) OR '' <> ANY (c_idem_key)) THEN
        RETURN QUERY
        WITH cmd AS (
            SELECT * FROM unnest(c_type, c_id, c_expected, c_correlation, c_causation, c_principal, c_traceparent, c_tracestate)
                WITH ORDINALITY AS c(typ, id, expected, correlation, causation, principal, traceparent, tracestate, i)
        ), ok AS (
            SELECT cmd.* FROM cmd
            WHERE cmd.expected = (SELECT coalesce(max(ev.version), 0) FROM events ev
                                  WHERE ev.aggregate_type = cmd.typ AND ev.aggregate_id = cmd.id)
        ), ins AS (
            INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version,
                                payload, correlation_id, causation_id, principal, traceparent, tracestate)
            SELECT e.id, ok.typ, ok.id, ok.expected + e.ord, e.typ, e.sv, e.payload::jsonb,
                   ok.correlation, ok.causation, ok.principal, ok.traceparent, ok.tracestate
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
        SELECT * FROM unnest(c_type, c_id, c_expected, c_correlation, c_causation, c_principal, c_traceparent, c_tracestate,
                             c_snap_version, c_snap_schema, c_snap_state, c_idem_principal, c_idem_key, c_idem_status)
            WITH ORDINALITY AS c(typ, id, expected, correlation, causation, principal, traceparent, tracestate,
                                 snap_version, snap_schema, snap_state, idem_principal, idem_key, idem_status, i)
    ), ok AS (
        SELECT cmd.* FROM cmd
        WHERE cmd.expected = (SELECT coalesce(max(ev.version), 0) FROM events ev
                              WHERE ev.aggregate_type = cmd.typ AND ev.aggregate_id = cmd.id)
    ), ins AS (
        INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version,
                            payload, correlation_id, causation_id, principal, traceparent, tracestate)
        SELECT e.id, ok.typ, ok.id, ok.expected + e.ord, e.typ, e.sv, e.payload::jsonb,
               ok.correlation, ok.causation, ok.principal, ok.traceparent, ok.tracestate
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
        UPDATE idempotency_keys k
        SET completed_at = now(), response_status = ok.idem_status,
            aggregate_type = ok.typ, aggregate_id = ok.id,
            first_version = ok.expected + 1,
            last_version = ok.expected + (SELECT count(*) FROM unnest(e_cmd) AS x(cmd) WHERE x.cmd = ok.i)
        FROM ok
        WHERE ok.idem_key <> '' AND k.principal = ok.idem_principal AND k.key = ok.idem_key
    )
    SELECT ins.event_id, ins.version, ins.global_position, ins.recorded_at FROM ins;
END;
$$;

CREATE FUNCTION tributary_append_batch(
    c_type text[], c_id text[], c_expected bigint[],
    c_correlation text[], c_causation text[], c_principal text[], c_traceparent text[], c_tracestate text[],
    c_snap_version bigint[], c_snap_schema integer[], c_snap_state text[],
    c_idem_principal text[], c_idem_key text[], c_idem_status integer[],
    e_cmd integer[], e_ord integer[], e_id uuid[], e_type text[], e_schema integer[], e_payload text[])
RETURNS TABLE (o_cmd integer, o_event_id uuid, o_version bigint, o_global_position bigint, o_recorded_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    i   integer;
    cur bigint;
BEGIN
    FOR i IN 1 .. coalesce(array_length(c_type, 1), 0) LOOP
            SELECT coalesce(max(ev.version), 0) INTO cur FROM events ev
            WHERE ev.aggregate_type = c_type[i] AND ev.aggregate_id = c_id[i];
            IF cur <> c_expected[i] THEN
                CONTINUE;
            END IF;
            RETURN QUERY
            WITH ins AS (
                INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type, schema_version,
                                    payload, correlation_id, causation_id, principal, traceparent, tracestate)
                SELECT x.id, c_type[i], c_id[i], cur + x.ord, x.typ, x.sv, x.payload::jsonb,
                       c_correlation[i], c_causation[i], c_principal[i], c_traceparent[i], c_tracestate[i]
                FROM unnest(e_cmd, e_ord, e_id, e_type, e_schema, e_payload) AS x(cmd, ord, id, typ, sv, payload)
                WHERE x.cmd = i
                ORDER BY x.ord
                RETURNING event_id, version, global_position, recorded_at
            )
            SELECT i, ins.event_id, ins.version, ins.global_position, ins.recorded_at FROM ins;
            -- The insert succeeded (a unique violation would have ended the
            -- whole function): the snapshot and the idempotency record follow.
            IF c_snap_version[i] > 0 THEN
                INSERT INTO snapshots (aggregate_type, aggregate_id, version, schema_version, state)
                VALUES (c_type[i], c_id[i], c_snap_version[i], c_snap_schema[i], c_snap_state[i]::jsonb)
                ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                    SET version = excluded.version, schema_version = excluded.schema_version,
                        state = excluded.state, taken_at = now()
                    WHERE snapshots.version < excluded.version OR snapshots.schema_version <> excluded.schema_version;
            END IF;
            IF c_idem_key[i] <> '' THEN
                UPDATE idempotency_keys k
                SET completed_at = now(), response_status = c_idem_status[i],
                    aggregate_type = c_type[i], aggregate_id = c_id[i],
                    first_version = cur + 1,
                    last_version = cur + (SELECT count(*) FROM unnest(e_cmd) AS x(cmd) WHERE x.cmd = i)
                WHERE k.principal = c_idem_principal[i] AND k.key = c_idem_key[i];
            END IF;
    END LOOP;
END;
$$;

ALTER TABLE events DROP COLUMN on_behalf_of;
