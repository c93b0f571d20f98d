//! The global feed and the projection runner: ordering under concurrent writers, crash safety.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aisha::store::feed::Feed;
use aisha::store::runner::ProjectionRunner;
use aisha::store::{AvatarStore, Database};
use db::Tx;
use futures::future::BoxFuture;
use projections::{Cursor, FeedEvent, Projection, ProjectionError};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;

/// Records every applied event's position in a table whose primary key makes a double apply
/// fail loudly; can be told to fail once at a given event to simulate a crash mid-batch.
struct Recorder {
    fail_at_event: AtomicUsize,
    seen: AtomicUsize,
}

impl Recorder {
    fn new(fail_at_event: usize) -> Self {
        Self {
            fail_at_event: AtomicUsize::new(fail_at_event),
            seen: AtomicUsize::new(0),
        }
    }
}

impl Projection for Recorder {
    fn name(&self) -> &'static str {
        "test_recorder"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["test_applied"]
    }

    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        events: &'a [FeedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            for event in events {
                let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
                if n == self.fail_at_event.load(Ordering::SeqCst) {
                    self.fail_at_event.store(0, Ordering::SeqCst);
                    return Err(ProjectionError::Invalid("simulated crash".into()));
                }
                tx.execute(
                    "INSERT INTO test_applied (position, avatar_id, sequence) VALUES ($1, $2, $3)",
                    vec![
                        event.cursor.position.into(),
                        event.avatar_id.into(),
                        (event.sequence as i64).into(),
                    ],
                )
                .await?;
            }
            Ok(())
        })
    }
}

async fn create_recorder_table(db: &Database) {
    let sql = "CREATE TABLE test_applied (position bigint PRIMARY KEY, avatar_id text NOT NULL,
               sequence bigint NOT NULL)";
    match db {
        Database::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        Database::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
    }
    .unwrap();
}

async fn applied_positions(db: &Database) -> Vec<i64> {
    let sql = "SELECT position FROM test_applied ORDER BY position";
    match db {
        Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
    }
    .unwrap()
}

async fn all_positions(db: &Database) -> Vec<i64> {
    let sql = "SELECT position FROM events WHERE aggregate_type = 'Avatar' ORDER BY position";
    match db {
        Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
    }
    .unwrap()
}

on_both_backends!(
    a_projection_killed_mid_batch_resumes_with_nothing_lost_or_doubled,
    the_feed_reads_every_event_once_in_order,
    a_rebuild_replays_from_the_start,
);

async fn a_projection_killed_mid_batch_resumes_with_nothing_lost_or_doubled(db: Database) {
    create_recorder_table(&db).await;
    let store = AvatarStore::new(db.clone());
    for _ in 0..3 {
        avatar_with_photos(&store, 4).await;
    }
    let feed = Feed::new(db.clone());
    let recorder = Arc::new(Recorder::new(7));
    let runner = ProjectionRunner::new(feed, recorder.clone()).with_batch_size(5);

    // The first batch (events 1–5) commits; the second fails at its 2nd event (event 7).
    assert_eq!(first_nonempty_batch(&runner).await.unwrap(), 5);
    assert!(first_nonempty_batch(&runner).await.is_err());
    assert_eq!(
        applied_positions(&db).await.len(),
        5,
        "the failed batch left nothing"
    );

    // "Restart": catching up applies the rest exactly once.
    let mut applied = 0;
    while applied < 10 {
        applied += first_nonempty_batch(&runner).await.unwrap();
    }
    assert_eq!(applied, 10);
    assert_eq!(applied_positions(&db).await, all_positions(&db).await);
}

