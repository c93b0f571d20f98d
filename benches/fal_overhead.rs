//! Aisha's own latency around FAL, as users feel it, at N concurrent generations (100 by
//! default): `aisha serve` as a child process on PostgreSQL (release build), with the fake Bot
//! API and the FAL simulator in the bench process, so every timestamp below is taken on the same
//! monotonic clock.
//!
//! N users are driven through the bot story (create a portrait avatar, upload an album of ten
//! photos, train on the fast preset, open the balanced generation preset) with the simulator's
//! training time tiny; then all N send their prompt at once. FAL's own time is the simulator's
//! generation time (200 ms by default, no queue time), and results come back by webhook
//! (`FAL_WEBHOOK_BASE_URL` points the simulator at the server). Two spans are measured per
//! generation:
//!
//! - (a) prompt → submit: from the prompt message being queued at the fake Bot API to the
//!   generator job's `POST` arriving at the simulator's queue (aim: p99 < 50 ms);
//! - (b) webhook → photo: from the simulator starting its `POST /webhooks/fal` to the fake
//!   recording the `sendPhoto`/`sendMediaGroup` call that carries the image (aim: p99 < 100 ms).
//!
//! Printed: p50/p99/max of each (and of FAL's time and the whole prompt → photo, for context),
//! and the counts; the bench asserts that every generation was submitted once, delivered by one
//! webhook, recorded once as completed and handed to Telegram once.
//!
//! Run: `cargo bench --bench fal_overhead` (PostgreSQL from `DATABASE_URL`, default
//! postgres://postgres@127.0.0.1:5432/postgres; a scratch database is created and dropped).
//! `FAL_OVERHEAD_USERS` (default 100) sets the number of concurrent generations,
//! `FAL_OVERHEAD_GENERATION_MS` (default 200) the simulator's generation time.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aisha::fal::sim::JobTiming;
use aisha::fal::{FalSimulator, SimConfig};
use fake_telegram::{sample_jpeg, ChatMessage, Entry, FakeTelegram, FakeUser};

mod common;

