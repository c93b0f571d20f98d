-- The event store used by sqlite-es, plus a global position for the feed. SQLite has one writer
-- at a time, so a position taken inside the write transaction is also commit order.
CREATE TABLE events
(
    aggregate_type text                          NOT NULL,
    aggregate_id   text                          NOT NULL,
    sequence       integer CHECK (sequence >= 0) NOT NULL,
    event_type     text                          NOT NULL,
    event_version  text                          NOT NULL,
    payload        text                          NOT NULL,
    metadata       text                          NOT NULL,
    position       integer,
    recorded_at    text                          NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

CREATE UNIQUE INDEX events_position ON events (position);

-- The composite primary key must stay the only key that a concurrent append can violate:
-- sqlite-es reads that violation as an optimistic-lock conflict.
CREATE TRIGGER events_assign_position AFTER INSERT ON events
BEGIN
    UPDATE events
       SET position = (SELECT IFNULL(MAX(position), 0) + 1 FROM events)
     WHERE rowid = NEW.rowid;
END;

CREATE TABLE snapshots
(
    aggregate_type   text                                  NOT NULL,
    aggregate_id     text                                  NOT NULL,
    last_sequence    integer CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot integer CHECK (current_snapshot >= 0) NOT NULL,
    payload          text                                  NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;
