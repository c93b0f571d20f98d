//! Read-model benchmark on PostgreSQL, in one run on one server:
//! 1. rebuild rate of all projections over ≥ 200,000 events, against the raw rate of reading the
//!    same events with a plain `SELECT payload … ORDER BY txid, position`, and their ratio;
//! 2. feed lag while commands run at a steady rate with the live projection runners: from an
//!    event's `recorded_at` to the moment a poller sees a projection checkpoint past it (p50/p99).
//!
//! The events are real: every avatar's life is decided by the `Avatar` aggregate in memory and
//! its events are bulk-inserted as the store writes them, personal fields sealed under the
//! avatar's key, so every replay opens them as production's does.
//!
//! Run: `cargo bench --bench feed` (PostgreSQL from `DATABASE_URL`, default
//! postgres://postgres@127.0.0.1:5432/postgres; a scratch database is created and dropped).
//! `BENCH_AVATARS` (default 5,000 ≈ 210,000 events), `BENCH_RATE` (commands/s, default 200) and
//! `BENCH_SECONDS` (load duration, default 20) change the conditions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregates::{
    Action, Actor, Avatar, AvatarType, Command, Gender, GeneratedImage, GenerationPreset,
    ImageFormat, PhotoMeta, TrainingOutput, TrainingPreset,
};
use aisha::store::feed::Feed;
use aisha::store::keys::DataKeys;
use aisha::store::runner::ProjectionRunner;
use aisha::store::{seal, AvatarStore, Database};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use futures::StreamExt;
use sqlx::{PgPool, Row};
use uuid::Uuid;

mod common;

// The production binary's allocator (src/main.rs), so in-process figures match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GENERATIONS_PER_AVATAR: usize = 14;
const INSERT_BATCH: usize = 10_000;

