//! The global event feed: every Avatar event in one order, read after a [`Cursor`], with a
//! checkpoint per consumer kept in the same database.
//!
//! PostgreSQL assigns positions when rows are inserted, but transactions commit in any order, so
//! a reader that followed positions alone could pass a position that commits later. The feed is
//! therefore ordered by (writing transaction id, position) and only shows rows whose transaction
//! is older than the oldest one still running (`pg_snapshot_xmin`): every event that becomes
//! visible later sorts after everything already read. SQLite has one writer at a time, so its
//! positions are already in commit order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aggregates::{Avatar, AvatarEvent};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use projections::{Cursor, FeedEvent, Projection, ProjectionError, Tx};
use sqlx::postgres::PgListener;
use sqlx::Row;
use tokio::sync::watch;
use uuid::Uuid;

use super::{Database, StoreError};

/// The NOTIFY channel the events table's trigger signals on.
pub const CHANNEL: &str = "aisha_events";
/// How often readers look for new events when no notification arrives (the fallback).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

impl From<ProjectionError> for StoreError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::Database(e) => Self::Database(e.to_string()),
            ProjectionError::Invalid(e) => Self::Corrupt(e),
        }
    }
}

/// Reads the feed and wakes readers when events commit.
#[derive(Clone)]
pub struct Feed {
    db: Database,
    wake: watch::Sender<u64>,
}

