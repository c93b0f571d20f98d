//! Rebuilding a read model from the start of the feed while its live runner keeps serving: on
//! PostgreSQL into shadow tables swapped in at the end ([`shadow`]), on SQLite in one transaction.

use std::sync::Arc;

use db::Tx;
use projections::Cursor;
use tokio::sync::mpsc;

use super::shadow::ShadowTables;
use super::{ProjectionRunner, REBUILD_SUFFIX};
use crate::store::checkpoints::{load_checkpoint, save_checkpoint};
use crate::store::feed::{read_rows_after, FeedStream, StoredEvent};
use crate::store::locks::lock_key;
use crate::store::{Database, StoreError};

/// Decoded batches of one stream from its start, read once and handed to every rebuild that
/// replays it (see [`Replay::split`]); a rebuild reads the rest of the feed itself after the last.
pub struct Replay<E> {
    batches: mpsc::Receiver<Arc<Vec<E>>>,
}

impl<E: FeedStream> Replay<E> {
    /// Starts one reader of stream `E` from the start of the feed and returns a replay for each
    /// of `consumers` rebuilds; `None` when the pool is too small to hold the reader's connection
    /// beside one for each rebuild (each then reads for itself).
    ///
    /// The reader takes its connection before the rebuilds take theirs and keeps it to the end:
    /// a rebuild waiting for a batch holds its own connection, so a reader that had to ask the
    /// pool for one could wait forever. It keeps at most two batches ahead of the slowest
    /// rebuild, stops at the head of the feed, or early if reading fails (the rebuilds then read
    /// the rest themselves and meet the error there).
    pub async fn split(
        pool: &sqlx::PgPool,
        consumers: usize,
    ) -> Result<Option<Vec<Self>>, StoreError> {
        if consumers == 0 || (pool.options().get_max_connections() as usize) <= consumers {
            return Ok(None);
        }
        let conn = pool.acquire().await?;
        let (senders, replays): (Vec<_>, Vec<_>) = (0..consumers)
            .map(|_| {
                let (tx, rx) = mpsc::channel(2);
                (tx, Self { batches: rx })
            })
            .unzip();
        tokio::spawn(async move {
            if let Err(e) = read_ahead::<E>(conn, senders).await {
                tracing::warn!(error = %crate::telemetry::chain(&e), "rebuild: shared reading stopped; each rebuild reads the rest itself");
            }
        });
        Ok(Some(replays))
    }
}

async fn read_ahead<E: FeedStream>(
    mut conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    senders: Vec<mpsc::Sender<Arc<Vec<E>>>>,
) -> Result<(), StoreError> {
    // Reading is sequential (each batch starts after the last row of the one before); decoding,
    // the CPU-heavy part (opening sealed fields, JSON into typed events), runs off the async
    // threads on every core while the next batch is read.
    let mut cursor = Cursor::START;
    let mut decoding: Option<tokio::task::JoinHandle<Result<Vec<E>, StoreError>>> = None;
    loop {
        let rows =
            read_rows_after::<E>(&mut Tx::Postgres(&mut conn), cursor, REBUILD_BATCH).await?;
        let next = rows.last().map(|r| r.cursor());
        let previous = decoding.take();
        if next.is_some() {
            decoding = Some(tokio::task::spawn_blocking(move || {
                decode_on_every_core(rows)
            }));
        }
        if let Some(previous) = previous {
            let events = previous
                .await
                .map_err(|e| StoreError::Task("decoding a replay batch", e))??;
            let batch = Arc::new(events);
            let mut open = 0;
            for sender in &senders {
                if sender.send(batch.clone()).await.is_ok() {
                    open += 1;
                }
            }
            if open == 0 {
                return Ok(());
            }
        }
        match next {
            Some(next) => cursor = next,
            None => return Ok(()),
        }
    }
}

/// A replay transaction's settings: writes go to the shadow tables (`$1` is the search path) and
/// commits need not wait for the disk.
const REPLAY_SETTINGS: &str =
    "SELECT set_config('search_path', $1, true), set_config('synchronous_commit', 'off', true)";

