-- How far each feed consumer (projection or reactor) has read.
CREATE TABLE feed_checkpoints
(
    consumer   text PRIMARY KEY,
    txid       integer NOT NULL,
    position   integer NOT NULL,
    updated_at text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

-- Work for the actors, enqueued by reactors in the same transaction as their checkpoint.
-- Times are RFC 3339 text in UTC.
CREATE TABLE work_items
(
    id            integer PRIMARY KEY AUTOINCREMENT,
    kind          text    NOT NULL,
    key           text    NOT NULL UNIQUE,
    avatar_id     text    NOT NULL,
    payload       text    NOT NULL,
    status        text    NOT NULL DEFAULT 'pending',
    phase         text,
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    due_at        text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    claimed_until text,
    created_at    text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at   text
) STRICT;

CREATE INDEX work_items_due ON work_items (kind, status, due_at);