/// PostgreSQL snapshots span the whole cluster, so a transaction left open elsewhere (another
/// test's slow writer) can hold the feed back for a moment: wait for the batch, as a runner does.
async fn first_nonempty_batch(
    runner: &ProjectionRunner,
) -> Result<usize, aisha::store::StoreError> {
    for _ in 0..200 {
        match runner.apply_one_batch().await? {
            Some(n) if n > 0 => return Ok(n),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("the feed stayed empty for 10 s");
}

async fn the_feed_reads_every_event_once_in_order(db: Database) {
    let store = AvatarStore::new(db.clone());
    for _ in 0..4 {
        avatar_with_photos(&store, 2).await;
    }
    let feed = Feed::new(db.clone());
    let mut cursor = Cursor::START;
    let mut seen = Vec::new();
    for _ in 0..500 {
        if seen.len() == 12 {
            break;
        }
        let batch = feed.read_after(cursor, 3).await.unwrap();
        let Some(last) = batch.last() else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        cursor = last.cursor;
        for e in &batch {
            seen.push((e.cursor, e.avatar_id, e.sequence));
        }
    }
    assert_eq!(seen.len(), 12);
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "strictly increasing cursors"
    );
    let lag = feed.lag(cursor).await.unwrap();
    assert_eq!(lag.events_behind, 0);
    let lag = feed.lag(Cursor::START).await.unwrap();
    assert_eq!(lag.events_behind, 12);
}

async fn a_rebuild_replays_from_the_start(db: Database) {
    create_recorder_table(&db).await;
    let store = AvatarStore::new(db.clone());
    avatar_with_photos(&store, 5).await;
    let feed = Feed::new(db.clone());
    let runner = ProjectionRunner::new(feed, Arc::new(Recorder::new(0)));
    first_nonempty_batch(&runner).await.unwrap();
    let mut rebuilt = 0;
    for _ in 0..200 {
        rebuilt = runner.rebuild().await.unwrap();
        if rebuilt == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rebuilt, 6);
    assert_eq!(applied_positions(&db).await, all_positions(&db).await);
}

/// A transaction that appends an event and stays open, as a slow writer would.
async fn hold_open_append(
    pool: &PgPool,
    inserted: tokio::sync::oneshot::Sender<()>,
    release: tokio::sync::oneshot::Receiver<()>,
) {
    let mut tx = pool.begin().await.unwrap();
    let id = Uuid::new_v4();
    let payload = serde_json::json!({"AvatarCreated": {
        "avatar_id": id, "owner": 1, "name": "late", "gender": "male",
        "avatar_type": "portrait", "at": chrono::Utc::now()}});
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('Avatar', $1, 1, 'AvatarCreated', '1', $2, '{}')",
    )
    .bind(id.to_string())
    .bind(payload)
    .execute(&mut *tx)
    .await
    .unwrap();
    let _ = inserted.send(());
    let _ = release.await;
    tx.commit().await.unwrap();
}

#[sqlx::test(migrations = false)]
async fn a_late_committing_writer_is_never_skipped(pool: PgPool) {
    let db = Database::Postgres(pool.clone());
    db.migrate().await.unwrap();
    let store = Arc::new(AvatarStore::new(db.clone()));
    let feed = Feed::new(db.clone());

    // A slow writer takes a low position and holds its transaction open …
    let (release, held) = tokio::sync::oneshot::channel();
    let (inserted, positioned) = tokio::sync::oneshot::channel();
    let slow = tokio::spawn({
        let pool = pool.clone();
        async move { hold_open_append(&pool, inserted, held).await }
    });
    positioned.await.unwrap();

    // … while concurrent writers commit events with higher positions.
    let writers = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { avatar_with_photos(&store, 3).await })
    });
    futures::future::join_all(writers).await;

    // A reader polling meanwhile must not pass the open transaction.
    let mut cursor = Cursor::START;
    let mut seen: Vec<Cursor> = Vec::new();
    let drain = |batch: Vec<FeedEvent>, cursor: &mut Cursor, seen: &mut Vec<Cursor>| {
        for e in batch {
            assert!(e.cursor > *cursor, "feed went backwards");
            *cursor = e.cursor;
            seen.push(e.cursor);
        }
    };
    let before = feed.read_after(cursor, 1000).await.unwrap();
    drain(before, &mut cursor, &mut seen);
    assert!(
        seen.is_empty(),
        "nothing may be read past a transaction still in flight, read {}",
        seen.len()
    );

    release.send(()).unwrap();
    slow.await.unwrap();
    for _ in 0..50 {
        let batch = feed.read_after(cursor, 7).await.unwrap();
        if batch.is_empty() && seen.len() == 33 {
            break;
        }
        drain(batch, &mut cursor, &mut seen);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut positions: Vec<i64> = seen.iter().map(|c| c.position).collect();
    positions.sort_unstable();
    assert_eq!(
        positions,
        all_positions(&db).await,
        "every event exactly once"
    );
}
