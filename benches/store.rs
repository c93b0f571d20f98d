//! Event-store benchmark: command throughput and latency at concurrency 1, 8 and 64, avatar load
//! time at 10, 10,000 and 100,000 events (the last decided in memory by the real aggregate and
//! bulk-inserted, sealed, with the sealed snapshot the store would have written), and, in the
//! same run on the same server and pool, two baselines
//! of single-row autocommit inserts of the same rows: into the `events` table itself (which pays
//! its triggers and indexes), and into a plain table of the same shape without triggers, which is
//! the most any append path could reach. For PostgreSQL and SQLite.
//!
//! Run: `cargo bench --bench store` (PostgreSQL from `DATABASE_URL`, default
//! postgres://postgres@127.0.0.1:5432/postgres; a scratch database is created and dropped).
//! `BENCH_SECONDS` sets the time per concurrency level (default 4), `BENCH_LARGE_EVENTS` the
//! size of the largest avatar (default 100,000), `BENCH_LOADS` the loads per avatar behind each
//! median (default 101).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregates::{Action, Actor, AvatarType, Command, Gender, ImageFormat, PhotoMeta};
use aisha::store::keys::DataKeys;
use aisha::store::{seal, AvatarStore, Database, SNAPSHOT_EVERY};
use chrono::Utc;
use uuid::Uuid;

mod common;

const CONCURRENCY: [usize; 3] = [1, 8, 64];
const AVATARS: usize = 512;
const OWNER: i64 = 77;

#[tokio::main]
async fn main() {
    let admin_url = common::admin_url();
    let seconds: u64 = common::env_number("BENCH_SECONDS", 4);
    let per_level = Duration::from_secs(seconds);
    println!(
        "# event store benchmark ({} s per level, {AVATARS} avatars)",
        seconds
    );

    // PostgreSQL: a scratch database on the same server.
    let scratch =
        common::Scratch::create(&admin_url, format!("aisha_bench_{}", std::process::id())).await;
    let pg = Database::connect(&scratch.url).await.unwrap();
    pg.migrate().await.unwrap();
    bench_backend("postgres", pg.clone(), per_level).await;
    pg.close().await;
    scratch.drop().await;

    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = Database::connect(&sqlite_url).await.unwrap();
    sqlite.migrate().await.unwrap();
    bench_backend("sqlite", sqlite.clone(), per_level).await;
    sqlite.close().await;
}

