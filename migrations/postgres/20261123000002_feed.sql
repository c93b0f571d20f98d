-- How far each feed consumer (projection or reactor) has read.
CREATE TABLE feed_checkpoints
(
    consumer   text PRIMARY KEY,
    txid       bigint      NOT NULL,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Work for the actors, enqueued by reactors in the same transaction as their checkpoint, so a
-- side effect is driven by a committed event and survives restarts. `phase` records how far a
-- non-idempotent step got (e.g. `submitting` before a paid FAL call).
CREATE TABLE work_items
(
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text        NOT NULL,
    key           text        NOT NULL UNIQUE,
    avatar_id     text        NOT NULL,
    payload       text        NOT NULL,
    status        text        NOT NULL DEFAULT 'pending',
    phase         text,
    attempts      integer     NOT NULL DEFAULT 0,
    last_error    text,
    due_at        timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);

CREATE INDEX work_items_due ON work_items (kind, due_at) WHERE status = 'pending';
