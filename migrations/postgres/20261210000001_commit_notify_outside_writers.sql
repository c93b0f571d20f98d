-- Writers no longer NOTIFY from inside their transactions. A transaction that has notified
-- takes PostgreSQL's notification-queue lock before it commits and keeps it until its commit is
-- flushed, so with this trigger every append queued behind the one before it and no two
-- appends could share a WAL flush. The writing process now wakes its own readers in-process and
-- sends one coalesced notification after its commits (see src/store/feed.rs); readers that miss
-- one still poll.
DROP TRIGGER IF EXISTS events_notify ON events;
DROP FUNCTION IF EXISTS aisha_notify_events();
