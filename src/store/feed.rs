//! The global event feed: every event of one aggregate type in one order, read after a
//! [`Cursor`], with a checkpoint per consumer kept in the same database. Avatar events reach the
//! avatar read models and reactors as [`FeedEvent`]s; Account events reach the ledger's read
//! models as [`LedgerEvent`]s ([`FeedStream`] says how a stored row becomes either), with the
//! same ordering guarantees: both streams share one order and one cursor type.
//!
//! PostgreSQL assigns positions when rows are inserted, but transactions commit in any order, so
//! a reader that followed positions alone could pass a position that commits later. The feed is
//! therefore ordered by (writing transaction id, position) and only shows rows whose transaction
//! is below a watermark, `aisha_feed_watermark()` (migration `20261201000002`): every event that
//! becomes visible later sorts after everything already read. SQLite has one writer at a time, so
//! its positions are already in commit order.
//!
//! The watermark waits only for writers of our `events` table, not for every transaction of the
//! server (`pg_snapshot_xmin` did, so one open transaction in another database froze every
//! reader). It is the lower of the current snapshot's xmax and the oldest xid among backends that
//! hold (or wait for) a lock on `events` strong enough to write it in this database. A writer takes
//! that lock before it has an xid (postgres-es appends with the INSERT as its transaction's first
//! statement; a trigger refuses an INSERT that follows other writes) and keeps it until after it
//! has left the proc array. [`read_after`] reads the watermark W in one statement and the events
//! in the next, each with its own READ COMMITTED snapshot. A row with txid X < W was written by a
//! transaction that had its xid before the first snapshot and was no running writer when the locks
//! were read after it, so it had ended before the second snapshot: its rows are all visible, and
//! nothing below W can appear later. Our own sessions end a transaction left idle after
//! [`super::IDLE_IN_TRANSACTION_TIMEOUT`], so one of ours that hangs cannot hold the feed forever.

mod notify;
mod stream;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aggregates::Avatar;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use db::{Arg, Backend, Tx};
use projections::{Cursor, FeedEvent, LedgerEvent, ProjectionError};
use tokio::sync::watch;

pub use notify::CommitNotifier;
pub use stream::{FeedStream, StoredEvent};

use super::keys::avatar_key_id;
use super::{seal, Database, StoreError};

/// The NOTIFY channel on which writers tell other instances that they committed events.
pub const CHANNEL: &str = "aisha_events";
/// How often readers look for new events when no notification arrives (the fallback).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// The least time between two of one writer's notifications: a burst of commits costs the
/// other instances one wake-up per interval, not one per commit.
pub const NOTIFY_EVERY: Duration = Duration::from_millis(5);

impl From<ProjectionError> for StoreError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::Database(e) => Self::Database(e),
            ProjectionError::Invalid(e) => Self::Corrupt(e),
        }
    }
}

/// Reads the feed and wakes readers when events commit.
#[derive(Clone)]
pub struct Feed {
    db: Database,
    wake: watch::Sender<u64>,
    /// Notifiers whose writers wake this feed in-process already ([`Feed::notify`]), so their
    /// notifications arriving through PostgreSQL would only cost a second, empty read.
    local: Arc<std::sync::RwLock<HashSet<String>>>,
    /// Held by every clone: the LISTEN connection is given back once the last one is gone.
    alive: Arc<()>,
}

impl Feed {
    /// A feed over `db`. On PostgreSQL it also listens for commits from any instance.
    pub fn new(db: Database) -> Self {
        let (wake, _) = watch::channel(0);
        let feed = Self {
            db,
            wake,
            local: Arc::default(),
            alive: Arc::new(()),
        };
        if let Database::Postgres(pool) = &feed.db {
            let pool = pool.clone();
            let wake = feed.wake.clone();
            let local = feed.local.clone();
            let alive = Arc::downgrade(&feed.alive);
            tokio::spawn(async move { notify::listen(pool, wake, local, alive).await });
        }
        feed
    }

