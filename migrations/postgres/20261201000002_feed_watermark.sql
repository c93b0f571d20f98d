-- The feed's watermark: the feed shows events whose writing transaction is below it. It used to
-- be the oldest transaction running anywhere on the server (pg_snapshot_xmin), so one open
-- transaction in another database froze every reader. It now waits only for transactions that
-- write our `events` table, told apart by their lock on it (see src/store/feed.rs for why this
-- skips nothing).
--
-- Call it in a statement of its own, in READ COMMITTED, and read the events in the next
-- statement: that one's snapshot must be taken after this function has looked at the locks.
CREATE FUNCTION aisha_feed_watermark() RETURNS xid8
    LANGUAGE plpgsql
    VOLATILE
AS
$$
DECLARE
    -- Every xid below this was assigned before now; xmax itself and above may still be.
    horizon xid8;
    n       bigint;
    oldest  bigint;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'aisha_feed_watermark() needs READ COMMITTED, not %',
            current_setting('transaction_isolation');
    END IF;
    horizon := pg_snapshot_xmax(pg_current_snapshot());
    n := horizon::text::bigint;
    -- pg_stat_activity is otherwise read once per transaction and then served from a copy; a
    -- runner that reads several batches in one transaction needs the backends as they are now.
    PERFORM pg_stat_clear_snapshot();
    SELECT min(n - w.d)
      INTO oldest
      FROM (
          -- Writers: backends holding (or queued for) a lock on events that a write needs.
          -- backend_xid is 32 bits; d is how far below the horizon it lies (modulo 2^32).
          SELECT ((n - a.backend_xid::text::bigint) % 4294967296 + 4294967296) % 4294967296 AS d
            FROM pg_locks l
            JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'relation'
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.relation = 'events'::regclass
             AND l.mode IN ('RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareLock',
                            'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
             AND a.backend_xid IS NOT NULL
          UNION ALL
          -- Prepared (two-phase) transactions have no backend; be safe and count all of ours.
          SELECT ((n - p.transaction::text::bigint) % 4294967296 + 4294967296) % 4294967296
            FROM pg_prepared_xacts p
           WHERE p.database = current_database()
      ) w
     -- 0 is the horizon itself; 2^31 and more is an xid assigned after it: neither holds it back.
     WHERE w.d > 0 AND w.d < 2147483648;
    RETURN coalesce(oldest::text::xid8, horizon);
END;
$$;

-- The watermark relies on every writer of events locking the table before it has a transaction
-- id: an xid assigned earlier would be below the watermark and invisible to it. postgres-es
-- appends with the INSERT as the first statement of its transaction; this refuses an INSERT that
-- comes after other writes of the same transaction, rather than let the feed skip its events.
CREATE FUNCTION aisha_events_writer_guard() RETURNS trigger
    LANGUAGE plpgsql
AS
$$
BEGIN
    IF current_setting('aisha.events_writer', true) IS DISTINCT FROM 'on' THEN
        IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
            RAISE EXCEPTION 'events must be inserted before anything else is written in a transaction'
                USING HINT = 'The feed could skip them otherwise; see src/store/feed.rs.';
        END IF;
        -- This transaction now holds its lock on events (taken when the INSERT was planned).
        PERFORM set_config('aisha.events_writer', 'on', true);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_writer_guard
    BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION aisha_events_writer_guard();
