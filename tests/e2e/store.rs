//! The event store suite, run against SQLite and PostgreSQL alike.
//!
//! PostgreSQL tests get their own database from `#[sqlx::test]` (which needs `DATABASE_URL`
//! pointing at a server; without it they fail, never skip).

use std::sync::Arc;

use aggregates::{Action, AvatarError, AvatarEvent, AvatarStatus, TrainingPreset};
use aisha::store::{AvatarStore, Database, StoreError, SNAPSHOT_EVERY};
use cqrs_es::Aggregate;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::*;

on_both_backends!(
    appended_events_load_back_in_order_with_who_and_why,
    a_refused_command_writes_nothing,
    concurrent_commands_on_one_avatar_all_land,
    commands_on_many_avatars_at_once_land_once_each,
    conflicting_commands_one_wins_and_the_other_is_decided_again,
    duplicates_append_nothing,
    snapshots_round_trip_to_the_same_state,
    positions_grow_with_every_commit,
    migrations_can_run_twice,
    two_instances_never_read_a_stale_conversation_step,
);

/// Two instances behind one webhook: a step one of them changed is what the other reads next,
/// so a message can never be taken for a prompt (a paid generation) that was cancelled.
async fn two_instances_never_read_a_stale_conversation_step(db: Database) {
    use aisha::bot::dialogues::Dialogues;
    use aisha::bot::users::Users;
    use aisha::bot::State;
    use teloxide::dispatching::dialogue::Storage;
    use teloxide::types::ChatId;

    let (a, b) = (Dialogues::new(db.clone()), Dialogues::new(db.clone()));
    let chat = ChatId(4242);
    let prompt = State::AwaitingPrompt {
        avatar_id: Uuid::new_v4(),
        preset: aggregates::GenerationPreset::Fast,
    };
    a.clone()
        .update_dialogue(chat, prompt.clone())
        .await
        .unwrap();
    assert_eq!(
        b.clone().get_dialogue(chat).await.unwrap(),
        Some(prompt.clone())
    );
    // The user cancels on the other instance; the first must not still see the prompt step.
    b.clone().remove_dialogue(chat).await.unwrap();
    assert_eq!(a.clone().get_dialogue(chat).await.unwrap(), None);
    // And the other way round: a step set again is seen again.
    b.clone()
        .update_dialogue(chat, prompt.clone())
        .await
        .unwrap();
    assert_eq!(a.clone().get_dialogue(chat).await.unwrap(), Some(prompt));

    // A language switched on one instance and back on the other is what the row says.
    let (first, second) = (Users::new(db.clone()), Users::new(db));
    first.remember(4242, 4242, Some("en")).await.unwrap();
    second.remember(4242, 4242, Some("ru")).await.unwrap();
    first.remember(4242, 4242, Some("en")).await.unwrap();
    let row = second.get(4242).await.unwrap().expect("the user's row");
    assert_eq!(row.language_code.as_deref(), Some("en"));
}

async fn appended_events_load_back_in_order_with_who_and_why(db: Database) {
    let store = AvatarStore::new(db);
    let id = avatar_with_photos(&store, 3).await;

    let avatar = store.load(id).await.unwrap();
    assert_eq!(avatar.status, AvatarStatus::Draft);
    assert_eq!(avatar.photos.len(), 3);
    assert_eq!(avatar.owner, OWNER);

    let history = store.history(id).await.unwrap();
    let sequences: Vec<u64> = history.iter().map(|h| h.sequence).collect();
    assert_eq!(sequences, vec![1, 2, 3, 4]);
    assert_eq!(history[0].event_type, "AvatarCreated");
    assert_eq!(history[0].event_version, "1");
    assert!(history
        .iter()
        .all(|h| h.actor.as_deref() == Some("telegram:4242")));
    assert_eq!(history[1].command.as_deref(), Some("upload_photo"));
    assert!(history.iter().all(|h| h.correlation_id.is_some()));
    assert!(history.iter().all(|h| h.recorded_at.is_some()));
    assert!(matches!(
        history[3].event,
        AvatarEvent::PhotoUploaded { photo_count: 3, .. }
    ));
}

async fn a_refused_command_writes_nothing(db: Database) {
    let store = AvatarStore::new(db);
    let id = avatar_with_photos(&store, 9).await;
    let refused = store
        .execute(
            id,
            by_owner(Action::StartTraining {
                training_id: Uuid::new_v4(),
                preset: TrainingPreset::Fast,
                style: Default::default(),
            }),
            Uuid::new_v4(),
        )
        .await;
    assert!(matches!(
        refused,
        Err(StoreError::Rejected(AvatarError::NotEnoughPhotos {
            have: 9,
            min: 10
        }))
    ));
    assert_eq!(store.history(id).await.unwrap().len(), 10);
}