async fn bench_backend(name: &str, db: Database, per_level: Duration) {
    let store = Arc::new(AvatarStore::new(db.clone()));
    let avatars = Arc::new(prepare_avatars(&store, AVATARS).await);
    create_plain_table(&db).await;
    let (payload, metadata) = sample_row();
    println!("\n## {name} (load average before: {})", load_average());
    println!(
        "baseline rows: {} bytes of payload JSON, {} of metadata",
        payload.to_string().len(),
        metadata.to_string().len()
    );
    println!(
        "| concurrency | commands/s | p50 ms | p99 ms | raw inserts into `events`/s | plain table inserts/s | commands / plain | commands / raw `events` |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for concurrency in CONCURRENCY {
        // The three take turns in short slices, so a neighbour's burst on the shared cores lands
        // on all of them alike instead of on whichever happened to be running.
        let slice = per_level / SLICES;
        let (mut commands, mut raw, mut plain) =
            (Sample::default(), Sample::default(), Sample::default());
        for _ in 0..SLICES {
            commands.add(run_commands(&store, &avatars, concurrency, slice).await);
            raw.add(run_raw_inserts(&db, Target::Events, concurrency, slice).await);
            plain.add(run_raw_inserts(&db, Target::Plain, concurrency, slice).await);
        }
        let (commands, raw, plain) = (commands.measured(), raw.measured(), plain.measured());
        println!(
            "| {concurrency} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0}% | {:.0}% |",
            commands.rate,
            commands.p50_ms,
            commands.p99_ms,
            raw.rate,
            plain.rate,
            100.0 * commands.rate / plain.rate,
            100.0 * commands.rate / raw.rate
        );
    }

    println!("load average after: {}", load_average());

    let large_events: usize = common::env_number("BENCH_LARGE_EVENTS", 100_000);
    let small = avatar_with_events(&store, 10).await;
    let medium = avatar_with_events(&store, 10_000).await;
    let built = Instant::now();
    let large = bulk_avatar(&store, &db, large_events).await;
    let built = built.elapsed();
    let ids = [small, medium, large];
    let [small_ms, medium_ms, large_ms] = median_ms(ids, |id| {
        let store = &store;
        async move {
            std::hint::black_box(store.load(id).await.unwrap());
        }
    })
    .await;
    // The same two queries the store makes (the snapshot, then the events after it), their rows
    // fetched and not decoded: what the database and the wire cost, without the JSON.
    let [raw_small, raw_medium, raw_large] = median_ms(ids, |id| {
        let db = &db;
        async move {
            raw_load(db, id).await;
        }
    })
    .await;
    let snapshot_bytes = snapshot_bytes(&db, large).await;
    println!(
        "\nload avatar (snapshot + tail, median of {} loads, taking turns): 10 events {small_ms:.3} ms, \
         10,000 events {medium_ms:.3} ms (ratio {:.2}x), {large_events} events {large_ms:.3} ms \
         (ratio {:.2}x; aim <= 1.5x; its history bulk-inserted in {:.1} s)",
        loads(),
        medium_ms / small_ms,
        large_ms / small_ms,
        built.as_secs_f64()
    );
    println!(
        "the same queries, rows not decoded: 10 events {raw_small:.3} ms, 10,000 events \
         {raw_medium:.3} ms ({:.2}x), {large_events} events {raw_large:.3} ms ({:.2}x); the large \
         avatar's snapshot is {snapshot_bytes} bytes of JSON",
        raw_medium / raw_small,
        raw_large / raw_small,
    );
}

/// The 1, 5 and 15 minute load averages: how busy the shared cores were around the figures.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

struct Measured {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Turns per contender and level.
const SLICES: u32 = 8;

/// Latencies and busy time of one contender, summed over its slices.
#[derive(Default)]
struct Sample {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Sample {
    fn add(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.elapsed += other.elapsed;
    }

    fn measured(mut self) -> Measured {
        measured(&mut self.latencies, self.elapsed)
    }
}

fn measured(latencies: &mut [Duration], elapsed: Duration) -> Measured {
    latencies.sort_unstable();
    let pick = |q: f64| {
        let idx = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(idx).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Measured {
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
    }
}

/// Workers issue `Generate` on their own slice of trained avatars until the time is up.
async fn run_commands(
    store: &Arc<AvatarStore>,
    avatars: &Arc<Vec<Uuid>>,
    concurrency: usize,
    duration: Duration,
) -> Sample {
    let start = Instant::now();
    let deadline = start + duration;
    let workers = (0..concurrency).map(|w| {
        let store = store.clone();
        let avatars = avatars.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = w;
            while Instant::now() < deadline {
                let id = avatars[i % avatars.len()];
                i += concurrency;
                let t = Instant::now();
                store
                    .execute(id, generate(), Uuid::new_v4())
                    .await
                    .expect("generate");
                latencies.push(t.elapsed());
            }
            latencies
        })
    });
    let mut all = Vec::new();
    for w in futures::future::join_all(workers).await {
        all.extend(w.unwrap());
    }
    Sample {
        latencies: all,
        elapsed: start.elapsed(),
    }
}

/// Where the baseline inserts go.
#[derive(Clone, Copy)]
enum Target {
    /// The event store's own table, with whatever triggers and indexes it has.
    Events,
    /// [`PLAIN_TABLE`]: no trigger at all, so the rate is what the server and the pool allow.
    Plain,
}

/// The physical-limit baseline's table: the columns, defaults, keys and indexes of `events`.
const PLAIN_TABLE: &str = "bench_plain_events";

async fn create_plain_table(db: &Database) {
    match db {
        // LIKE copies columns, defaults (txid, recorded_at), the identity, keys and indexes, but
        // never triggers.
        Database::Postgres(pool) => sqlx::query(&format!(
            "CREATE TABLE {PLAIN_TABLE} (LIKE events INCLUDING ALL)"
        ))
        .execute(pool)
        .await
        .map(drop),
        // The same columns and key; the position trigger of `events` is what it leaves out.
        Database::Sqlite(pool) => sqlx::query(&format!(
            "CREATE TABLE {PLAIN_TABLE} (
                 aggregate_type text NOT NULL, aggregate_id text NOT NULL,
                 sequence integer CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL,
                 event_version text NOT NULL, payload text NOT NULL, metadata text NOT NULL,
                 position integer,
                 recorded_at text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
                 PRIMARY KEY (aggregate_type, aggregate_id, sequence)) STRICT"
        ))
        .execute(pool)
        .await
        .map(drop),
    }
    .expect("create the plain table");
}

