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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aggregates::{Account, AccountEvent, Avatar, AvatarEvent};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use projections::{Cursor, FeedEvent, LedgerEvent, ProjectionError, Tx};
use sqlx::postgres::PgListener;
use sqlx::Row;
use tokio::sync::watch;
use uuid::Uuid;

use super::keys::{avatar_key_id, SecretKey};
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
            tokio::spawn(async move { listen(pool, wake, local, alive).await });
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
        match &self.db {
            Database::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                read_stream_after(&mut Tx::Postgres(&mut conn), after, limit).await
            }
            Database::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                read_stream_after(&mut Tx::Sqlite(&mut conn), after, limit).await
            }
        }
    }

    /// How many Avatar events lie beyond `after`, and how old the oldest of them is.
    pub async fn lag(&self, after: Cursor) -> Result<FeedLag, StoreError> {
        self.lag_of(Avatar::TYPE, after).await
    }

    /// How many events of `aggregate_type` lie beyond `after`, and how old the oldest is.
    pub async fn lag_of(&self, aggregate_type: &str, after: Cursor) -> Result<FeedLag, StoreError> {
        let (behind, oldest): (i64, Option<DateTime<Utc>>) = match &self.db {
            Database::Postgres(pool) => {
                let row = sqlx::query(
                    "SELECT count(*) AS behind, min(recorded_at) AS oldest FROM events
                      WHERE aggregate_type = $1
                        AND (txid, position) > ($2::text::xid8, $3)",
                )
                .bind(aggregate_type)
                .bind(after.txid.to_string())
                .bind(after.position)
                .fetch_one(pool)
                .await?;
                (row.get("behind"), row.get("oldest"))
            }
            Database::Sqlite(pool) => {
                let row = sqlx::query(
                    "SELECT count(*) AS behind, min(recorded_at) AS oldest FROM events
                      WHERE aggregate_type = ?1 AND position > ?2",
                )
                .bind(aggregate_type)
                .bind(after.position)
                .fetch_one(pool)
                .await?;
                let oldest: Option<String> = row.get("oldest");
                (row.get("behind"), oldest.and_then(|s| s.parse().ok()))
            }
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

/// Keeps a LISTEN connection open (reconnecting as needed) and turns notifications into wakes.
async fn listen(
    pool: sqlx::PgPool,
    wake: watch::Sender<u64>,
    local: Arc<std::sync::RwLock<HashSet<String>>>,
    alive: std::sync::Weak<()>,
) {
    let mut look = tokio::time::interval(Duration::from_secs(1));
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %crate::telemetry::chain(&e), "feed: LISTEN failed");
                } else {
                    loop {
                        let received = tokio::select! {
                            received = listener.recv() => received,
                            _ = look.tick() => {
                                if alive.strong_count() == 0 {
                                    return;
                                }
                                continue;
                            }
                        };
                        match received {
                            Ok(n) => {
                                let ours =
                                    local.read().is_ok_and(|local| local.contains(n.payload()));
                                if !ours {
                                    wake.send_modify(|n| *n = n.wrapping_add(1));
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %crate::telemetry::chain(&e), "feed: notification stream broke");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::chain(&e), "feed: cannot open LISTEN connection")
            }
        }
        if pool.is_closed() || alive.strong_count() == 0 {
            return;
        }
        // Readers fall back to polling meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Tells the feed readers of other instances that this process has committed events.
///
/// Commits do not notify from inside their own transaction: a transaction that has called NOTIFY
/// holds PostgreSQL's notification-queue lock from its pre-commit until its commit is flushed,
/// so every such commit would wait for the one before it and no two could share a WAL flush.
/// Instead the writer, once its commit is done, asks this notifier, which sends one
/// `pg_notify` in a transaction of its own, and at most one every [`NOTIFY_EVERY`]: requests
/// arriving meanwhile are folded into the next one. Local readers are woken in-process by the
/// writer ([`Feed::notify`]); readers that miss a notification still poll.
#[derive(Clone)]
pub struct CommitNotifier {
    /// The payload of our notifications, so a feed woken in-process can ignore them.
    source: String,
    requests: tokio::sync::mpsc::Sender<()>,
}

impl CommitNotifier {
    /// A notifier for writers to `db`, or `None` where no other process could listen (SQLite)
    /// or outside a runtime. Its task ends when the last clone is dropped.
    pub fn new(db: &Database) -> Option<Self> {
        let Database::Postgres(pool) = db else {
            return None;
        };
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        // One request pending is all the coalescing needs: a full channel already means "send
        // one more".
        let (requests, pending) = tokio::sync::mpsc::channel(1);
        let source = Uuid::new_v4().to_string();
        runtime.spawn(send_notifications(pool.clone(), source.clone(), pending));
        Some(Self { source, requests })
    }

    /// Asks for a notification soon; never waits.
    pub fn committed(&self) {
        let _ = self.requests.try_send(());
    }
}

async fn send_notifications(
    pool: sqlx::PgPool,
    source: String,
    mut pending: tokio::sync::mpsc::Receiver<()>,
) {
    while pending.recv().await.is_some() {
        // Its own autocommit transaction; the notification is delivered at commit whether or not
        // that commit is flushed, so it need not wait for the disk.
        let sent =
            sqlx::query("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&source)
                .execute(&pool)
                .await;
        if let Err(e) = sent {
            tracing::debug!(error = %crate::telemetry::chain(&e), "feed: NOTIFY failed; other instances will poll");
        }
        tokio::time::sleep(NOTIFY_EVERY).await;
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
    let rows = match tx {
        Tx::Postgres(conn) => {
            // Two statements, so the events are read with a snapshot taken after the watermark
            // looked at the writers (see the module docs); the function insists on READ COMMITTED.
            let watermark: String = sqlx::query_scalar("SELECT aisha_feed_watermark()::text")
                .fetch_one(&mut **conn)
                .await?;
            sqlx::query(
                "SELECT txid::text::bigint AS tx, position, aggregate_id, sequence,
                        payload::text AS payload, metadata::text AS metadata, recorded_at
                   FROM events
                  WHERE aggregate_type = $1
                    AND (txid, position) > ($2::text::xid8, $3)
                    AND txid < $5::text::xid8
                  ORDER BY txid, position
                  LIMIT $4",
            )
            .bind(E::AGGREGATE_TYPE)
            .bind(after.txid.to_string())
            .bind(after.position)
            .bind(limit)
            .bind(watermark)
            .fetch_all(&mut **conn)
            .await?
            .into_iter()
            .map(|r| StoredEvent {
                txid: r.get("tx"),
                position: r.get("position"),
                aggregate_id: r.get("aggregate_id"),
                sequence: r.get("sequence"),
                payload: r.get("payload"),
                metadata: r.get("metadata"),
                recorded_at: r.get("recorded_at"),
                key: None,
            })
            .collect::<Vec<_>>()
        }
        Tx::Sqlite(conn) => sqlx::query(
            "SELECT position, aggregate_id, sequence, payload, metadata, recorded_at
               FROM events
              WHERE aggregate_type = ?1 AND position > ?2
              ORDER BY position
              LIMIT ?3",
        )
        .bind(E::AGGREGATE_TYPE)
        .bind(after.position)
        .bind(limit)
        .fetch_all(&mut **conn)
        .await?
        .into_iter()
        .map(|r| StoredEvent {
            txid: 0,
            position: r.get("position"),
            aggregate_id: r.get("aggregate_id"),
            sequence: r.get("sequence"),
            payload: r.get("payload"),
            metadata: r.get("metadata"),
            recorded_at: r
                .get::<String, _>("recorded_at")
                .parse()
                .unwrap_or_else(|_| Utc::now()),
            key: None,
        })
        .collect::<Vec<_>>(),
    };
    let mut rows = rows;
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

/// One row of the `events` table as the feed reads it, before it is decoded.
pub struct StoredEvent {
    pub txid: i64,
    pub position: i64,
    pub aggregate_id: String,
    pub sequence: i64,
    pub payload: String,
    pub metadata: String,
    pub recorded_at: DateTime<Utc>,
    /// The key its sealed fields open with; `None` if nothing is sealed or the key is gone.
    pub key: Option<Arc<SecretKey>>,
}

impl StoredEvent {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            txid: self.txid,
            position: self.position,
        }
    }

    fn corrupt(&self, e: serde_json::Error) -> StoreError {
        StoreError::Corrupt(format!("event at position {}: {e}", self.position))
    }

    /// The payload, opened where sealed (placeholders where its key is gone).
    fn payload<T: serde::de::DeserializeOwned>(
        &self,
        aggregate_type: &str,
    ) -> Result<T, StoreError> {
        if !seal::mentions_sealed(&self.payload) {
            return serde_json::from_str(&self.payload).map_err(|e| self.corrupt(e));
        }
        let mut value: serde_json::Value =
            serde_json::from_str(&self.payload).map_err(|e| self.corrupt(e))?;
        let cx = seal::context(
            aggregate_type,
            &self.aggregate_id,
            self.sequence as usize,
            "payload",
        );
        seal::open(&mut value, true, self.key.as_deref(), &cx);
        serde_json::from_value(value).map_err(|e| self.corrupt(e))
    }

    fn metadata(&self, aggregate_type: &str) -> HashMap<String, String> {
        if !seal::mentions_sealed(&self.metadata) {
            return serde_json::from_str(&self.metadata).unwrap_or_default();
        }
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&self.metadata) else {
            return HashMap::new();
        };
        let cx = seal::context(
            aggregate_type,
            &self.aggregate_id,
            self.sequence as usize,
            "metadata",
        );
        seal::open(&mut value, false, self.key.as_deref(), &cx);
        serde_json::from_value(value).unwrap_or_default()
    }
}

/// The events of one aggregate type as the feed delivers them: which rows, how a row decodes,
/// and how its consumers' checkpoints are named.
pub trait FeedStream: Send + Sync + Sized + 'static {
    /// The `aggregate_type` of its rows.
    const AGGREGATE_TYPE: &'static str;
    /// Put in front of a read model's name to name its checkpoint (and its lock), so that a
    /// consumer's name says which stream it follows.
    const CONSUMER_PREFIX: &'static str;

    fn decode(row: StoredEvent) -> Result<Self, StoreError>;
    fn cursor(&self) -> Cursor;
    fn recorded_at(&self) -> DateTime<Utc>;
}

impl FeedStream for FeedEvent {
    const AGGREGATE_TYPE: &'static str = Avatar::TYPE;
    const CONSUMER_PREFIX: &'static str = "";

    fn decode(row: StoredEvent) -> Result<Self, StoreError> {
        let event: AvatarEvent = row.payload(Self::AGGREGATE_TYPE)?;
        let avatar_id = Uuid::parse_str(&row.aggregate_id).map_err(|e| {
            StoreError::Corrupt(format!("aggregate id `{}`: {e}", row.aggregate_id))
        })?;
        Ok(FeedEvent {
            cursor: row.cursor(),
            avatar_id,
            sequence: row.sequence as u64,
            event,
            metadata: row.metadata(Self::AGGREGATE_TYPE),
            recorded_at: row.recorded_at,
        })
    }

    fn cursor(&self) -> Cursor {
        self.cursor
    }

    fn recorded_at(&self) -> DateTime<Utc> {
        self.recorded_at
    }
}

impl FeedStream for LedgerEvent {
    const AGGREGATE_TYPE: &'static str = Account::TYPE;
    const CONSUMER_PREFIX: &'static str = "ledger:";

    fn decode(row: StoredEvent) -> Result<Self, StoreError> {
        let event: AccountEvent = row.payload(Self::AGGREGATE_TYPE)?;
        let telegram_id =
            aggregates::account::telegram_id_of(&row.aggregate_id).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "aggregate id `{}` of an Account is not `account-<telegram id>`",
                    row.aggregate_id
                ))
            })?;
        Ok(LedgerEvent {
            cursor: row.cursor(),
            telegram_id,
            sequence: row.sequence as u64,
            event,
            metadata: row.metadata(Self::AGGREGATE_TYPE),
            recorded_at: row.recorded_at,
        })
    }

    fn cursor(&self) -> Cursor {
        self.cursor
    }

    fn recorded_at(&self) -> DateTime<Utc> {
        self.recorded_at
    }
}