impl Feed {
    /// A feed over `db`. On PostgreSQL it also listens for commits from any instance.
    pub fn new(db: Database) -> Self {
        let (wake, _) = watch::channel(0);
        let feed = Self { db, wake };
        if let Database::Postgres(pool) = &feed.db {
            let pool = pool.clone();
            let wake = feed.wake.clone();
            tokio::spawn(async move { listen(pool, wake).await });
        }
        feed
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

    /// Up to `limit` events after `after`, in feed order.
    pub async fn read_after(&self, after: Cursor, limit: i64) -> Result<Vec<FeedEvent>, StoreError> {
        match &self.db {
            Database::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                read_after(&mut Tx::Postgres(&mut conn), after, limit).await
            }
            Database::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                read_after(&mut Tx::Sqlite(&mut conn), after, limit).await
            }
        }
    }

    /// The newest cursor a reader could reach now, and how many events lie beyond `after`.
    pub async fn lag(&self, after: Cursor) -> Result<FeedLag, StoreError> {
        let (behind, oldest): (i64, Option<DateTime<Utc>>) = match &self.db {
            Database::Postgres(pool) => {
                let row = sqlx::query(
                    "SELECT count(*) AS behind, min(recorded_at) AS oldest FROM events
                      WHERE aggregate_type = $1
                        AND (txid, position) > ($2::text::xid8, $3)",
                )
                .bind(Avatar::TYPE)
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
                .bind(Avatar::TYPE)
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
async fn listen(pool: sqlx::PgPool, wake: watch::Sender<u64>) {
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "feed: LISTEN failed");
                } else {
                    loop {
                        match listener.recv().await {
                            Ok(_) => wake.send_modify(|n| *n = n.wrapping_add(1)),
                            Err(e) => {
                                tracing::warn!(error = %e, "feed: notification stream broke");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "feed: cannot open LISTEN connection"),
        }
        if pool.is_closed() {
            return;
        }
        // Readers fall back to polling meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Reads up to `limit` events after `after` on an open connection or transaction.
pub async fn read_after(
    tx: &mut Tx<'_>,
    after: Cursor,
    limit: i64,
) -> Result<Vec<FeedEvent>, StoreError> {
    let rows = match tx {
        Tx::Postgres(conn) => sqlx::query(
            "SELECT txid::text::bigint AS tx, position, aggregate_id, sequence,
                    payload::text AS payload, metadata::text AS metadata, recorded_at
               FROM events
              WHERE aggregate_type = $1
                AND (txid, position) > ($2::text::xid8, $3)
                AND txid < pg_snapshot_xmin(pg_current_snapshot())
              ORDER BY txid, position
              LIMIT $4",
        )
        .bind(Avatar::TYPE)
        .bind(after.txid.to_string())
        .bind(after.position)
        .bind(limit)
        .fetch_all(&mut **conn)
        .await?
        .into_iter()
        .map(|r| RawFeedRow {
            txid: r.get("tx"),
            position: r.get("position"),
            aggregate_id: r.get("aggregate_id"),
            sequence: r.get("sequence"),
            payload: r.get("payload"),
            metadata: r.get("metadata"),
            recorded_at: r.get("recorded_at"),
        })
        .collect::<Vec<_>>(),
        Tx::Sqlite(conn) => sqlx::query(
            "SELECT position, aggregate_id, sequence, payload, metadata, recorded_at
               FROM events
              WHERE aggregate_type = ?1 AND position > ?2
              ORDER BY position
              LIMIT ?3",
        )
        .bind(Avatar::TYPE)
        .bind(after.position)
        .bind(limit)
        .fetch_all(&mut **conn)
        .await?
        .into_iter()
        .map(|r| RawFeedRow {
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
        })
        .collect::<Vec<_>>(),
    };
    rows.into_iter().map(RawFeedRow::into_event).collect()
}

struct RawFeedRow {
    txid: i64,
    position: i64,
    aggregate_id: String,
    sequence: i64,
    payload: String,
    metadata: String,
    recorded_at: DateTime<Utc>,
}

impl RawFeedRow {
    fn into_event(self) -> Result<FeedEvent, StoreError> {
        let event: AvatarEvent = serde_json::from_str(&self.payload).map_err(|e| {
            StoreError::Corrupt(format!("event at position {}: {e}", self.position))
        })?;
        let avatar_id = Uuid::parse_str(&self.aggregate_id).map_err(|e| {
            StoreError::Corrupt(format!("aggregate id `{}`: {e}", self.aggregate_id))
        })?;
        Ok(FeedEvent {
            cursor: Cursor {
                txid: self.txid,
                position: self.position,
            },
            avatar_id,
            sequence: self.sequence as u64,
            event,
            metadata: serde_json::from_str::<HashMap<String, String>>(&self.metadata)
                .unwrap_or_default(),
            recorded_at: self.recorded_at,
        })
    }
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

/// Applies feed events to one projection, batch by batch, each batch and its checkpoint in one
/// transaction. On PostgreSQL a batch first takes the projection's advisory lock, so with several
/// instances only one applies a given projection at a time and nothing is applied twice.
pub struct ProjectionRunner {
    feed: Feed,
    projection: Arc<dyn Projection>,
    batch_size: i64,
    on_commit: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// What one catch-up pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    pub applied: usize,
    /// Another instance held the projection's lock, so this pass did nothing.
    pub lock_busy: bool,
}

impl ProjectionRunner {
    pub fn new(feed: Feed, projection: Arc<dyn Projection>) -> Self {
        Self {
            feed,
            projection,
            batch_size: 500,
            on_commit: None,
        }
    }

    /// Called after every batch that applied events has committed (e.g. to wake workers).
    pub fn on_commit(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_commit = Some(Arc::new(f));
        self
    }

    pub fn with_batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Applies batches until the feed is exhausted (or another instance holds the lock).
    pub async fn catch_up(&self) -> Result<Progress, StoreError> {
        let mut progress = Progress::default();
        loop {
            match self.apply_one_batch().await? {
                None => {
                    progress.lock_busy = true;
                    return Ok(progress);
                }
                Some(0) => return Ok(progress),
                Some(n) => {
                    progress.applied += n;
                    if let Some(f) = &self.on_commit {
                        f();
                    }
                }
            }
        }
    }

    /// One batch in one transaction; `None` when the lock is held elsewhere.
    pub async fn apply_one_batch(&self) -> Result<Option<usize>, StoreError> {
        let name = self.projection.name();
        match self.feed.database() {
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(lock_key(name))
                    .fetch_one(&mut *tx)
                    .await?;
                if !locked {
                    return Ok(None);
                }
                let n = self.apply_batch_in(&mut Tx::Postgres(&mut tx)).await?;
                tx.commit().await?;
                Ok(Some(n))
            }
            Database::Sqlite(pool) => {
                // IMMEDIATE takes the write lock up front, so the checkpoint read and the
                // writes that follow see the same database.
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let n = self.apply_batch_in(&mut Tx::Sqlite(&mut tx)).await?;
                tx.commit().await?;
                Ok(Some(n))
            }
        }
    }

    async fn apply_batch_in(&self, tx: &mut Tx<'_>) -> Result<usize, StoreError> {
        let name = self.projection.name();
        let cursor = load_checkpoint(tx, name).await?;
        let events = read_after(tx, cursor, self.batch_size).await?;
        let Some(last) = events.last().map(|e| e.cursor) else {
            return Ok(0);
        };
        for event in &events {
            self.projection.apply(tx, event).await.map_err(|e| {
                tracing::error!(projection = name, position = event.cursor.position,
                    avatar_id = %event.avatar_id, error = %e, "projection failed to apply an event");
                StoreError::from(e)
            })?;
        }
        save_checkpoint(tx, name, last).await?;
        Ok(events.len())
    }

    /// Empties the projection's tables and replays the whole feed into them in one transaction:
    /// readers keep seeing the old rows until it commits, and the live runner waits on the lock.
    pub async fn rebuild(&self) -> Result<usize, StoreError> {
        let name = self.projection.name();
        match self.feed.database() {
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(lock_key(name))
                    .execute(&mut *tx)
                    .await?;
                let n = self.rebuild_in(&mut Tx::Postgres(&mut tx)).await?;
                tx.commit().await?;
                Ok(n)
            }
            Database::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let n = self.rebuild_in(&mut Tx::Sqlite(&mut tx)).await?;
                tx.commit().await?;
                Ok(n)
            }
        }
    }

    async fn rebuild_in(&self, tx: &mut Tx<'_>) -> Result<usize, StoreError> {
        let name = self.projection.name();
        for table in self.projection.tables() {
            tx.execute(&format!("DELETE FROM {table}"), vec![]).await?;
        }
        save_checkpoint(tx, name, Cursor::START).await?;
        let mut applied = 0;
        loop {
            let n = self.apply_batch_in(tx).await?;
            if n == 0 {
                return Ok(applied);
            }
            applied += n;
        }
    }

    /// Runs forever: catch up, then wait for a commit notification or the poll interval.
    pub async fn run(self) {
        let mut wake = self.feed.subscribe();
        loop {
            if let Err(e) = self.catch_up().await {
                tracing::error!(projection = self.name(), error = %e, "projection runner failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let _ = tokio::time::timeout(POLL_INTERVAL, wake.changed()).await;
        }
    }
}