async fn concurrent_commands_on_one_avatar_all_land(db: Database) {
    let store = Arc::new(AvatarStore::new(db));
    let id = avatar_with_photos(&store, 0).await;
    let uploads = (1..=16).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .execute(
                    id,
                    by_owner(Action::UploadPhoto { photo: photo(n) }),
                    Uuid::new_v4(),
                )
                .await
        })
    });
    for result in futures::future::join_all(uploads).await {
        result.unwrap().expect("every upload lands after retries");
    }
    let history = store.history(id).await.unwrap();
    let sequences: Vec<u64> = history.iter().map(|h| h.sequence).collect();
    assert_eq!(
        sequences,
        (1..=17).collect::<Vec<_>>(),
        "no gaps, no doubles"
    );
    let counts: Vec<usize> = history
        .iter()
        .filter_map(|h| match h.event {
            AvatarEvent::PhotoUploaded { photo_count, .. } => Some(photo_count),
            _ => None,
        })
        .collect();
    assert_eq!(
        counts,
        (1..=16).collect::<Vec<_>>(),
        "each decided on fresh state"
    );
    assert_eq!(store.load(id).await.unwrap().photos.len(), 16);
}

/// Many avatars written at the same moment (on PostgreSQL their appends share statements),
/// with three commands racing on each: every command lands exactly once, decided on fresh
/// state, and each avatar's events keep their order in the feed.
async fn commands_on_many_avatars_at_once_land_once_each(db: Database) {
    let store = Arc::new(AvatarStore::new(db.clone()));
    let mut avatars = Vec::new();
    for _ in 0..40 {
        avatars.push(avatar_with_photos(&store, 0).await);
    }
    let uploads = avatars.iter().flat_map(|&id| {
        let store = store.clone();
        (1..=3).map(move |n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .execute(
                        id,
                        by_owner(Action::UploadPhoto { photo: photo(n) }),
                        Uuid::new_v4(),
                    )
                    .await
            })
        })
    });
    for result in futures::future::join_all(uploads.collect::<Vec<_>>()).await {
        result.unwrap().expect("every upload lands after retries");
    }
    for id in avatars {
        let history = store.history(id).await.unwrap();
        let sequences: Vec<u64> = history.iter().map(|h| h.sequence).collect();
        assert_eq!(sequences, vec![1, 2, 3, 4], "no gaps, no doubles");
        let positions: Vec<i64> = history.iter().filter_map(|h| h.position).collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "feed order follows the avatar's order: {positions:?}"
        );
        let counts: Vec<usize> = history
            .iter()
            .filter_map(|h| match h.event {
                AvatarEvent::PhotoUploaded { photo_count, .. } => Some(photo_count),
                _ => None,
            })
            .collect();
        assert_eq!(counts, vec![1, 2, 3], "each decided on fresh state");
    }
}

async fn conflicting_commands_one_wins_and_the_other_is_decided_again(db: Database) {
    let store = Arc::new(AvatarStore::new(db));
    let id = avatar_with_photos(&store, 10).await;
    let starts = (0..2).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .execute(
                    id,
                    by_owner(Action::StartTraining {
                        training_id: Uuid::new_v4(),
                        preset: TrainingPreset::Balanced,
                        style: Default::default(),
                    }),
                    Uuid::new_v4(),
                )
                .await
        })
    });
    let results: Vec<_> = futures::future::join_all(starts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let won = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(StoreError::Rejected(AvatarError::TrainingAlreadyStarted))
            )
        })
        .count();
    assert_eq!((won, refused), (1, 1), "{results:?}");
    let started = store
        .history(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|h| h.event_type == "TrainingStarted")
        .count();
    assert_eq!(started, 1);
}

async fn duplicates_append_nothing(db: Database) {
    let store = AvatarStore::new(db);
    let id = trained_avatar(&store).await;
    let before = store.history(id).await.unwrap().len();
    let again = store
        .execute(
            id,
            by_system(Action::CompleteTraining {
                request_id: format!("req-{id}"),
                output: aggregates::TrainingOutput {
                    lora_file_url: Some("http://fal/files/lora.safetensors".into()),
                    ..Default::default()
                },
            }),
            Uuid::new_v4(),
        )
        .await
        .unwrap();
    assert!(again.events.is_empty());
    assert_eq!(store.history(id).await.unwrap().len(), before);
}