#[tokio::main]
async fn main() {
    // Rebuild timings (replay and swap) appear as log lines with RUST_LOG=info.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let admin_url = common::admin_url();
    let avatars: usize = common::env_number("BENCH_AVATARS", 5_000);
    let rate: u64 = common::env_number("BENCH_RATE", 200);
    let seconds: u64 = common::env_number("BENCH_SECONDS", 20);

    let scratch = common::Scratch::create(
        &admin_url,
        format!("aisha_bench_feed_{}", std::process::id()),
    )
    .await;
    let db = Database::connect(&scratch.url).await.unwrap();
    db.migrate().await.unwrap();
    let Database::Postgres(pool) = db.clone() else {
        unreachable!("the scratch database is PostgreSQL")
    };
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await
        .unwrap();
    println!(
        "# feed benchmark: PostgreSQL {version}, {} CPU(s), {avatars} generated avatar lives",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let started = Instant::now();
    let (events, trained) = generate(&db, &pool, avatars).await;
    sqlx::query("VACUUM ANALYZE events")
        .execute(&pool)
        .await
        .unwrap();
    println!(
        "generated and inserted {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let feed = Feed::new(db.clone());
    rebuild_vs_raw(&feed, &pool, events).await;
    feed_lag(
        &feed,
        &db,
        &pool,
        &trained,
        rate,
        Duration::from_secs(seconds),
    )
    .await;

    db.close().await;
    scratch.drop().await;
}

/// Part 1: rebuild every projection (side by side, as `aisha projections rebuild` does) and read
/// the same rows raw.
async fn rebuild_vs_raw(feed: &Feed, pool: &PgPool, events: usize) {
    // Warm the cache for both contenders alike.
    let (_, _) = raw_read(pool).await;
    let (rows, raw) = raw_read(pool).await;
    assert_eq!(rows, events);
    let raw_rate = rows as f64 / raw.as_secs_f64();

    let (decoded, decode) = read_and_decode(feed).await;
    assert_eq!(decoded, events);
    let decode_rate = decoded as f64 / decode.as_secs_f64();

    let started = Instant::now();
    let rebuilt = aisha::audit::rebuild(feed, None).await.expect("rebuild");
    let wall = started.elapsed();
    let rebuild_rate = events as f64 / wall.as_secs_f64();

    println!("\n## rebuild of all projections vs a plain SELECT ({events} events)");
    println!("| what | time s | events/s |");
    println!("|---|---|---|");
    println!(
        "| raw `SELECT payload … ORDER BY txid, position` | {:.2} | {raw_rate:.0} |",
        raw.as_secs_f64()
    );
    println!(
        "| the feed's own read and decode (`read_stream_after`, batches of 10,000, one thread) | {:.2} | {decode_rate:.0} |",
        decode.as_secs_f64()
    );
    for r in &rebuilt {
        assert_eq!(r.events, events, "{} replayed every event", r.projection);
        println!(
            "| rebuild `{}` (alongside the others) | {:.2} | {:.0} |",
            r.projection,
            r.elapsed.as_secs_f64(),
            r.events as f64 / r.elapsed.as_secs_f64()
        );
    }
    println!(
        "| **rebuild of all {} projections** | {:.2} | {rebuild_rate:.0} |",
        rebuilt.len(),
        wall.as_secs_f64()
    );
    println!(
        "\nratio: rebuild of all projections runs at {:.1}% of the raw read rate ({:.1}x slower); \
         reading and decoding alone runs at {:.1}% of it, and the rebuild at {:.1}% of that",
        100.0 * rebuild_rate / raw_rate,
        raw_rate / rebuild_rate,
        100.0 * decode_rate / raw_rate,
        100.0 * rebuild_rate / decode_rate
    );

    println!("\neach projection rebuilt alone:");
    println!("| projection | time s | events/s | vs raw |");
    println!("|---|---|---|---|");
    for name in projections::names() {
        let started = Instant::now();
        let done = aisha::audit::rebuild(feed, Some(name))
            .await
            .expect("rebuild");
        let elapsed = started.elapsed();
        let rate = done[0].events as f64 / elapsed.as_secs_f64();
        println!(
            "| `{name}` | {:.2} | {rate:.0} | {:.1}% |",
            elapsed.as_secs_f64(),
            100.0 * rate / raw_rate
        );
    }
}

/// Reads every Avatar event as the feed does and decodes it, applying nothing: what any
/// projection must pay before it writes a row.
async fn read_and_decode(feed: &Feed) -> (usize, Duration) {
    let Database::Postgres(pool) = feed.database() else {
        unreachable!("the bench runs on PostgreSQL")
    };
    let mut conn = pool.acquire().await.unwrap();
    let started = Instant::now();
    let (mut n, mut cursor) = (0usize, projections::Cursor::START);
    loop {
        let batch =
            aisha::store::feed::read_after(&mut db::Tx::Postgres(&mut conn), cursor, 10_000)
                .await
                .unwrap();
        let Some(last) = batch.last() else { break };
        cursor = last.cursor;
        n += batch.len();
        std::hint::black_box(&batch);
    }
    (n, started.elapsed())
}

/// Streams every event's payload in feed order; returns the row count and the time taken.
async fn raw_read(pool: &PgPool) -> (usize, Duration) {
    let started = Instant::now();
    let mut rows = sqlx::query(
        "SELECT payload::text FROM events WHERE aggregate_type = 'Avatar' ORDER BY txid, position",
    )
    .fetch(pool);
    let (mut n, mut bytes) = (0usize, 0usize);
    while let Some(row) = rows.next().await {
        let payload: String = row.unwrap().get(0);
        bytes += payload.len();
        n += 1;
    }
    std::hint::black_box(bytes);
    (n, started.elapsed())
}

/// Part 2: commands at a steady rate with live runners; a poller times each event from its
/// `recorded_at` to the first checkpoint read that shows it applied.
async fn feed_lag(
    feed: &Feed,
    db: &Database,
    pool: &PgPool,
    trained: &[(Uuid, i64)],
    rate: u64,
    duration: Duration,
) {
    let store = Arc::new(AvatarStore::new(db.clone()).notifying(feed.clone()));
    let names = projections::names();
    let runners: Vec<_> = projections::all()
        .into_iter()
        .map(|p| tokio::spawn(ProjectionRunner::new(feed.clone(), p).run()))
        .collect();

    let stop = Arc::new(tokio::sync::Notify::new());
    let poller = tokio::spawn(poll_checkpoints(
        pool.clone(),
        names.iter().map(|s| s.to_string()).collect(),
        stop.clone(),
    ));

    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut i = 0usize;
    while started.elapsed() < duration {
        ticker.tick().await;
        let store = store.clone();
        let (avatar, owner) = trained[i % trained.len()];
        i += 1;
        tasks.push(tokio::spawn(async move {
            let command = Command::new(
                Actor::User(owner),
                Utc::now(),
                Action::Generate {
                    generation_id: Uuid::new_v4(),
                    prompt: "a portrait in the rain".into(),
                    preset: Some(GenerationPreset::Balanced),
                    num_images: 1,
                    aspect: None,
                    batch: None,
                    origin: None,
                },
            );
            let t = Instant::now();
            let ok = store.execute(avatar, command, Uuid::new_v4()).await.is_ok();
            (ok, t.elapsed().as_secs_f64() * 1e3)
        }));
    }
    let issued = tasks.len();
    let mut accepted = 0;
    let mut latencies = Vec::new();
    for t in tasks {
        let (ok, ms) = t.await.unwrap_or((false, 0.0));
        accepted += usize::from(ok);
        latencies.push(ms);
    }
    let (command_p50, command_p99, _) = quantiles(&mut latencies);
    let load = started.elapsed();
    // Let the runners finish the tail before the poller stops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.notify_one();
    let lags = poller.await.unwrap();
    runners.iter().for_each(|r| r.abort());

    println!(
        "\n## feed lag under load: {issued} `Generate` commands in {:.1} s ({:.0}/s, {accepted} accepted), 4 live runners",
        load.as_secs_f64(),
        issued as f64 / load.as_secs_f64()
    );
    println!("command latency (execute, load → commit): p50 {command_p50:.1} ms, p99 {command_p99:.1} ms\n");
    println!("| projection | events seen | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    let mut all = Vec::new();
    for name in &names {
        let mut v = lags.get(*name).cloned().unwrap_or_default();
        all.extend(v.iter().copied());
        let (p50, p99, max) = quantiles(&mut v);
        println!("| {name} | {} | {p50:.1} | {p99:.1} | {max:.1} |", v.len());
    }
    let (p50, p99, max) = quantiles(&mut all);
    println!(
        "| **all** | {} | {p50:.1} | {p99:.1} | {max:.1} |",
        all.len()
    );
    println!(
        "\nlag = from the event's recorded_at (insert time, just before its commit) to the first poll \
         (every 2 ms) that reads a checkpoint past it"
    );
}

fn quantiles(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() as f64 - 1.0) * q).round() as usize]
    };
    (pick(0.5), pick(0.99), pick(1.0))
}

