-- Where each relay (by name) has published up to, in commit order:
-- (transaction_id, global_position) of the last event Kafka acknowledged.
CREATE TABLE relay_checkpoints (
    name            text        PRIMARY KEY,
    transaction_id  xid8        NOT NULL,
    global_position bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

---- create above / drop below ----

DROP TABLE relay_checkpoints;