async fn snapshots_round_trip_to_the_same_state(db: Database) {
    let store = AvatarStore::new(db.clone());
    let id = trained_avatar(&store).await;
    generate_many(&store, id, SNAPSHOT_EVERY * 2 + 7).await;
    // Completions change counters: a snapshot that applied an event twice would show here.
    let pending: Vec<Uuid> = store
        .load(id)
        .await
        .unwrap()
        .pending_generations
        .keys()
        .copied()
        .take(60)
        .collect();
    for generation_id in pending {
        run(
            &store,
            id,
            by_system(Action::CompleteGeneration {
                generation_id,
                images: vec![],
            }),
        )
        .await;
    }

    let snapshot_at: i64 = match &db {
        Database::Sqlite(pool) => {
            sqlx::query_scalar("SELECT last_sequence FROM snapshots WHERE aggregate_id = ?1")
                .bind(id.to_string())
                .fetch_one(pool)
                .await
                .unwrap()
        }
        Database::Postgres(pool) => {
            sqlx::query_scalar("SELECT last_sequence FROM snapshots WHERE aggregate_id = $1")
                .bind(id.to_string())
                .fetch_one(pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(snapshot_at as usize % SNAPSHOT_EVERY, 0);
    assert!(snapshot_at as usize >= SNAPSHOT_EVERY * 2);

    // The state from snapshot + tail equals the state from replaying every event.
    let mut replayed = aggregates::Avatar::default();
    for entry in store.history(id).await.unwrap() {
        replayed.apply(entry.event);
    }
    assert_eq!(store.load(id).await.unwrap(), replayed);
    // A fresh store (no cache) loads the same state from the snapshot.
    assert_eq!(AvatarStore::new(db).load(id).await.unwrap(), replayed);
    assert_eq!(
        replayed.pending_generations.len(),
        SNAPSHOT_EVERY * 2 + 7 - 60
    );
    assert_eq!(replayed.generations_completed, 60);
}

async fn positions_grow_with_every_commit(db: Database) {
    let store = AvatarStore::new(db);
    let a = avatar_with_photos(&store, 2).await;
    let b = avatar_with_photos(&store, 2).await;
    let positions: Vec<i64> = store
        .history(a)
        .await
        .unwrap()
        .into_iter()
        .chain(store.history(b).await.unwrap())
        .map(|h| h.position.expect("every event has a position"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
}

async fn migrations_can_run_twice(db: Database) {
    db.migrate().await.expect("a second run is a no-op");
}

#[tokio::test]
async fn sqlite_state_survives_reopening_the_file() {
    let (db, dir) = sqlite().await;
    let store = AvatarStore::new(db.clone());
    let id = trained_avatar(&store).await;
    generate_many(&store, id, 120).await;
    let before = store.load(id).await.unwrap();
    db.close().await;

    let reopened = Database::connect(&sqlite_url(&dir)).await.unwrap();
    reopened.migrate().await.unwrap();
    let store = AvatarStore::new(reopened);
    assert_eq!(store.load(id).await.unwrap(), before);
    assert_eq!(store.history(id).await.unwrap().len(), 14 + 120);
}

#[sqlx::test(migrations = false)]
async fn postgres_state_survives_reconnecting(
    _pool_options: PgPoolOptions,
    options: PgConnectOptions,
) {
    let connect = || async {
        let pool = PgPoolOptions::new()
            .connect_with(options.clone())
            .await
            .unwrap();
        Database::Postgres(pool)
    };
    let db = connect().await;
    db.migrate().await.unwrap();
    let store = AvatarStore::new(db.clone());
    let id = trained_avatar(&store).await;
    generate_many(&store, id, 120).await;
    let before = store.load(id).await.unwrap();
    db.close().await;

    let store = AvatarStore::new(connect().await);
    assert_eq!(store.load(id).await.unwrap(), before);
    assert_eq!(store.history(id).await.unwrap().len(), 14 + 120);
}

#[tokio::test]
async fn an_unknown_database_url_is_a_clear_error() {
    let err = Database::connect("mysql://root:hunter2@localhost/aisha")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("sqlite://PATH or postgres://"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "the password must not be echoed: {text}"
    );
}

fn aisha(database_url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aisha"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run aisha")
}

/// Three `aisha migrate` started together on a new SQLite file all succeed, and the schema ends
/// up whole.
#[tokio::test]
async fn migrations_started_together_by_three_processes_all_succeed_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || aisha(&url, &["migrate"]))
        })
        .collect();
    for run in runs {
        let out = run.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = Database::connect_existing(&url).await.unwrap();
    assert!(db.pending_migrations().await.unwrap().is_empty());
}

/// The commands that only read never change the schema: on a database that is behind they
/// refuse and say what to do, and on a missing SQLite file they create nothing.
#[tokio::test]
async fn read_only_commands_refuse_a_database_that_is_behind_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.db");
    let url = format!("sqlite://{}", missing.display());
    let id = Uuid::new_v4().to_string();
    let out = aisha(&url, &["history", &id]);
    assert!(!out.status.success());
    assert!(!missing.exists(), "a read-only command created the file");

    // An empty file: a database with no schema at all.
    let (db, dir) = {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url(&dir);
        let db = Database::connect(&url).await.unwrap();
        (db, dir)
    };
    let url = sqlite_url(&dir);
    for args in [
        vec!["history", id.as_str()],
        vec!["audit", "verify"],
        vec!["projections", "status"],
    ] {
        let out = aisha(&url, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains("not up to date") && stderr.contains("aisha migrate"),
            "{args:?}: {stderr}"
        );
    }
    assert!(
        !db.pending_migrations().await.unwrap().is_empty(),
        "nothing was migrated behind the operator's back"
    );
    let tables: i64 = match &db {
        Database::Sqlite(pool) => sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_one(pool)
        .await
        .unwrap(),
        Database::Postgres(_) => unreachable!(),
    };
    assert_eq!(tables, 0);
}

