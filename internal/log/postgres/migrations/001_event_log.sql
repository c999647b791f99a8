-- The event log. Postgres is the source of truth; everything else is rebuilt from here.
CREATE TABLE events (
    -- Global position: unique and increasing in allocation order, NOT in commit
    -- order. The relay must not use it alone as a watermark (see transaction_id).
    global_position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    version         bigint      NOT NULL CHECK (version > 0),
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version > 0),
    payload         jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    correlation_id  text        NOT NULL,
    causation_id    text        NOT NULL,
    principal       text        NOT NULL,
    traceparent     text        NOT NULL DEFAULT '',
    tracestate      text        NOT NULL DEFAULT '',
    -- The id of the inserting transaction. Rows whose transaction_id is below
    -- pg_snapshot_xmin(pg_current_snapshot()) can no longer be joined by an
    -- earlier, still-running transaction: the relay's safe watermark.
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    -- One row per version: concurrent appends at the same version collide here (G1).
    CONSTRAINT events_stream_version UNIQUE (aggregate_type, aggregate_id, version)
);

CREATE INDEX events_commit_order ON events (transaction_id, global_position);

-- Snapshots: one per aggregate, the newest. schema_version is the version of
-- the state's JSON shape; a snapshot of another version is ignored on load.
CREATE TABLE snapshots (
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    version        bigint      NOT NULL,
    schema_version integer     NOT NULL,
    state          jsonb       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Idempotency keys (IETF draft "The Idempotency-Key HTTP Header Field"), scoped
-- per principal. A row is claimed before the command runs and completed in the
-- same transaction as the events it produced.
CREATE TABLE idempotency_keys (
    principal       text        NOT NULL,
    key             text        NOT NULL,
    request_hash    bytea       NOT NULL,
    claimed_until   timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    response_status integer,
    -- For a command that appended events: the stream and version range, from
    -- which the response is rebuilt exactly. For a refused command: the body.
    aggregate_type  text,
    aggregate_id    text,
    first_version   bigint,
    last_version    bigint,
    response_body   bytea,
    PRIMARY KEY (principal, key)
);

---- create above / drop below ----

DROP TABLE idempotency_keys;
DROP TABLE snapshots;
DROP TABLE events;