const TOKEN: &str = "777001:fal-overhead-token";
const FAL_KEY: &str = "fal-overhead-key";
const FIRST_USER: i64 = 910_000;
/// The generator the balanced preset of a portrait avatar submits to.
const GENERATOR: &str = "fal-ai/flux-lora";
/// How long setting up and generating may take per step before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() {
    let admin_url = common::admin_url();
    let users: usize = common::env_number("FAL_OVERHEAD_USERS", 100);
    let generation = Duration::from_millis(common::env_number("FAL_OVERHEAD_GENERATION_MS", 200));
    println!(
        "# FAL overhead benchmark: {users} concurrent generations, FAL generation time {} ms, webhooks on",
        generation.as_millis()
    );
    let scratch = common::Scratch::create(
        &admin_url,
        format!("aisha_bench_fal_overhead_{}", std::process::id()),
    )
    .await;

    let telegram = FakeTelegram::spawn(TOKEN).await.unwrap();
    let sim = FalSimulator::spawn(SimConfig::default().with_accepted_key(FAL_KEY).with_times(
        Duration::ZERO,
        Duration::from_millis(20),
        generation,
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_aisha"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &scratch.url)
        .env("TELOXIDE_TOKEN", TOKEN)
        .env(
            "TELEGRAM_API_URL",
            telegram.api_url().as_str().trim_end_matches('/'),
        )
        .env("FAL_MODE", "live")
        // A throwaway master key for the data this run seals.
        .env("DATA_KEY", "5e".repeat(32))
        .env("FAL_KEY", FAL_KEY)
        .env("FAL_QUEUE_URL", sim.queue_url())
        .env("FAL_REST_URL", sim.rest_url())
        .env("FAL_PLATFORM_URL", sim.platform_url())
        .env("FAL_JWKS_URL", sim.jwks_url())
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        // FAL's results come by webhook while Telegram updates are long-polled.
        .env("FAL_WEBHOOK_BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("STORAGE_URL", format!("file://{}", dir.path().display()))
        // No sample images after training: the only generations are the measured ones.
        .env("STARTER_IMAGES", "0")
        .env("TELEGRAM_RATE_LIMITS", "relaxed")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start aisha serve");
    common::wait_healthy(port, &mut server).await;

    // Everyone to the prompt request, concurrently.
    let setup = Instant::now();
    let people: Vec<FakeUser> = (0..users)
        .map(|i| {
            telegram
                .user(FIRST_USER + i as i64, &format!("Bench{i}"), "ru")
                .with_timeout(PATIENCE)
        })
        .collect();
    let prepared = people.iter().cloned().enumerate().map(|(i, user)| {
        tokio::spawn(async move {
            prepare(&user, i).await;
        })
    });
    for t in futures::future::join_all(prepared).await {
        t.unwrap();
    }
    println!(
        "setup: {users} users with a trained avatar at the prompt request in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    // All prompts at once; each timed from just before its update is queued.
    let mut sent_at = Vec::with_capacity(users);
    let before: Vec<usize> = people.iter().map(|u| u.transcript().len()).collect();
    for (i, user) in people.iter().enumerate() {
        sent_at.push(Instant::now());
        user.send_text(&prompt(i));
    }
    let waits = people.iter().cloned().zip(before).map(|(user, skip)| {
        tokio::spawn(async move {
            user.wait_until(|entries| photos_in(&entries[skip..]) > 0)
                .await
                .unwrap_or_else(|e| panic!("no image: {e}"));
        })
    });
    for t in futures::future::join_all(waits).await {
        t.unwrap();
    }

    // Every generation exactly once: one submit, one webhook, one completion, one photo.
    let jobs: Vec<JobTiming> = sim
        .job_timings()
        .into_iter()
        .filter(|j| j.model_id == GENERATOR)
        .collect();
    // FAL is asked to forget a finished job's input once we hold our copies (`forget`), so each
    // job's prompt is read from the submission the simulator recorded, matched by the job's
    // webhook URL (one per generation).
    let prompts: HashMap<String, String> = sim
        .submissions()
        .into_iter()
        .filter_map(|r| {
            let prompt = r.body.as_ref()?.get("prompt")?.as_str()?.to_owned();
            let query = reqwest::Url::parse(&format!("http://q/?{}", r.query.as_deref()?)).ok()?;
            let hook = query.query_pairs().find(|(k, _)| k == "fal_webhook")?.1;
            Some((hook.into_owned(), prompt))
        })
        .collect();
    let mut job_of: HashMap<usize, &JobTiming> = HashMap::new();
    for job in &jobs {
        let text = job
            .webhook_url
            .as_ref()
            .and_then(|hook| prompts.get(hook))
            .map(String::as_str)
            .unwrap_or_default();
        let i = (0..users)
            .find(|&i| text.contains(&prompt(i)))
            .unwrap_or_else(|| panic!("a generation nobody asked for: {}", job.request_id));
        assert!(
            job_of.insert(i, job).is_none(),
            "user {i}'s generation was submitted twice"
        );
    }
    let received = received(&telegram, sent_at[0]);
    let (submitted, failed) = generation_events(&scratch.url).await;
    let mut prompt_to_submit = Vec::new();
    let mut webhook_to_photo = Vec::new();
    let mut fal_time = Vec::new();
    let mut prompt_to_photo = Vec::new();
    let mut prompt_to_reply = Vec::new();
    let mut webhook_answered = Vec::new();
    for (i, sent) in sent_at.iter().enumerate() {
        let job = job_of
            .get(&i)
            .unwrap_or_else(|| panic!("user {i}'s generation never reached FAL"));
        assert_eq!(
            job.webhooks_sent.len(),
            1,
            "user {i}'s generation webhook was sent {} times",
            job.webhooks_sent.len()
        );
        let chat = FIRST_USER + i as i64;
        let photos = received.photos.get(&chat).map_or(&[][..], Vec::as_slice);
        assert_eq!(
            photos.len(),
            1,
            "user {i} was handed {} photo messages",
            photos.len()
        );
        let webhook = job.webhooks_sent[0];
        prompt_to_submit.push(job.submitted_at - *sent);
        webhook_to_photo.push(photos[0] - webhook);
        fal_time.push(webhook - job.submitted_at);
        prompt_to_photo.push(photos[0] - *sent);
        if let Some(reply) = received.first_reply.get(&chat) {
            prompt_to_reply.push(*reply - *sent);
        }
        if let Some(answered) = job.webhooks_answered.first() {
            webhook_answered.push(*answered - webhook);
        }
    }
    assert_eq!(jobs.len(), users, "generator jobs at FAL");
    assert_eq!(
        submitted,
        (users as i64, users as i64, users as i64),
        "GenerationRequested, GenerationSubmitted, GenerationCompleted events"
    );
    assert_eq!(failed, 0, "GenerationFailed events");

    let peak_rss_mb = common::peak_rss_kb(server.id()).map_or(f64::NAN, |kb| kb as f64 / 1024.0);
    let _ = server.kill();
    let _ = server.wait();

    println!(
        "counts: {users} prompts, {} generator submits, {} webhooks sent, {} completed (events), {} photo messages, 0 failed",
        jobs.len(),
        jobs.iter().map(|j| j.webhooks_sent.len()).sum::<usize>(),
        submitted.2,
        received.photos.values().map(Vec::len).sum::<usize>(),
    );
    println!("| span | p50 ms | p99 ms | max ms | aim |");
    println!("|---|---|---|---|---|");
    row(
        "(a) prompt → FAL submit",
        &mut prompt_to_submit,
        "p99 < 50 ms",
    );
    row(
        "(b) FAL webhook → photo to Telegram",
        &mut webhook_to_photo,
        "p99 < 100 ms",
    );
    row(
        "  of (a): prompt → the bot's first reply",
        &mut prompt_to_reply,
        "",
    );
    row(
        "  of (b): webhook → our answer to it",
        &mut webhook_answered,
        "",
    );
    row("FAL (simulator) submit → webhook", &mut fal_time, "");
    row("prompt → photo, all of it", &mut prompt_to_photo, "");
    // How the work spread out in time: a pipeline bound by its throughput spaces the arrivals
    // evenly, while one bound by a fixed delay keeps them together.
    let spread = |mut at: Vec<Instant>| {
        at.sort_unstable();
        let span = at[at.len() - 1] - at[0];
        format!(
            "over {:.0} ms ({:.0}/s)",
            span.as_secs_f64() * 1e3,
            (at.len() - 1) as f64 / span.as_secs_f64().max(1e-9)
        )
    };
    println!(
        "prompts sent {}; submits arrived {}; webhooks sent {}; photos arrived {}",
        spread(sent_at.clone()),
        spread(jobs.iter().map(|j| j.submitted_at).collect()),
        spread(jobs.iter().map(|j| j.webhooks_sent[0]).collect()),
        spread(received.photos.values().map(|p| p[0]).collect()),
    );
    println!("server peak RSS {peak_rss_mb:.1} MB");

    drop(telegram);
    drop(sim);
    scratch.drop().await;
}

/// The prompt user `i` sends: unique, so its generation is found in what FAL received.
fn prompt(i: usize) -> String {
    format!("портрет в парке на закате, кадр {i:05}")
}

fn row(name: &str, spans: &mut [Duration], aim: &str) {
    if spans.is_empty() {
        println!("| {name} | – | – | – | {aim} |");
        return;
    }
    spans.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pick = |q: f64| ms(spans[((spans.len() - 1) as f64 * q).round() as usize]);
    println!(
        "| {name} | {:.1} | {:.1} | {:.1} | {aim} |",
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
}

/// One user's way from `/new` to the bot asking for a prompt on a freshly trained avatar.
async fn prepare(user: &FakeUser, i: usize) {
    user.send_command("/new");
    let types = text(user, "🎯").await;
    let genders = press_and_see(user, &types, "t:p", "👤").await;
    press_and_see(user, &genders, "g:p:f", "📝").await;
    user.send_text(&format!("Bench{i}"));
    text(user, "создан").await;
    let seed = (i as u8).wrapping_mul(37);
    user.send_album(
        (0..10u8)
            .map(|n| sample_jpeg(640, 640, seed.wrapping_add(n)))
            .collect(),
    );
    let summary = text(user, "Загружено: 10 из 10–20").await;
    let presets = press_and_see(user, &summary, &button(&summary, "tr:"), "🚀").await;
    press_and_see(user, &presets, &button(&presets, "ts:f:"), "запущено").await;
    let ready = text(user, "готов!").await;
    let menu = press_and_see(user, &ready, &button(&ready, "ge:"), "Выберите пресет").await;
    press_and_see(user, &menu, &button(&menu, "gp:b:"), "Опишите изображение").await;
}

async fn text(user: &FakeUser, needle: &str) -> ChatMessage {
    user.wait_for_bot_text(needle)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The callback data of the first button whose data starts with `prefix`.
fn button(message: &ChatMessage, prefix: &str) -> String {
    message
        .buttons()
        .filter_map(|b| b.callback_data.clone())
        .find(|data| data.starts_with(prefix))
        .unwrap_or_else(|| panic!("no button {prefix}… under {message:#?}"))
}

async fn press_and_see(
    user: &FakeUser,
    message: &ChatMessage,
    data: &str,
    needle: &str,
) -> ChatMessage {
    user.press_button(message.message_id, data).expect("press");
    user.wait_for_edit(message.message_id, |m| {
        m.text().is_some_and(|t| t.contains(needle))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn photos_in(entries: &[Entry]) -> usize {
    entries
        .iter()
        .filter(|e| matches!(e, Entry::Bot(m) if m.photo().is_some()))
        .count()
}

/// What the fake received after `since`, by chat: when each `sendPhoto`/`sendMediaGroup` came,
/// and when the bot's first text reply ("Генерирую изображение…") came.
#[derive(Default)]
struct Received {
    photos: HashMap<i64, Vec<Instant>>,
    first_reply: HashMap<i64, Instant>,
}

fn received(telegram: &FakeTelegram, since: Instant) -> Received {
    let mut out = Received::default();
    for request in telegram.requests() {
        if request.received_at < since {
            continue;
        }
        let chat = &request.params["chat_id"];
        let Some(chat) = chat
            .as_i64()
            .or_else(|| chat.as_str().and_then(|s| s.parse().ok()))
        else {
            continue;
        };
        match request.method.as_str() {
            "sendPhoto" | "sendMediaGroup" => out
                .photos
                .entry(chat)
                .or_default()
                .push(request.received_at),
            "sendMessage" => {
                out.first_reply.entry(chat).or_insert(request.received_at);
            }
            _ => {}
        }
    }
    out
}

/// (GenerationRequested, GenerationSubmitted, GenerationCompleted) and GenerationFailed events
/// in the server's store.
async fn generation_events(url: &str) -> ((i64, i64, i64), i64) {
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let count = |kind: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events WHERE event_type = $1")
                .bind(kind)
                .fetch_one(&pool)
                .await
                .expect("count events")
        }
    };
    let counts = (
        count("GenerationRequested").await,
        count("GenerationSubmitted").await,
        count("GenerationCompleted").await,
    );
    let failed = count("GenerationFailed").await;
    pool.close().await;
    (counts, failed)
}