/// The same rows a `Generate` appends, inserted one per statement (autocommit), same pool.
async fn run_raw_inserts(
    db: &Database,
    target: Target,
    concurrency: usize,
    duration: Duration,
) -> Sample {
    let table = match target {
        Target::Events => "events",
        Target::Plain => PLAIN_TABLE,
    };
    let pg_insert = format!(
        "INSERT INTO {table} (aggregate_type, aggregate_id, sequence, event_type,
             event_version, payload, metadata) VALUES ($1,$2,$3,$4,$5,$6,$7)"
    );
    let sqlite_insert = format!(
        "INSERT INTO {table} (aggregate_type, aggregate_id, sequence, event_type,
             event_version, payload, metadata) VALUES (?1,?2,?3,?4,?5,?6,?7)"
    );
    let (payload, metadata) = sample_row();
    let start = Instant::now();
    let deadline = start + duration;
    let workers = (0..concurrency).map(|_| {
        let db = db.clone();
        let (payload, metadata) = (payload.clone(), metadata.clone());
        let (pg_insert, sqlite_insert) = (pg_insert.clone(), sqlite_insert.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let stream = Uuid::new_v4().to_string();
            let mut sequence: i64 = 0;
            while Instant::now() < deadline {
                sequence += 1;
                let t = Instant::now();
                match &db {
                    Database::Postgres(pool) => sqlx::query(&pg_insert)
                        .bind("RawInsert")
                        .bind(&stream)
                        .bind(sequence)
                        .bind("GenerationRequested")
                        .bind("1")
                        .bind(&payload)
                        .bind(&metadata)
                        .execute(pool)
                        .await
                        .map(drop),
                    Database::Sqlite(pool) => sqlx::query(&sqlite_insert)
                        .bind("RawInsert")
                        .bind(&stream)
                        .bind(sequence)
                        .bind("GenerationRequested")
                        .bind("1")
                        .bind(&payload)
                        .bind(&metadata)
                        .execute(pool)
                        .await
                        .map(drop),
                }
                .expect("raw insert");
                latencies.push(t.elapsed());
            }
            latencies
        })
    });
    let mut all = Vec::new();
    for w in futures::future::join_all(workers).await {
        all.extend(w.unwrap());
    }
    Sample {
        latencies: all,
        elapsed: start.elapsed(),
    }
}

/// The payload and metadata of the baselines' rows: a `Generate`'s event, as the store writes it.
fn sample_row() -> (serde_json::Value, serde_json::Value) {
    let payload = serde_json::json!({"GenerationRequested": {
        "owner": OWNER, "generation_id": Uuid::new_v4(), "prompt": "a portrait in the rain",
        "preset": null, "endpoint": "fal-ai/flux-lora",
        "arguments": {"prompt": "PERSON_12345678 a portrait in the rain",
            "loras": [{"path": "http://fal/files/lora.safetensors", "scale": 1.0}],
            "image_size": "square_hd", "num_images": 1},
        "num_images": 1, "at": Utc::now()}});
    let metadata = serde_json::json!({"actor": "telegram:77",
        "correlation_id": Uuid::new_v4(), "command": "generate"});
    (payload, metadata)
}

