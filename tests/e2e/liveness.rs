//! Feed liveness on PostgreSQL: a transaction that is not ours (in another database of the same
//! server) holds back neither the read models nor the side effects; an open writer of our own
//! events does hold the feed back (nothing may be skipped) and everything is read once it ends;
//! `/healthz` says when a consumer falls behind.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregates::{Action, Actor, AvatarType, Command, Gender, TrainingPreset};
use aisha::actors::notify::NotifyError;
use aisha::actors::{ActorSettings, Notification, Notifier};
use aisha::app::{AppOptions, Application};
use aisha::config::Config;
use aisha::fal::{FalSimulator, SimConfig};
use aisha::store::feed::Feed;
use aisha::store::locks::lock_key;
use aisha::store::{AvatarStore, Database};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use projections::{gallery, Cursor, FeedEvent};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tempfile::TempDir;
use uuid::Uuid;

use crate::support::*;

/// How long the stranger keeps its transaction open (the figure).
const STRANGER_HOLDS: Duration = Duration::from_secs(60);
/// The most an event may wait before a read model or a notification reflects it.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Records every notification with the moment it was delivered.
#[derive(Default)]
struct Inbox(Mutex<Vec<(Notification, DateTime<Utc>)>>);

impl Notifier for Inbox {
    fn notify<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            self.0.lock().unwrap().push((n.clone(), Utc::now()));
            Ok(())
        })
    }
}

/// The whole service (read models, reactor, actors, HTTP) on the test's PostgreSQL database.
struct Service {
    store: Arc<AvatarStore>,
    db: Database,
    photos: aisha::photos::PhotoStore,
    inbox: Arc<Inbox>,
    http: String,
    _sim: FalSimulator,
    _dir: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// `postgres://user@host:port/db` of the pool's database.
fn url_of(o: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or("postgres")
    )
}

