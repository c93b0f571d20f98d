//! Projection runners: each applies the feed to one read model (or reactor) batch by batch,
//! with its checkpoint in the same transaction, and rebuilds it from the start of the feed
//! while the live one keeps serving. Several rebuilds read and decode the feed once between
//! them ([`Replay`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use db::{Backend, Tx};
use projections::{FeedEvent, LedgerEvent, Projection};

use super::checkpoints::{consumer_name, load_checkpoint, save_checkpoint};
use super::feed::{read_stream_after, Feed, FeedStream, POLL_INTERVAL};
use super::locks::lock_key;
use super::{Database, StoreError};
use crate::telemetry;

mod rebuild;
mod shadow;

pub use rebuild::Replay;

/// Applies feed events to one projection, batch by batch, each batch and its checkpoint in one
/// transaction. On PostgreSQL a batch first takes the projection's advisory lock, so with several
/// instances only one applies a given projection at a time and nothing is applied twice. `E` is
/// the stream it follows: Avatar events by default, or the ledger's.
pub struct ProjectionRunner<E: FeedStream = FeedEvent> {
    feed: Feed,
    projection: Arc<dyn Projection<E>>,
    /// The checkpoint's name, which also keys the lock.
    consumer: String,
    batch_size: i64,
    on_commit: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// Ends the checkpoint name of a rebuild in progress (`gallery:rebuild`).
const REBUILD_SUFFIX: &str = ":rebuild";

/// Whether `consumer` is a rebuild's replay rather than a live consumer.
pub fn is_rebuild_consumer(consumer: &str) -> bool {
    consumer.ends_with(REBUILD_SUFFIX)
}

/// One applied batch, before its transaction commits.
#[derive(Debug, Default)]
struct Batch {
    applied: usize,
    last_recorded_at: Option<DateTime<Utc>>,
}

/// What one catch-up pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    pub applied: usize,
    /// Another instance held the projection's lock, so this pass did nothing.
    pub lock_busy: bool,
}

impl ProjectionRunner {
    /// A runner of an avatar read model (or reactor).
    pub fn new(feed: Feed, projection: Arc<dyn Projection>) -> Self {
        Self::following(feed, projection)
    }
}

impl ProjectionRunner<LedgerEvent> {
    /// A runner of a read model of the credits ledger; its checkpoint is `ledger:<name>`.
    pub fn ledger(feed: Feed, projection: Arc<dyn Projection<LedgerEvent>>) -> Self {
        Self::following(feed, projection)
    }
}

impl<E: FeedStream> ProjectionRunner<E> {
    fn following(feed: Feed, projection: Arc<dyn Projection<E>>) -> Self {
        Self {
            consumer: consumer_name::<E>(projection.name()),
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

    /// The name of its checkpoint in `feed_checkpoints`.
    pub fn consumer(&self) -> &str {
        &self.consumer
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
        let name = self.consumer.as_str();
        let db = self.feed.database();
        // Who may apply differs in kind: PostgreSQL instances take turns through the
        // projection's advisory lock; SQLite, one writer, needs only to see work waiting.
        let mut tx = match db.backend() {
            Backend::Postgres => {
                let mut tx = db.begin().await?;
                // A batch commits without waiting for the disk: its rows and its checkpoint
                // commit or vanish together, so a batch lost in a crash is applied again from
                // the durable events; and whoever acts on what it wrote (a worker claiming a
                // work item) commits durably, which flushes this commit first.
                let locked = tx
                    .tx()
                    .fetch_optional(
                        "SELECT pg_try_advisory_xact_lock($1)
                            AND set_config('synchronous_commit', 'off', true) = 'off' AS locked",
                        vec![lock_key(name).into()],
                    )
                    .await?
                    .map(|r| r.get::<bool>("locked"))
                    .transpose()?;
                if locked != Some(true) {
                    return Ok(None);
                }
                tx
            }
            Backend::Sqlite => {
                if !self.has_news(db, name).await? {
                    return Ok(Some(0));
                }
                // IMMEDIATE takes the write lock up front, so the checkpoint read and the
                // writes that follow see the same database.
                db.begin_write().await?
            }
        };
        let batch = self.apply_batch_in(&mut tx.tx(), name).await?;
        tx.commit().await?;
        Ok(Some(self.applied(batch)))
    }

    /// Whether events of its stream lie beyond `consumer`'s checkpoint: a look without the write
    /// lock, so an idle SQLite runner does not queue behind the writers (and make them wait)
    /// just to learn there is nothing to apply.
    async fn has_news(&self, db: &Database, consumer: &str) -> Result<bool, StoreError> {
        let mut conn = db.acquire().await?;
        let cursor = load_checkpoint(&mut conn.tx(), consumer).await?;
        // Only this stream's events: the other stream's would take the write lock on every
        // wake for nothing to apply.
        let newest = conn
            .tx()
            .fetch_i64(
                "SELECT max(position) FROM events WHERE aggregate_type = $1",
                vec![E::AGGREGATE_TYPE.into()],
            )
            .await?;
        Ok(newest.is_some_and(|p| p > cursor.position))
    }

    /// Records a committed batch in the metrics and returns its size.
    fn applied(&self, batch: Batch) -> usize {
        if let Some(last) = batch.last_recorded_at {
            let delay = (Utc::now() - last).to_std().unwrap_or_default();
            telemetry::feed_applied(self.name(), batch.applied, delay.as_secs_f64());
        }
        batch.applied
    }

    /// Applies the batch after `consumer`'s checkpoint and moves the checkpoint past it.
    async fn apply_batch_in(&self, tx: &mut Tx<'_>, consumer: &str) -> Result<Batch, StoreError> {
        let name = self.projection.name();
        let cursor = load_checkpoint(tx, consumer).await?;
        let events: Vec<E> = read_stream_after(tx, cursor, self.batch_size).await?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(Batch::default());
        };
        self.projection
            .apply_batch(tx, &events)
            .await
            .map_err(|e| {
                tracing::error!(projection = name, from_position = first.cursor().position,
                to_position = last.cursor().position, error = %crate::telemetry::chain(&e),
                "projection failed to apply a batch");
                StoreError::from(e)
            })?;
        save_checkpoint(tx, consumer, last.cursor()).await?;
        Ok(Batch {
            applied: events.len(),
            last_recorded_at: Some(last.recorded_at()),
        })
    }

    /// Runs forever: catch up, then wait for a commit notification or the poll interval.
    pub async fn run(self) {
        let mut wake = self.feed.subscribe();
        loop {
            if let Err(e) = self.catch_up().await {
                tracing::error!(projection = self.name(), error = %crate::telemetry::chain(&e), "projection runner failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let _ = tokio::time::timeout(POLL_INTERVAL, wake.changed()).await;
        }
    }
}