fn generate() -> Command {
    Command::new(
        Actor::User(OWNER),
        Utc::now(),
        Action::Generate {
            generation_id: Uuid::new_v4(),
            prompt: "a portrait in the rain".into(),
            preset: None,
            num_images: 1,
            aspect: None,
            batch: None,
            origin: None,
        },
    )
}

async fn exec(store: &AvatarStore, id: Uuid, by: Actor, action: Action) {
    store
        .execute(id, Command::new(by, Utc::now(), action), Uuid::new_v4())
        .await
        .expect("setup command");
}

fn photo(n: usize) -> PhotoMeta {
    PhotoMeta {
        photo_id: format!("p{n}"),
        content_hash: format!("{n:064x}"),
        byte_size: 80_000,
        width: 1024,
        height: 1024,
        format: ImageFormat::Jpeg,
        storage_key: format!("photos/p{n}.jpg"),
    }
}

/// A created avatar with `photos` photos (1 + photos events).
async fn draft(store: &AvatarStore, photos: usize) -> Uuid {
    let id = Uuid::new_v4();
    let user = Actor::User(OWNER);
    exec(
        store,
        id,
        user.clone(),
        Action::Create {
            avatar_id: id,
            name: "Bench".into(),
            gender: Gender::Other,
            avatar_type: AvatarType::Portrait,
        },
    )
    .await;
    for n in 1..=photos {
        exec(
            store,
            id,
            user.clone(),
            Action::UploadPhoto { photo: photo(n) },
        )
        .await;
    }
    id
}

/// A trained avatar: 14 events.
async fn trained(store: &AvatarStore) -> Uuid {
    let id = Uuid::new_v4();
    for (by, action) in trained_life(id) {
        exec(store, id, by, action).await;
    }
    id
}

async fn prepare_avatars(store: &Arc<AvatarStore>, count: usize) -> Vec<Uuid> {
    let tasks = (0..count).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { trained(&store).await })
    });
    let mut ids = Vec::new();
    for chunk in tasks.collect::<Vec<_>>().chunks_mut(32) {
        for t in chunk {
            ids.push(t.await.unwrap());
        }
    }
    ids
}

/// An avatar whose stream holds exactly `events` events. A long-lived avatar is one that has
/// generated a lot: requests and their completions, as in real use.
async fn avatar_with_events(store: &AvatarStore, events: usize) -> Uuid {
    if events <= 21 {
        return draft(store, events - 1).await;
    }
    let id = trained(store).await;
    let mut count = 14;
    while count < events {
        let request = generate();
        let Action::Generate { generation_id, .. } = request.action else {
            unreachable!()
        };
        store
            .execute(id, request, Uuid::new_v4())
            .await
            .expect("generate");
        count += 1;
        if count < events {
            exec(
                store,
                id,
                Actor::System("bench".into()),
                complete(generation_id),
            )
            .await;
            count += 1;
        }
    }
    id
}

/// Loads per avatar for the medians (`BENCH_LOADS`, default 101; more for profiling).
fn loads() -> usize {
    common::env_number("BENCH_LOADS", 101)
}