impl Service {
    async fn start(pool: &PgPool, feed_lag_alert: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::offline(url_of(&pool.connect_options()), &dir.path().join("photos"));
        let inbox = Arc::new(Inbox::default());
        let options = AppOptions {
            actor_settings: ActorSettings::fast(),
            simulator: SimConfig::default(),
            notifier: Some(inbox.clone()),
        };
        let mut app = Application::build(config, options).await.unwrap();
        app.feed_lag_alert = feed_lag_alert;
        let sim = app.simulator.take().expect("simulated FAL");
        let (store, db, photos) = (app.store.clone(), app.db.clone(), app.photos.clone());
        let http = format!("http://{}", app.http_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            store,
            db,
            photos,
            inbox,
            http,
            _sim: sim,
            _dir: dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    async fn run(&self, id: Uuid, action: Action) {
        self.store
            .execute(
                id,
                Command::new(Actor::User(OWNER), Utc::now(), action),
                Uuid::new_v4(),
            )
            .await
            .unwrap();
    }

    /// Creates an avatar and returns how long its creation took to reach the gallery.
    async fn create_and_time_gallery(&self, id: Uuid) -> Duration {
        self.run(
            id,
            Action::Create {
                avatar_id: id,
                name: "Жива".into(),
                gender: Gender::Female,
                avatar_type: AvatarType::Portrait,
            },
        )
        .await;
        let committed = Instant::now();
        let deadline = committed + MAX_DELAY * 3;
        loop {
            let mut conn = self.db.acquire().await.unwrap();
            if gallery::card(&mut conn.tx(), id).await.unwrap().is_some() {
                return committed.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "avatar {id} was not in the gallery {:?} after its creation",
                committed.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Uploads 10 real photos and starts a training (the simulator completes it by webhook).
    async fn start_training(&self, id: Uuid) {
        for n in 0..10u8 {
            let bytes = fake_telegram::sample_jpeg(640, 640, n.wrapping_mul(23));
            let checked = aisha::photos::inspect(&bytes).unwrap();
            let photo_id = format!("ph{n}");
            let key = aisha::photos::photo_key(id, &photo_id, checked.format);
            self.photos.put(&key, bytes).await.unwrap();
            self.run(
                id,
                Action::UploadPhoto {
                    photo: checked.photo_meta(&photo_id, &key),
                },
            )
            .await;
        }
        self.run(
            id,
            Action::StartTraining {
                training_id: Uuid::new_v4(),
                preset: TrainingPreset::Fast,
                style: Default::default(),
            },
        )
        .await;
    }

    /// How long after its `TrainingCompleted` event the owner of `id` was told.
    async fn time_training_notification(&self, id: Uuid) -> Duration {
        let started = Instant::now();
        let delivered = loop {
            let found = self.inbox.0.lock().unwrap().iter().find_map(|(n, at)| {
                matches!(n, Notification::TrainingCompleted { avatar_id, .. } if *avatar_id == id)
                    .then_some(*at)
            });
            if let Some(at) = found {
                break at;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "no training notification for {id} after {:?}; events: {:?}",
                started.elapsed(),
                self.store
                    .history(id)
                    .await
                    .unwrap()
                    .iter()
                    .map(|e| e.event_type.clone())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let history = self.store.history(id).await.unwrap();
        let completed = history
            .iter()
            .find(|e| e.event_type == "TrainingCompleted")
            .and_then(|e| e.recorded_at)
            .expect("a recorded TrainingCompleted");
        (delivered - completed).to_std().unwrap_or_default()
    }
}

/// A new database on the same server, with an open transaction that has written there.
struct Stranger {
    admin: PgPool,
    database: String,
    conn: PgConnection,
    xid: i64,
}

impl Stranger {
    async fn open(admin: &PgPool) -> Self {
        let database = format!("aisha_stranger_{}", Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(admin)
            .await
            .unwrap();
        let options = admin.connect_options().as_ref().clone().database(&database);
        let mut conn = PgConnection::connect_with(&options).await.unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query("CREATE TEMP TABLE stranger_rows (n integer)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO stranger_rows VALUES (1)")
            .execute(&mut conn)
            .await
            .unwrap();
        let xid: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        Self {
            admin: admin.clone(),
            database,
            conn,
            xid,
        }
    }

    /// The transaction's id now: the same as at the start while it stays open.
    async fn current_xid(&mut self) -> i64 {
        sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
            .fetch_one(&mut self.conn)
            .await
            .unwrap()
    }

    async fn close(self) {
        let Self {
            admin,
            database,
            mut conn,
            ..
        } = self;
        let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        let _ = conn.close().await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .execute(&admin)
            .await
            .unwrap();
    }
}

#[sqlx::test(migrations = false)]
async fn a_write_transaction_in_another_database_does_not_stall_the_feed(pool: PgPool) {
    let mut stranger = Stranger::open(&pool).await;
    let held_since = Instant::now();
    let outcome = AssertUnwindSafe(async {
        // The stranger's transaction is older than anything we will run, so it is what holds
        // back the server's oldest-running-transaction horizon.
        let horizon: i64 =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(horizon <= stranger.xid, "{horizon} > {}", stranger.xid);

        let service = Service::start(&pool, Duration::from_secs(60)).await;
        let (mut rounds, mut worst_projection, mut worst_notification) =
            (0, Duration::ZERO, Duration::ZERO);
        while held_since.elapsed() < STRANGER_HOLDS {
            let id = Uuid::new_v4();
            let projection = service.create_and_time_gallery(id).await;
            service.start_training(id).await;
            let notification = service.time_training_notification(id).await;
            assert!(
                projection < MAX_DELAY,
                "round {rounds}: the gallery took {projection:?}"
            );
            assert!(
                notification < MAX_DELAY,
                "round {rounds}: the notification took {notification:?} after its event"
            );
            worst_projection = worst_projection.max(projection);
            worst_notification = worst_notification.max(notification);
            rounds += 1;
        }
        assert_eq!(
            stranger.current_xid().await,
            stranger.xid,
            "the stranger's transaction stayed open throughout"
        );
        assert!(rounds >= 5, "only {rounds} rounds in {STRANGER_HOLDS:?}");
        eprintln!(
            "{rounds} rounds with a stranger's transaction open for {:?}: worst gallery delay \
             {worst_projection:?}, worst notification delay {worst_notification:?}",
            held_since.elapsed()
        );
        service.stop().await;
    })
    .catch_unwind()
    .await;
    stranger.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Reads the feed after `cursor` until `want` events have been read or `within` has passed.
async fn read_until(
    feed: &Feed,
    cursor: &mut Cursor,
    want: usize,
    within: Duration,
) -> Vec<FeedEvent> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while seen.len() < want && Instant::now() < deadline {
        let batch = feed.read_after(*cursor, 7).await.unwrap();
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for e in batch {
            assert!(e.cursor > *cursor, "the feed went backwards");
            *cursor = e.cursor;
            seen.push(e);
        }
    }
    seen
}

async fn event_positions(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT position FROM events WHERE aggregate_type = 'Avatar' ORDER BY 1")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn an_open_writer_of_our_own_events_holds_the_feed_back_and_it_catches_up(pool: PgPool) {
    let db = Database::Postgres(pool.clone());
    db.migrate().await.unwrap();
    let store = Arc::new(AvatarStore::new(db.clone()));
    let feed = Feed::new(db.clone());
    avatar_with_photos(&store, 1).await;
    let mut cursor = Cursor::START;
    let before = read_until(&feed, &mut cursor, 2, Duration::from_secs(10)).await;
    assert_eq!(before.len(), 2);

    // A writer appends an event as postgres-es does (the INSERT first) and stays open …
    let late = Uuid::new_v4();
    let mut writer = pool.begin().await.unwrap();
    let payload = serde_json::json!({"AvatarCreated": {
        "avatar_id": late, "owner": OWNER, "name": "late", "gender": "male",
        "avatar_type": "portrait", "at": Utc::now()}});
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('Avatar', $1, 1, 'AvatarCreated', '1', $2, '{}')",
    )
    .bind(late.to_string())
    .bind(payload)
    .execute(&mut *writer)
    .await
    .unwrap();

    // … while later writers commit.
    for _ in 0..3 {
        avatar_with_photos(&store, 2).await;
    }
    let committed_after = 9;
    assert_eq!(
        feed.lag(cursor).await.unwrap().events_behind,
        committed_after,
        "the committed events are there, and behind"
    );
    for _ in 0..5 {
        let batch = feed.read_after(cursor, 100).await.unwrap();
        assert!(
            batch.is_empty(),
            "{} events read past a writer of ours still in flight",
            batch.len()
        );
    }

    writer.commit().await.unwrap();
    let seen = read_until(&feed, &mut cursor, 10, Duration::from_secs(10)).await;
    assert_eq!(seen.len(), 10, "every event once the writer has ended");
    assert_eq!(
        seen[0].avatar_id, late,
        "the late writer's event comes first: it began first"
    );
    assert!(feed.read_after(cursor, 100).await.unwrap().is_empty());
    let mut positions: Vec<i64> = before
        .iter()
        .chain(&seen)
        .map(|e| e.cursor.position)
        .collect();
    positions.sort_unstable();
    assert_eq!(
        positions,
        event_positions(&pool).await,
        "every event exactly once"
    );
}

/// Polls `/healthz` until `accept` takes a reply (status code and JSON).
async fn healthz_until(
    http: &str,
    what: &str,
    accept: impl Fn(u16, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    while Instant::now() < deadline {
        let reply = client.get(format!("{http}/healthz")).send().await.unwrap();
        let code = reply.status().as_u16();
        let json: serde_json::Value = reply.json().await.unwrap();
        if accept(code, &json) {
            return json;
        }
        last = Some((code, json));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/healthz never answered {what}; last: {last:?}");
}

#[sqlx::test(migrations = false)]
async fn healthz_reports_a_consumer_that_is_behind(pool: PgPool) {
    let service = Service::start(&pool, Duration::from_secs(1)).await;
    healthz_until(&service.http, "200 ok", |code, json| {
        code == 200 && json["status"] == "ok"
    })
    .await;

    // The gallery's runner cannot take its lock while we hold it.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key("gallery"))
        .execute(&mut *holder)
        .await
        .unwrap();
    let id = Uuid::new_v4();
    service
        .run(
            id,
            Action::Create {
                avatar_id: id,
                name: "Позже".into(),
                gender: Gender::Male,
                avatar_type: AvatarType::Portrait,
            },
        )
        .await;

    let degraded = healthz_until(
        &service.http,
        "503 degraded naming gallery",
        |code, json| {
            code == 503
                && json["status"] == "degraded"
                && json["reasons"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r.as_str().unwrap().contains("gallery")))
        },
    )
    .await;
    assert_eq!(degraded["database"], "reachable");
    let consumers = degraded["consumers"].as_array().unwrap();
    let gallery = consumers
        .iter()
        .find(|c| c["consumer"] == "gallery")
        .unwrap();
    assert!(gallery["events_behind"].as_i64().unwrap() >= 1, "{gallery}");
    assert!(
        gallery["oldest_unread_seconds"].as_f64().unwrap() > 1.0,
        "{gallery}"
    );
    // Each reason names a consumer that is behind by more than the threshold.
    for reason in degraded["reasons"].as_array().unwrap() {
        let reason = reason.as_str().unwrap();
        let named = consumers
            .iter()
            .find(|c| reason.contains(&format!("consumer {} ", c["consumer"].as_str().unwrap())))
            .unwrap_or_else(|| panic!("{reason} names no consumer"));
        assert!(
            named["oldest_unread_seconds"].as_f64().unwrap() > 1.0,
            "{named}"
        );
    }

    holder.commit().await.unwrap();
    healthz_until(&service.http, "200 ok again", |code, json| {
        code == 200 && json["status"] == "ok" && json["reasons"] == serde_json::json!([])
    })
    .await;
    let mut conn = service.db.acquire().await.unwrap();
    assert!(gallery::card(&mut conn.tx(), id).await.unwrap().is_some());
    drop(conn);
    service.stop().await;
}

/// Appends one AvatarCreated event in `tx` (its first statement, as postgres-es does).
async fn append_in(tx: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    let payload = serde_json::json!({"AvatarCreated": {
        "avatar_id": id, "owner": OWNER, "name": "held", "gender": "female",
        "avatar_type": "portrait", "at": Utc::now()}});
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('Avatar', $1, 1, 'AvatarCreated', '1', $2, '{}')",
    )
    .bind(id.to_string())
    .bind(payload)
    .execute(tx)
    .await
    .map(drop)
}

/// Reads a batch on `conn`, inside whatever transaction it is in.
async fn read_in(conn: &mut PgConnection, after: Cursor) -> Vec<FeedEvent> {
    aisha::store::feed::read_after(&mut db::Tx::Postgres(conn), after, 100)
        .await
        .unwrap()
}

/// A connection of its own (not from the pool), so each writer is a backend of its own.
async fn connect(pool: &PgPool) -> PgConnection {
    PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_reader_keeping_one_transaction_still_waits_for_a_writer_that_began_after_it(
    pool: PgPool,
) {
    let db = Database::Postgres(pool.clone());
    db.migrate().await.unwrap();
    let store = Arc::new(AvatarStore::new(db.clone()));
    avatar_with_photos(&store, 1).await;

    // A first writer is open when a reader begins reading in one transaction, as a projection
    // rebuild's final pass does: the reader stops below it.
    let (mut first_writer, mut second_writer) = (connect(&pool).await, connect(&pool).await);
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    sqlx::query("BEGIN")
        .execute(&mut first_writer)
        .await
        .unwrap();
    append_in(&mut first_writer, first).await.unwrap();
    let mut reader = pool.begin().await.unwrap();
    let before = read_in(&mut reader, Cursor::START).await;
    assert_eq!(before.len(), 2);
    let cursor = before.last().unwrap().cursor;

    // The first writer ends, a second one begins and stays open, later writers commit …
    sqlx::query("COMMIT")
        .execute(&mut first_writer)
        .await
        .unwrap();
    sqlx::query("BEGIN")
        .execute(&mut second_writer)
        .await
        .unwrap();
    append_in(&mut second_writer, second).await.unwrap();
    avatar_with_photos(&store, 2).await;

    // … and the reader's next read in the same transaction stops below the second writer.
    let next = read_in(&mut reader, cursor).await;
    assert_eq!(
        next.iter().map(|e| e.avatar_id).collect::<Vec<_>>(),
        [first],
        "only the first writer's event: the second writer is still open"
    );
    reader.commit().await.unwrap();

    sqlx::query("COMMIT")
        .execute(&mut second_writer)
        .await
        .unwrap();
    let feed = Feed::new(db);
    let mut cursor = next[0].cursor;
    let rest = read_until(&feed, &mut cursor, 4, Duration::from_secs(10)).await;
    assert_eq!(rest.len(), 4);
    assert_eq!(rest[0].avatar_id, second);
}

#[sqlx::test(migrations = false)]
async fn what_the_watermark_cannot_keep_safe_is_refused(pool: PgPool) {
    Database::Postgres(pool.clone()).migrate().await.unwrap();

    // An append after other writes of its transaction: its xid predates its lock on events.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("CREATE TEMP TABLE scratch (n integer)")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("INSERT INTO scratch VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let refused = append_in(&mut tx, Uuid::new_v4()).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("events must be inserted before"),
        "{refused}"
    );
    tx.rollback().await.unwrap();

    // Appends first, then more appends and other writes: fine.
    let mut tx = pool.begin().await.unwrap();
    append_in(&mut tx, Uuid::new_v4()).await.unwrap();
    append_in(&mut tx, Uuid::new_v4()).await.unwrap();
    sqlx::query("CREATE TEMP TABLE scratch (n integer)")
        .execute(&mut *tx)
        .await
        .unwrap();
    append_in(&mut tx, Uuid::new_v4()).await.unwrap();
    tx.commit().await.unwrap();

    // The watermark under a snapshot that would not see what ended after it was taken.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await
        .unwrap();
    let refused = sqlx::query("SELECT aisha_feed_watermark()")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("READ COMMITTED"), "{refused}");
}

#[sqlx::test(migrations = false)]
async fn our_sessions_end_a_transaction_left_idle(pool: PgPool) {
    let db = Database::connect(&url_of(&pool.connect_options()))
        .await
        .unwrap();
    let Database::Postgres(ours) = &db else {
        unreachable!("a PostgreSQL URL")
    };
    let timeout: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(ours)
        .await
        .unwrap();
    assert_eq!(timeout, "1min");
    db.close().await;
}
