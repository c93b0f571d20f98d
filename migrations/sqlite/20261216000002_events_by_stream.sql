-- Each feed stream (Avatar events, Account events) reads its own events in position order;
-- without this index a reader of the rarer stream walks every event of the other one.
CREATE INDEX events_stream_order ON events (aggregate_type, position);