/// The median time of `f` on each avatar; the avatars take turns, so a neighbour's burst on the
/// shared cores lands on all of them alike. One warm-up call each first.
async fn median_ms<const N: usize, F, Fut>(ids: [Uuid; N], f: F) -> [f64; N]
where
    F: Fn(Uuid) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for id in ids {
        f(id).await;
    }
    let loads = loads();
    let mut times: [Vec<f64>; N] = std::array::from_fn(|_| Vec::with_capacity(loads));
    for _ in 0..loads {
        for (id, times) in ids.iter().zip(times.iter_mut()) {
            let t = Instant::now();
            f(*id).await;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.map(|mut times| {
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    })
}

/// What postgres-es and sqlite-es read to load an aggregate — its snapshot row, then its events
/// after the snapshot — with the rows fetched but not decoded.
async fn raw_load(db: &Database, id: Uuid) {
    use sqlx::Row;
    let id = id.to_string();
    match db {
        Database::Postgres(pool) => {
            let snapshot = sqlx::query(
                "SELECT aggregate_type, aggregate_id, last_sequence, current_snapshot, payload
                   FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2",
            )
            .bind("Avatar")
            .bind(&id)
            .fetch_optional(pool)
            .await
            .expect("read a snapshot");
            let last: i64 = snapshot.as_ref().map_or(0, |r| r.get("last_sequence"));
            let events = sqlx::query(&format!(
                "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload,
                        metadata
                   FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > {last}
                  ORDER BY sequence"
            ))
            .bind("Avatar")
            .bind(&id)
            .fetch_all(pool)
            .await
            .expect("read events");
            std::hint::black_box((snapshot, events));
        }
        Database::Sqlite(pool) => {
            let snapshot = sqlx::query(
                "SELECT aggregate_type, aggregate_id, last_sequence, current_snapshot, payload
                   FROM snapshots WHERE aggregate_type = ?1 AND aggregate_id = ?2",
            )
            .bind("Avatar")
            .bind(&id)
            .fetch_optional(pool)
            .await
            .expect("read a snapshot");
            let last: i64 = snapshot.as_ref().map_or(0, |r| r.get("last_sequence"));
            let events = sqlx::query(&format!(
                "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload,
                        metadata
                   FROM events WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND sequence > {last}
                  ORDER BY sequence"
            ))
            .bind("Avatar")
            .bind(&id)
            .fetch_all(pool)
            .await
            .expect("read events");
            std::hint::black_box((snapshot, events));
        }
    }
}

/// The size of an avatar's snapshot payload, in bytes of JSON text.
async fn snapshot_bytes(db: &Database, id: Uuid) -> i64 {
    let sql = "FROM snapshots WHERE aggregate_type = 'Avatar' AND aggregate_id = ";
    match db {
        Database::Postgres(pool) => {
            sqlx::query_scalar(&format!(
                "SELECT octet_length(payload::text)::bigint {sql}$1"
            ))
            .bind(id.to_string())
            .fetch_one(pool)
            .await
        }
        Database::Sqlite(pool) => {
            sqlx::query_scalar(&format!("SELECT length(CAST(payload AS BLOB)) {sql}?1"))
                .bind(id.to_string())
                .fetch_one(pool)
                .await
        }
    }
    .expect("the snapshot's size")
}

/// An avatar with exactly `events` events (at least 14), as [`avatar_with_events`] makes one,
/// but decided in memory by the real aggregate and bulk-inserted, sealed under its own key as
/// the store writes them, with the sealed snapshot the store would have written at the last
/// multiple of [`SNAPSHOT_EVERY`]: building 100,000 events through the command path would take
/// minutes. Checked afterwards: the store loads the same state, and the snapshot row opens and
/// decodes (a snapshot that did not would be replayed around).
async fn bulk_avatar(store: &AvatarStore, db: &Database, events: usize) -> Uuid {
    assert!(events >= 14, "a trained avatar has 14 events");
    let id = Uuid::new_v4();
    let key = DataKeys::new(db.clone())
        .create_avatar_key(&id.to_string(), OWNER)
        .await
        .expect("the avatar's key");
    let mut life = Life::default();
    let mut batch = Vec::new();
    let mut snapshot: Option<(usize, serde_json::Value)> = None;
    let user = Actor::User(OWNER);
    let system = Actor::System("bench".into());
    let mut steps = trained_life(id).into_iter();
    let mut pending = None;
    while life.sequence < events {
        let (by, action) = match steps.next() {
            Some(step) => step,
            None => match pending.take() {
                None => {
                    let request = generate();
                    let Action::Generate { generation_id, .. } = request.action else {
                        unreachable!()
                    };
                    pending = Some(generation_id);
                    (user.clone(), request.action)
                }
                Some(generation_id) => (system.clone(), complete(generation_id)),
            },
        };
        life.run(Command::new(by, Utc::now(), action), &mut batch)
            .await;
        if life.sequence % SNAPSHOT_EVERY == 0 {
            snapshot = Some((
                life.sequence,
                serde_json::to_value(&life.avatar).expect("serialize the avatar"),
            ));
        }
        if batch.len() >= INSERT_BATCH || life.sequence == events {
            let sealed = std::mem::take(&mut batch)
                .into_iter()
                .map(|row| sealed_row(&key, id, row))
                .collect();
            insert_events(db, id, sealed).await;
        }
    }
    if let Some((last_sequence, payload)) = &snapshot {
        let cx = seal::context("Avatar", &id.to_string(), 0, "snapshot");
        insert_snapshot(
            db,
            id,
            *last_sequence,
            &seal::seal_whole(payload, &key, &cx),
        )
        .await;
        let stored = seal::open_whole(read_snapshot(db, id).await, Some(&key), &cx)
            .expect("the snapshot opens with the avatar's key");
        let decoded: aggregates::Avatar =
            serde_json::from_value(stored).expect("the snapshot decodes as an avatar");
        assert_eq!(
            serde_json::to_value(&decoded).unwrap(),
            *payload,
            "the snapshot reads back as written"
        );
    }
    assert_eq!(
        store.load(id).await.unwrap(),
        life.avatar,
        "the store loads the state the bulk-built history leads to"
    );
    id
}

/// One event row with its personal fields sealed, as the store writes it.
fn sealed_row(key: &aisha::store::keys::SecretKey, id: Uuid, row: Row) -> Row {
    let (sequence, kind, payload, metadata) = row;
    let (mut payload, mut metadata): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&payload).expect("event JSON"),
        serde_json::from_str(&metadata).expect("metadata JSON"),
    );
    let cx = |part| seal::context("Avatar", &id.to_string(), sequence as usize, part);
    seal::seal_avatar_payload(&kind, &mut payload, key, &cx("payload"));
    seal::seal_metadata(&mut metadata, key, &cx("metadata"));
    (sequence, kind, payload.to_string(), metadata.to_string())
}