/// Decodes a batch in order, its rows split between the machine's cores.
fn decode_on_every_core<E: FeedStream>(mut rows: Vec<StoredEvent>) -> Result<Vec<E>, StoreError> {
    const LEAST_PER_THREAD: usize = 500;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(rows.len() / LEAST_PER_THREAD)
        .clamp(1, 8);
    if threads == 1 {
        return rows.into_iter().map(E::decode).collect();
    }
    let total = rows.len();
    let each = total.div_ceil(threads);
    let mut parts = Vec::with_capacity(threads);
    while rows.len() > each {
        parts.push(rows.split_off(rows.len() - each));
    }
    parts.push(rows);
    parts.reverse();
    std::thread::scope(|scope| {
        let decoding: Vec<_> = parts
            .into_iter()
            .map(|part| {
                scope.spawn(move || {
                    part.into_iter()
                        .map(E::decode)
                        .collect::<Result<Vec<E>, _>>()
                })
            })
            .collect();
        let mut events = Vec::with_capacity(total);
        for part in decoding {
            match part.join() {
                Ok(decoded) => events.extend(decoded?),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(events)
    })
}

/// Held by every swap, so that two never drop the same view at once.
const SWAP_LOCK: &str = "projection-swap";

/// Events per transaction while a rebuild fills its shadow tables.
const REBUILD_BATCH: i64 = 10_000;

impl<E: FeedStream> ProjectionRunner<E> {
    /// Replays the whole feed into the projection while its live runner keeps serving, and
    /// returns how many events were replayed.
    ///
    /// On PostgreSQL the replay fills shadow copies of the tables (in a schema of their own,
    /// reached through `search_path`) in short transactions, then builds their other indexes; a
    /// final short transaction, holding the projection's lock, applies the tail and puts the
    /// shadow tables in place of the live ones.
    /// (Reading events holds no feed reader back, but one long transaction would hold back
    /// VACUUM on the whole server.)
    /// On SQLite, one writer at a time anyway, it is one transaction: readers keep seeing the
    /// old rows until it commits, and writers wait for it.
    pub async fn rebuild(&self) -> Result<usize, StoreError> {
        self.rebuild_replaying(None).await
    }

    /// [`Self::rebuild`], taking the first batches from a shared [`Replay`] rather than reading
    /// them itself. (SQLite rebuilds in one transaction, one after another: it reads its own.)
    pub async fn rebuild_replaying(&self, replay: Option<Replay<E>>) -> Result<usize, StoreError> {
        let db = self.feed.database();
        match db {
            Database::Postgres(pool) => self.rebuild_postgres(pool, replay).await,
            Database::Sqlite(_) => {
                let mut tx = db.begin_write().await?;
                let n = self.rebuild_in(&mut tx.tx()).await?;
                tx.commit().await?;
                Ok(n)
            }
        }
    }

    async fn rebuild_in(&self, tx: &mut Tx<'_>) -> Result<usize, StoreError> {
        let name = self.consumer.as_str();
        for table in self.projection.tables() {
            tx.execute(&format!("DELETE FROM {table}"), vec![]).await?;
        }
        save_checkpoint(tx, name, Cursor::START).await?;
        let mut applied = 0;
        loop {
            let n = self.apply_batch_in(tx, name).await?.applied;
            if n == 0 {
                return Ok(applied);
            }
            applied += n;
        }
    }

    async fn rebuild_postgres(
        &self,
        pool: &sqlx::PgPool,
        replay: Option<Replay<E>>,
    ) -> Result<usize, StoreError> {
        let name = self.projection.name();
        let consumer = format!("{}{REBUILD_SUFFIX}", self.consumer);
        // One rebuild of a projection at a time, across instances; a second one waits and then
        // starts over. The session lock ends with the connection if this process dies. Every
        // step runs on this one connection, so parallel rebuilds cannot starve the pool.
        let mut guard = pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(lock_key(&consumer))
            .execute(&mut *guard)
            .await?;
        let result = self
            .rebuild_through(&mut guard, consumer.clone(), replay)
            .await;
        if let Err(e) = &result {
            tracing::error!(projection = name, error = %crate::telemetry::chain(e), "rebuild failed; live tables untouched");
        }
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(lock_key(&consumer))
            .execute(&mut *guard)
            .await;
        if unlocked.is_err() {
            // A connection that cannot unlock must not go back to the pool holding the lock.
            guard.detach();
        }
        result
    }

    async fn rebuild_through(
        &self,
        conn: &mut sqlx::PgConnection,
        consumer: String,
        replay: Option<Replay<E>>,
    ) -> Result<usize, StoreError> {
        use sqlx::Connection;
        let name = self.projection.name();
        let live: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&mut *conn)
            .await?;
        let mut shadow = ShadowTables::new(name, consumer, &live, self.projection.tables());

        let mut tx = conn.begin().await?;
        shadow.create(&mut tx).await?;
        save_checkpoint(&mut Tx::Postgres(&mut tx), &shadow.consumer, Cursor::START).await?;
        tx.commit().await?;

        let replay_started = std::time::Instant::now();
        let batch = self.batch_size.max(REBUILD_BATCH);
        let runner = ProjectionRunner {
            feed: self.feed.clone(),
            projection: self.projection.clone(),
            consumer: self.consumer.clone(),
            batch_size: batch,
            on_commit: None,
        };
        // The replay's commits need not wait for the disk: until the swap, which commits
        // durably (and so flushes everything before it), nobody reads the shadow tables, and a
        // rebuild cut short starts over.
        let shadow_path = shadow.replay_path();
        let mut applied = 0;
        if let Some(mut replay) = replay {
            while let Some(events) = replay.batches.recv().await {
                let Some(last) = events.last() else { continue };
                let mut tx = conn.begin().await?;
                sqlx::query(REPLAY_SETTINGS)
                    .bind(&shadow_path)
                    .execute(&mut *tx)
                    .await?;
                let mut shadow_tx = Tx::Postgres(&mut tx);
                self.projection
                    .apply_batch(&mut shadow_tx, &events)
                    .await
                    .map_err(|e| {
                        tracing::error!(projection = name, error = %crate::telemetry::chain(&e),
                            "projection failed to apply a replayed batch");
                        StoreError::from(e)
                    })?;
                save_checkpoint(&mut shadow_tx, &shadow.consumer, last.cursor()).await?;
                tx.commit().await?;
                applied += events.len();
            }
        }
        applied += self.replay_rest(conn, &runner, &shadow).await?;
        let replayed = replay_started.elapsed();

        // The indexes, then whatever the feed gained meanwhile, outside the swap's lock.
        let indexing_started = std::time::Instant::now();
        shadow.finish(conn).await?;
        applied += self.replay_rest(conn, &runner, &shadow).await?;
        let indexed = indexing_started.elapsed();

        // The swap: the live runner waits on the lock; readers see the old rows until commit.
        let swap_started = std::time::Instant::now();
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1), pg_advisory_xact_lock($2)")
            .bind(lock_key(SWAP_LOCK))
            .bind(lock_key(&self.consumer))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("SET LOCAL search_path TO {shadow_path}"))
            .execute(&mut *tx)
            .await?;
        loop {
            let n = runner
                .apply_batch_in(&mut Tx::Postgres(&mut tx), &shadow.consumer)
                .await?
                .applied;
            applied += n;
            if n == 0 {
                break;
            }
        }
        let cursor = load_checkpoint(&mut Tx::Postgres(&mut tx), &shadow.consumer).await?;
        shadow.swap(&mut tx).await?;
        save_checkpoint(&mut Tx::Postgres(&mut tx), &self.consumer, cursor).await?;
        sqlx::query("DELETE FROM feed_checkpoints WHERE consumer = $1")
            .bind(&shadow.consumer)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        shadow.drop(conn).await?;
        tracing::info!(
            projection = name,
            events = applied,
            replay_ms = replayed.as_millis() as u64,
            index_ms = indexed.as_millis() as u64,
            swap_ms = swap_started.elapsed().as_millis() as u64,
            "projection rebuilt"
        );
        Ok(applied)
    }

    /// Applies the feed to the shadow tables up to its head, a batch per transaction, and
    /// returns how many events that was.
    async fn replay_rest(
        &self,
        conn: &mut sqlx::PgConnection,
        runner: &ProjectionRunner<E>,
        shadow: &ShadowTables,
    ) -> Result<usize, StoreError> {
        use sqlx::Connection;
        let mut applied = 0;
        loop {
            let mut tx = conn.begin().await?;
            sqlx::query(REPLAY_SETTINGS)
                .bind(shadow.replay_path())
                .execute(&mut *tx)
                .await?;
            let n = runner
                .apply_batch_in(&mut Tx::Postgres(&mut tx), &shadow.consumer)
                .await?
                .applied;
            tx.commit().await?;
            if n == 0 {
                return Ok(applied);
            }
            applied += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use aggregates::AvatarEvent;
    use chrono::Utc;
    use projections::FeedEvent;

    use super::*;

    fn renamed(position: i64, name: &str) -> StoredEvent {
        let event = serde_json::json!({"AvatarRenamed": {"name": name, "at": Utc::now()}});
        StoredEvent {
            txid: 7,
            position,
            aggregate_id: uuid::Uuid::new_v4().to_string(),
            sequence: 2,
            payload: event.to_string(),
            metadata: "{}".into(),
            recorded_at: Utc::now(),
            key: None,
        }
    }

    #[test]
    fn a_batch_decoded_on_several_threads_keeps_the_feeds_order() {
        let rows = (1..=4_321).map(|p| renamed(p, &format!("n{p}"))).collect();
        let events: Vec<FeedEvent> = decode_on_every_core(rows).unwrap();
        assert_eq!(events.len(), 4_321);
        for (e, p) in events.iter().zip(1..) {
            assert_eq!(e.cursor.position, p);
            let AvatarEvent::AvatarRenamed { name, .. } = &e.event else {
                panic!("{:?}", e.event)
            };
            assert_eq!(name.as_str(), format!("n{p}"));
        }
    }

    #[test]
    fn one_bad_row_anywhere_in_the_batch_fails_it() {
        let mut rows: Vec<StoredEvent> = (1..=3_000).map(|p| renamed(p, "x")).collect();
        rows[2_500].payload = "{\"AvatarRenamed\": 5}".into();
        let Err(StoreError::Corrupt(why)) = decode_on_every_core::<FeedEvent>(rows) else {
            panic!("a corrupt row must fail the batch")
        };
        assert!(why.contains("position 2501"), "{why}");
    }
}