/// The checkpoint name of read model `name` on stream `E` (`gallery`, `ledger:money`).
pub fn consumer_name<E: FeedStream>(name: &str) -> String {
    format!("{}{name}", E::CONSUMER_PREFIX)
}

/// The checkpoint of `consumer` (the start of the feed when it has none).
pub async fn load_checkpoint(tx: &mut Tx<'_>, consumer: &str) -> Result<Cursor, StoreError> {
    let row = match tx {
        Tx::Postgres(c) => {
            sqlx::query("SELECT txid, position FROM feed_checkpoints WHERE consumer = $1")
                .bind(consumer)
                .fetch_optional(&mut **c)
                .await?
                .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))
        }
        Tx::Sqlite(c) => {
            sqlx::query("SELECT txid, position FROM feed_checkpoints WHERE consumer = ?1")
                .bind(consumer)
                .fetch_optional(&mut **c)
                .await?
                .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))
        }
    };
    Ok(row.map_or(Cursor::START, |(txid, position)| Cursor { txid, position }))
}

/// Moves `consumer`'s checkpoint to `cursor`, inside the caller's transaction.
pub async fn save_checkpoint(
    tx: &mut Tx<'_>,
    consumer: &str,
    cursor: Cursor,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO feed_checkpoints (consumer, txid, position, updated_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (consumer) DO UPDATE
            SET txid = excluded.txid, position = excluded.position,
                updated_at = excluded.updated_at",
        vec![
            consumer.into(),
            cursor.txid.into(),
            cursor.position.into(),
            Utc::now().into(),
        ],
    )
    .await?;
    Ok(())
}