    /// From now on `notifier`'s writer calls [`Feed::notify`] after each commit.
    pub(crate) fn wakes_locally(&self, notifier: &CommitNotifier) {
        if let Ok(mut local) = self.local.write() {
            local.insert(notifier.source.clone());
        }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Tells local readers that events were committed (used right after this process commits).
    pub fn notify(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever events may have been committed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// Up to `limit` Avatar events after `after`, in feed order.
    pub async fn read_after(
        &self,
        after: Cursor,
        limit: i64,
    ) -> Result<Vec<FeedEvent>, StoreError> {
        self.read_stream_after(after, limit).await
    }

    /// Up to `limit` events of stream `E` (e.g. [`LedgerEvent`]) after `after`, in feed order.
    pub async fn read_stream_after<E: FeedStream>(
        &self,
        after: Cursor,
        limit: i64,
    ) -> Result<Vec<E>, StoreError> {
        let mut conn = self.db.acquire().await?;
        read_stream_after(&mut conn.tx(), after, limit).await
    }

    /// How many Avatar events lie beyond `after`, and how old the oldest of them is.
    pub async fn lag(&self, after: Cursor) -> Result<FeedLag, StoreError> {
        self.lag_of(Avatar::TYPE, after).await
    }

    /// How many events of `aggregate_type` lie beyond `after`, and how old the oldest is.
    pub async fn lag_of(&self, aggregate_type: &str, after: Cursor) -> Result<FeedLag, StoreError> {
        let mut conn = self.db.acquire().await?;
        let row = conn
            .tx()
            .fetch_optional(
                &format!(
                    "SELECT count(*) AS behind, min(recorded_at) AS oldest FROM events
                      WHERE aggregate_type = $1 AND {}",
                    Order::of(self.db.backend()).after
                ),
                cursor_args(aggregate_type, after),
            )
            .await?;
        let (behind, oldest): (i64, Option<DateTime<Utc>>) = match row {
            Some(row) => (row.get("behind")?, row.get("oldest")?),
            None => (0, None),
        };
        Ok(FeedLag {
            events_behind: behind,
            oldest_unread_age: oldest.map(|t| (Utc::now() - t).to_std().unwrap_or_default()),
        })
    }
}

/// A feed consumer's checkpoint and how far behind the feed it is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsumerStatus {
    pub consumer: String,
    pub txid: i64,
    pub position: i64,
    /// When the checkpoint last moved; `None` for a consumer that has not started.
    pub updated_at: Option<DateTime<Utc>>,
    pub lag: FeedLag,
}

impl Feed {
    /// Every consumer with a checkpoint, plus the `expected` ones that have none yet (at the
    /// start of the feed), in name order. Each one's lag counts the events of the stream it
    /// follows (see [`FeedStream::CONSUMER_PREFIX`]).
    pub async fn consumers(&self, expected: &[&str]) -> Result<Vec<ConsumerStatus>, StoreError> {
        let mut conn = self.db.acquire().await?;
        let rows = conn
            .tx()
            .fetch_all(
                "SELECT consumer, txid, position, updated_at FROM feed_checkpoints",
                vec![],
            )
            .await?;
        let mut found: std::collections::BTreeMap<String, (Cursor, Option<DateTime<Utc>>)> =
            expected
                .iter()
                .map(|name| ((*name).to_owned(), (Cursor::START, None)))
                .collect();
        for row in rows {
            let cursor = Cursor {
                txid: row.get("txid")?,
                position: row.get("position")?,
            };
            found.insert(row.get("consumer")?, (cursor, row.get("updated_at")?));
        }
        drop(conn);
        let mut out = Vec::with_capacity(found.len());
        for (consumer, (cursor, updated_at)) in found {
            let aggregate_type = if consumer.starts_with(LedgerEvent::CONSUMER_PREFIX) {
                LedgerEvent::AGGREGATE_TYPE
            } else {
                FeedEvent::AGGREGATE_TYPE
            };
            out.push(ConsumerStatus {
                lag: self.lag_of(aggregate_type, cursor).await?,
                consumer,
                txid: cursor.txid,
                position: cursor.position,
                updated_at,
            });
        }
        Ok(out)
    }
}

/// How far a consumer is behind the feed.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct FeedLag {
    pub events_behind: i64,
    #[serde(serialize_with = "serialize_secs")]
    pub oldest_unread_age: Option<Duration>,
}

fn serialize_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Reads up to `limit` Avatar events after `after` on an open connection or transaction.
pub async fn read_after(
    tx: &mut Tx<'_>,
    after: Cursor,
    limit: i64,
) -> Result<Vec<FeedEvent>, StoreError> {
    read_stream_after(tx, after, limit).await
}