/// Rows per bulk insert.
const INSERT_BATCH: usize = 10_000;

/// One event row: sequence, type, payload and metadata JSON.
type Row = (i64, String, String, String);

/// An avatar decided in memory, numbering its events as the store would.
#[derive(Default)]
struct Life {
    avatar: aggregates::Avatar,
    sequence: usize,
}

impl Life {
    /// Decides one command on the current state, as the store would, and keeps its events.
    async fn run(&mut self, command: Command, rows: &mut Vec<Row>) {
        let metadata = serde_json::json!({
            "actor": command.by.to_string(),
            "correlation_id": Uuid::new_v4(),
            "command": command.name(),
        })
        .to_string();
        let sink = cqrs_es::event_sink::EventSink::default();
        cqrs_es::Aggregate::handle(&mut self.avatar, command, &(), &sink)
            .await
            .expect("the bench's life follows the rules");
        for event in sink.collect().await {
            self.sequence += 1;
            rows.push((
                self.sequence as i64,
                cqrs_es::DomainEvent::event_type(&event),
                serde_json::to_string(&event).expect("serialize an event"),
                metadata.clone(),
            ));
        }
    }
}

/// The 14 steps of [`trained`]: created, ten photos, training started, submitted, completed.
fn trained_life(id: Uuid) -> Vec<(Actor, Action)> {
    let user = Actor::User(OWNER);
    let system = Actor::System("bench".into());
    let request_id = format!("req-{id}");
    let mut steps = vec![(
        user.clone(),
        Action::Create {
            avatar_id: id,
            name: "Bench".into(),
            gender: Gender::Other,
            avatar_type: AvatarType::Portrait,
        },
    )];
    for n in 1..=10 {
        steps.push((user.clone(), Action::UploadPhoto { photo: photo(n) }));
    }
    steps.push((
        user,
        Action::StartTraining {
            training_id: Uuid::new_v4(),
            preset: aggregates::TrainingPreset::Fast,
            style: Default::default(),
        },
    ));
    steps.push((
        system.clone(),
        Action::RecordTrainingSubmission {
            request_id: request_id.clone(),
            endpoint: "fal-ai/flux-lora-portrait-trainer".into(),
            status_url: "http://fal/s".into(),
            response_url: "http://fal/r".into(),
            cancel_url: "http://fal/c".into(),
            archive_url: Some("http://fal/a.zip".into()),
        },
    ));
    steps.push((
        system,
        Action::CompleteTraining {
            request_id,
            output: aggregates::TrainingOutput {
                lora_file_url: Some("http://fal/files/lora.safetensors".into()),
                ..Default::default()
            },
        },
    ));
    steps
}