/// A stable 64-bit key for a PostgreSQL advisory lock named `name` (FNV-1a).
pub fn lock_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("aisha:{name}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

#[cfg(test)]
mod tests {
    use aggregates::{Action, Actor, AvatarType, Command, Gender};
    use sqlx::PgPool;

    use super::*;
    use crate::store::AvatarStore;

    fn create(id: Uuid) -> Command {
        Command::new(
            Actor::User(1),
            Utc::now(),
            Action::Create {
                avatar_id: id,
                name: "wake".into(),
                gender: Gender::Other,
                avatar_type: AvatarType::Portrait,
            },
        )
    }

    /// Commits no longer notify from a trigger: another instance's feed hears of them only
    /// through the writer's own notification (polling would never change `subscribe`).
    #[sqlx::test(migrations = false)]
    async fn a_commit_wakes_the_feed_of_another_instance(pool: PgPool) {
        let db = Database::Postgres(pool);
        db.migrate().await.unwrap();
        let elsewhere = Feed::new(db.clone());
        let mut woken = elsewhere.subscribe();
        // The listener connects in the background; keep committing until one is heard.
        let store = AvatarStore::new(db.clone());
        let heard = async {
            loop {
                let id = Uuid::new_v4();
                store.execute(id, create(id), Uuid::new_v4()).await.unwrap();
                if tokio::time::timeout(Duration::from_millis(200), woken.changed())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), heard)
            .await
            .expect("the other instance's feed was never woken");
    }
}