/// Reads up to `limit` events of stream `E` after `after` on an open connection or transaction.
pub async fn read_stream_after<E: FeedStream>(
    tx: &mut Tx<'_>,
    after: Cursor,
    limit: i64,
) -> Result<Vec<E>, StoreError> {
    read_rows_after::<E>(tx, after, limit)
        .await?
        .into_iter()
        .map(E::decode)
        .collect()
}

/// The rows [`read_stream_after`] reads, not yet decoded (a rebuild decodes them off the
/// async threads, once for every read model it rebuilds).
pub async fn read_rows_after<E: FeedStream>(
    tx: &mut Tx<'_>,
    after: Cursor,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let order = Order::of(tx.backend());
    let mut args = cursor_args(E::AGGREGATE_TYPE, after);
    args.push(limit.into());
    if tx.backend() == Backend::Postgres {
        // Two statements, so the events are read with a snapshot taken after the watermark
        // looked at the writers (see the module docs); the function insists on READ COMMITTED.
        let watermark = tx
            .fetch_optional("SELECT aisha_feed_watermark()::text AS watermark", vec![])
            .await?
            .map(|r| r.get::<String>("watermark"))
            .transpose()?;
        args.push(watermark.into());
    }
    let sql = format!(
        "SELECT {} AS tx, position, aggregate_id, sequence, CAST(payload AS TEXT) AS payload,
                CAST(metadata AS TEXT) AS metadata, recorded_at
           FROM events
          WHERE aggregate_type = $1 AND {} {}
          ORDER BY {}
          LIMIT $4",
        order.txid, order.after, order.visible, order.by
    );
    let mut rows = tx
        .fetch_all(&sql, args)
        .await?
        .iter()
        .map(StoredEvent::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    if E::AGGREGATE_TYPE == Avatar::TYPE {
        attach_keys(tx, &mut rows).await?;
    }
    Ok(rows)
}

/// Gives each sealed row the key that opens it (none if destroyed): one query for the batch,
/// on the reader's own transaction and without a cache, so a destroyed key is never used again.
async fn attach_keys(tx: &mut Tx<'_>, rows: &mut [StoredEvent]) -> Result<(), StoreError> {
    let mut ids: Vec<String> = rows
        .iter()
        .filter(|r| seal::mentions_sealed(&r.payload) || seal::mentions_sealed(&r.metadata))
        .map(|r| avatar_key_id(&r.aggregate_id))
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    ids.sort_unstable();
    ids.dedup();
    let keys = super::keys::open_on(tx, &ids).await?;
    for row in rows.iter_mut() {
        row.key = keys
            .get(&avatar_key_id(&row.aggregate_id))
            .cloned()
            .flatten();
    }
    Ok(())
}

/// How each backend orders the feed (see the module docs): PostgreSQL by (writing transaction,
/// position) below the watermark (`$5`), SQLite by position alone. The cursor is `$2` (its
/// transaction id, as text) and `$3` (its position); SQLite has no use for `$2`.
struct Order {
    /// The transaction id as a number.
    txid: &'static str,
    /// Past the cursor.
    after: String,
    /// Only rows no later commit can sort before.
    visible: &'static str,
    by: &'static str,
}

impl Order {
    fn of(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => Self {
                txid: "txid::text::bigint",
                after: cursor_side(backend, ">"),
                visible: "AND txid < $5::text::xid8",
                by: "txid, position",
            },
            Backend::Sqlite => Self {
                txid: "0",
                after: cursor_side(backend, ">"),
                visible: "",
                by: "position",
            },
        }
    }
}

/// The rows on one side of the cursor (`op` being `>` for those after it, `<=` for those it
/// covers), in the feed's order on `backend`: the cursor is `$2` and `$3` of [`cursor_args`].
pub(crate) fn cursor_side(backend: Backend, op: &str) -> String {
    match backend {
        Backend::Postgres => format!("(txid, position) {op} ($2::text::xid8, $3)"),
        Backend::Sqlite => format!("position {op} $3"),
    }
}

/// `$1` the stream's aggregate type, `$2` and `$3` the cursor, as [`Order`] reads them.
pub(crate) fn cursor_args(aggregate_type: &str, after: Cursor) -> Vec<Arg> {
    vec![
        aggregate_type.into(),
        after.txid.to_string().into(),
        after.position.into(),
    ]
}
