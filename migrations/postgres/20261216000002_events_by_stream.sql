-- Each feed stream (Avatar events, Account events) reads its own events in feed order; without
-- this index a reader of the rarer stream walks every event of the other one since its checkpoint.
CREATE INDEX events_stream_order ON events (aggregate_type, txid, position);