/// Polls the checkpoints every 2 ms; when one moves, every event it passed gets a lag sample.
async fn poll_checkpoints(
    pool: PgPool,
    consumers: Vec<String>,
    stop: Arc<tokio::sync::Notify>,
) -> HashMap<String, Vec<f64>> {
    let mut conn = pool.acquire().await.unwrap();
    let mut last: HashMap<String, (i64, i64)> = HashMap::new();
    let mut lags: HashMap<String, Vec<f64>> = HashMap::new();
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        let rows = sqlx::query(
            "SELECT consumer, txid, position FROM feed_checkpoints WHERE consumer = ANY($1)",
        )
        .bind(&consumers)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let seen_at = Utc::now();
        for row in rows {
            let consumer: String = row.get(0);
            let now = (row.get::<i64, _>(1), row.get::<i64, _>(2));
            let Some(before) = last.insert(consumer.clone(), now) else {
                continue; // the first sight only sets the baseline
            };
            if before == now {
                continue;
            }
            let recorded: Vec<DateTime<Utc>> = sqlx::query_scalar(
                "SELECT recorded_at FROM events
                  WHERE aggregate_type = 'Avatar'
                    AND (txid, position) > ($1::text::xid8, $2)
                    AND (txid, position) <= ($3::text::xid8, $4)",
            )
            .bind(before.0.to_string())
            .bind(before.1)
            .bind(now.0.to_string())
            .bind(now.1)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
            let samples = lags.entry(consumer).or_default();
            for at in recorded {
                samples.push((seen_at - at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
        }
        tokio::select! {
            () = &mut stopped => return lags,
            () = tokio::time::sleep(Duration::from_millis(2)) => {}
        }
    }
}

fn owner_of(n: usize) -> i64 {
    10_000 + (n % 1_000) as i64
}

fn photo(avatar: usize, n: usize) -> PhotoMeta {
    PhotoMeta {
        photo_id: format!("p{n}"),
        content_hash: format!("{avatar:032x}{n:032x}"),
        byte_size: 80_000,
        width: 1024,
        height: 1024,
        format: ImageFormat::Jpeg,
        storage_key: format!("photos/{avatar}/p{n}.jpg"),
    }
}

/// An avatar decided in memory, and the events (with their metadata) it has produced so far.
#[derive(Default)]
struct Stream {
    avatar: Avatar,
    events: Vec<(aggregates::AvatarEvent, String)>,
}

impl Stream {
    /// Decides one command, as the store would, and keeps its events.
    async fn run(&mut self, command: Command) {
        let metadata = serde_json::json!({
            "actor": command.by.to_string(),
            "correlation_id": Uuid::new_v4(),
            "command": command.name(),
        })
        .to_string();
        let sink = EventSink::default();
        self.avatar
            .handle(command, &(), &sink)
            .await
            .expect("the generated life follows the rules");
        for event in sink.collect().await {
            self.events.push((event, metadata.clone()));
        }
    }
}

/// One avatar's life, spread over 30 days: created, 10 photos, trained (1 in 25 fails),
/// generations (1 in 7 fails), 1 in 20 deleted. About 42 events. Returns its events and whether
/// it ends trained and not deleted.
async fn life(n: usize, avatars: usize) -> (Vec<(aggregates::AvatarEvent, String)>, bool) {
    let id = Uuid::new_v4();
    let owner = Actor::User(owner_of(n));
    let system = Actor::System("bench".into());
    let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + chrono::Duration::seconds((n as f64 * 30.0 * 86_400.0 / avatars as f64) as i64);
    let mut minute = 0;
    let mut at = |step: i64| {
        minute += step;
        start + chrono::Duration::minutes(minute)
    };
    let avatar_type = if n % 10 == 0 {
        AvatarType::Style
    } else {
        AvatarType::Portrait
    };
    let mut s = Stream::default();
    let user = |at, action| Command::new(owner.clone(), at, action);
    let sys = |at, action| Command::new(system.clone(), at, action);
    s.run(user(
        at(1),
        Action::Create {
            avatar_id: id,
            name: format!("Avatar {n}"),
            gender: Gender::Other,
            avatar_type,
        },
    ))
    .await;
    for p in 1..=10 {
        s.run(user(at(1), Action::UploadPhoto { photo: photo(n, p) }))
            .await;
    }
    s.run(user(
        at(1),
        Action::StartTraining {
            training_id: Uuid::new_v4(),
            preset: TrainingPreset::Balanced,
            style: Default::default(),
        },
    ))
    .await;
    let request_id = format!("req-{id}");
    s.run(sys(
        at(1),
        Action::RecordTrainingSubmission {
            request_id: request_id.clone(),
            endpoint: aggregates::presets::trainer_for(avatar_type, aggregates::StyleTrainer::Lora)
                .into(),
            status_url: "http://fal/s".into(),
            response_url: "http://fal/r".into(),
            cancel_url: "http://fal/c".into(),
            archive_url: Some("http://fal/a.zip".into()),
        },
    ))
    .await;
    if n % 25 == 7 {
        s.run(sys(
            at(10),
            Action::FailTraining {
                request_id: Some(request_id),
                reason: "trainer error".into(),
                abandon: false,
            },
        ))
        .await;
        return (s.events, false);
    }
    // Both types train on a LoRA trainer (style avatars on the style LoRA one), so both end
    // with a LoRA file; only style avatars from the pro trainer hold a finetune id.
    let output = TrainingOutput {
        lora_file_url: Some(format!("http://fal/files/{id}.safetensors")),
        ..Default::default()
    };
    s.run(sys(at(10), Action::CompleteTraining { request_id, output }))
        .await;
    for g in 0..GENERATIONS_PER_AVATAR {
        let generation_id = Uuid::new_v4();
        let preset = GenerationPreset::ALL[(n + g) % GenerationPreset::ALL.len()];
        s.run(user(
            at(1),
            Action::Generate {
                generation_id,
                prompt: format!("scene number {g} in soft light"),
                preset: Some(preset),
                num_images: 1,
                aspect: None,
                batch: None,
                origin: None,
            },
        ))
        .await;
        let outcome = if (n + g) % 7 == 0 {
            Action::FailGeneration {
                generation_id,
                reason: "generator timed out".into(),
                abandon: false,
            }
        } else {
            Action::CompleteGeneration {
                generation_id,
                images: vec![GeneratedImage {
                    url: format!("http://fal/files/{generation_id}.jpg"),
                    width: Some(1024),
                    height: Some(1024),
                    content_type: Some("image/jpeg".into()),
                    nsfw: false,
                }],
            }
        };
        s.run(sys(at(1), outcome)).await;
    }
    if n % 20 == 3 {
        s.run(user(at(1), Action::Delete)).await;
        return (s.events, false);
    }
    (s.events, true)
}

/// Decides `avatars` lives and bulk-inserts their events, their personal fields sealed under
/// each avatar's own key as the store writes them (a rebuild opens every one of them); returns
/// the event count and the avatars that are trained and not deleted.
async fn generate(db: &Database, pool: &PgPool, avatars: usize) -> (usize, Vec<(Uuid, i64)>) {
    let keys = DataKeys::new(db.clone());
    let mut ids = Vec::new();
    let mut seqs = Vec::new();
    let mut types = Vec::new();
    let mut payloads = Vec::new();
    let mut metas = Vec::new();
    let mut trained = Vec::new();
    let mut total = 0;
    for n in 0..avatars {
        let (events, usable) = life(n, avatars).await;
        let Some(aggregates::AvatarEvent::AvatarCreated { avatar_id, .. }) =
            events.first().map(|(e, _)| e)
        else {
            unreachable!("every life starts with its creation")
        };
        let avatar_id = *avatar_id;
        if usable {
            trained.push((avatar_id, owner_of(n)));
        }
        let id = avatar_id.to_string();
        let key = keys
            .create_avatar_key(&id, owner_of(n))
            .await
            .expect("avatar key");
        for (sequence, (event, metadata)) in events.into_iter().enumerate() {
            let sequence = sequence + 1;
            let mut payload = serde_json::to_value(&event).unwrap();
            let mut metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
            let cx = |part| seal::context(Avatar::TYPE, &id, sequence, part);
            seal::seal_avatar_payload(event.name(), &mut payload, &key, &cx("payload"));
            seal::seal_metadata(&mut metadata, &key, &cx("metadata"));
            ids.push(id.clone());
            seqs.push(sequence as i64);
            types.push(event.name().to_owned());
            payloads.push(payload.to_string());
            metas.push(metadata.to_string());
        }
        if ids.len() >= INSERT_BATCH || n + 1 == avatars {
            total += ids.len();
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                     event_version, payload, metadata)
                 SELECT 'Avatar', id, seq, et, '1', p::json, m::json
                   FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[])
                        WITH ORDINALITY AS u(id, seq, et, p, m, ord)
                  ORDER BY ord",
            )
            .bind(std::mem::take(&mut ids))
            .bind(std::mem::take(&mut seqs))
            .bind(std::mem::take(&mut types))
            .bind(std::mem::take(&mut payloads))
            .bind(std::mem::take(&mut metas))
            .execute(pool)
            .await
            .expect("bulk insert");
        }
    }
    (total, trained)
}