/// Whether the connection behind `db` runs over TLS, as the server sees it.
async fn over_tls(db: &Database) -> bool {
    let mut conn = db.acquire().await.unwrap();
    let row = conn
        .tx()
        .fetch_optional(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            vec![],
        )
        .await
        .unwrap()
        .expect("our own backend");
    row.get::<bool>("ssl").unwrap()
}

#[sqlx::test(migrations = false)]
async fn a_server_on_this_host_is_reached_without_tls_unless_the_url_asks(pool: PgPool) {
    if std::env::var_os("PGSSLMODE").is_some() {
        panic!("PGSSLMODE is set: this test checks the default");
    }
    let url = postgres_url(&pool);
    assert!(
        url.contains("@127.0.0.1:") || url.contains("@localhost:"),
        "{url}"
    );
    let db = Database::connect_existing(&url).await.unwrap();
    assert!(
        !over_tls(&db).await,
        "the default on this host is plaintext"
    );
    db.close().await;

    let offered: (String,) = sqlx::query_as("SHOW ssl").fetch_one(&pool).await.unwrap();
    let asked = Database::connect_existing(&format!("{url}?sslmode=prefer"))
        .await
        .unwrap();
    assert_eq!(
        over_tls(&asked).await,
        offered.0 == "on",
        "an explicit sslmode is the driver's to apply"
    );
    asked.close().await;
}

/// Every feed batch and every uncached avatar load opens keys: that must read their rows (and
/// their parents') through the primary key, not the whole table of every user's keys.
#[sqlx::test(migrations = false)]
async fn opening_keys_reads_only_their_rows_however_many_keys_there_are(pool: PgPool) {
    use aisha::store::keys::{open_on, DataKeys};
    let db = Database::Postgres(pool.clone());
    db.migrate().await.unwrap();
    let keys = DataKeys::new(db.clone());
    let mut ours = Vec::new();
    for owner in [11, 12, 12] {
        let avatar = Uuid::new_v4().to_string();
        keys.create_avatar_key(&avatar, owner).await.unwrap();
        ours.push(aisha::store::keys::avatar_key_id(&avatar));
    }
    // Many other users' keys beside them (their contents are never read here).
    sqlx::query(
        "INSERT INTO data_keys (key_id, parent_id, master_id, wrapped, created_at)
         SELECT 'user:other-' || n, NULL, 'm', 'x', now() FROM generate_series(1, 3000) n
         UNION ALL
         SELECT 'avatar:other-' || n, 'user:other-' || n, NULL, 'x', now()
           FROM generate_series(1, 3000) n",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE data_keys")
        .execute(&pool)
        .await
        .unwrap();

    // A connection of its own: the view counts what this backend did and has not yet reported,
    // which on a pooled connection would include the reads that created the keys.
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&postgres_url(&pool))
        .await
        .unwrap();
    let mut tx = conn.begin().await.unwrap();
    let opened = open_on(&mut db::Tx::Postgres(&mut tx), &ours)
        .await
        .unwrap();
    assert_eq!(opened.len(), 3);
    assert!(opened.values().all(Option::is_some), "every key opens");
    let scans: i64 = sqlx::query_scalar(
        "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relname = 'data_keys'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(scans, 0, "data_keys was read whole");
}
