-- Group commit: the appends of many commands in one round trip and one
-- commit. Each command is checked against its expected version; one whose
-- stream has moved on appends nothing and is missing from the result. A
-- concurrent transaction that takes a version between that check and the
-- insert makes the whole batch fail with unique_violation; the caller then
-- sends the batch's commands one by one, so only the late one conflicts.
-- (No per-command subtransaction: they cost more than the rare resend.)
--
-- Only exact expected versions come here: the version a command decided on
-- was committed before this transaction took its id, so every inserted
-- version's predecessor has a smaller transaction id, and the relay's commit
-- order keeps per-stream order.
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

---- create above / drop below ----

DROP FUNCTION tributary_append_batch;