fn complete(generation_id: Uuid) -> Action {
    Action::CompleteGeneration {
        generation_id,
        images: vec![aggregates::GeneratedImage {
            url: "https://fal.media/files/image.jpg".into(),
            width: Some(1024),
            height: Some(1024),
            content_type: Some("image/jpeg".into()),
            nsfw: false,
        }],
    }
}

async fn insert_events(db: &Database, id: Uuid, rows: Vec<Row>) {
    let id = id.to_string();
    match db {
        Database::Postgres(pool) => {
            let (mut seqs, mut types, mut payloads, mut metas) = (vec![], vec![], vec![], vec![]);
            for (seq, kind, payload, meta) in rows {
                seqs.push(seq);
                types.push(kind);
                payloads.push(payload);
                metas.push(meta);
            }
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                     event_version, payload, metadata)
                 SELECT 'Avatar', $1, seq, et, '1', p::json, m::json
                   FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[])
                        WITH ORDINALITY AS u(seq, et, p, m, ord)
                  ORDER BY ord",
            )
            .bind(&id)
            .bind(seqs)
            .bind(types)
            .bind(payloads)
            .bind(metas)
            .execute(pool)
            .await
            .expect("bulk insert");
        }
        Database::Sqlite(pool) => {
            let mut tx = pool.begin().await.expect("begin");
            for (seq, kind, payload, meta) in rows {
                sqlx::query(
                    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                         event_version, payload, metadata) VALUES ('Avatar',?1,?2,?3,'1',?4,?5)",
                )
                .bind(&id)
                .bind(seq)
                .bind(kind)
                .bind(payload)
                .bind(meta)
                .execute(&mut *tx)
                .await
                .expect("insert");
            }
            tx.commit().await.expect("commit");
        }
    }
}

/// The snapshot row postgres-es and sqlite-es write: one per aggregate, numbered by how many
/// snapshots it has had (one per [`SNAPSHOT_EVERY`] events when every command adds one event).
async fn insert_snapshot(
    db: &Database,
    id: Uuid,
    last_sequence: usize,
    payload: &serde_json::Value,
) {
    let current = (last_sequence / SNAPSHOT_EVERY) as i64;
    match db {
        Database::Postgres(pool) => sqlx::query(
            "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot,
                 payload) VALUES ('Avatar', $1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(last_sequence as i64)
        .bind(current)
        .bind(payload)
        .execute(pool)
        .await
        .map(drop),
        Database::Sqlite(pool) => sqlx::query(
            "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot,
                 payload) VALUES ('Avatar', ?1, ?2, ?3, ?4)",
        )
        .bind(id.to_string())
        .bind(last_sequence as i64)
        .bind(current)
        .bind(payload.to_string())
        .execute(pool)
        .await
        .map(drop),
    }
    .expect("insert the snapshot");
}

async fn read_snapshot(db: &Database, id: Uuid) -> serde_json::Value {
    let sql = "SELECT payload FROM snapshots WHERE aggregate_type = 'Avatar' AND aggregate_id = ";
    match db {
        Database::Postgres(pool) => sqlx::query_scalar(&format!("{sql}$1"))
            .bind(id.to_string())
            .fetch_one(pool)
            .await
            .expect("read the snapshot"),
        Database::Sqlite(pool) => {
            let text: String = sqlx::query_scalar(&format!("{sql}?1"))
                .bind(id.to_string())
                .fetch_one(pool)
                .await
                .expect("read the snapshot");
            serde_json::from_str(&text).expect("snapshot JSON")
        }
    }
}
