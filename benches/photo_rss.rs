//! Photo intake memory benchmark: eight users send a large image each at the same moment to
//! `aisha serve` (a real child process on PostgreSQL), through the fake Bot API. Printed per
//! scenario: the server's resident set before the flood, its peak (VmHWM) after it, the time
//! until every user had an answer, and the answers.
//!
//! Scenarios:
//! - `huge`: the 16384×3051 one-colour PNG (~200 KB, ~150–200 MB decoded), as a file;
//!   refused from its header, so the peak stays near the idle figure;
//! - `budget`: a 5000×5000 one-colour PNG (25 megapixels, the largest accepted), so all eight
//!   are decoded for real, at most two at a time within the 192 MiB decode budget.
//!
//! Run: `cargo bench --bench photo_rss` (PostgreSQL from `DATABASE_URL`, default
//! postgres://postgres@127.0.0.1:5432/postgres). `PHOTO_RSS_USERS` (default 8) changes the
//! number of users, `PHOTO_RSS_SCENARIOS` (comma-separated) the scenarios.

use std::io::Cursor;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aisha::fal::{FalSimulator, SimConfig};
use bytes::Bytes;
use fake_telegram::{Entry, FakeTelegram, FakeUser};
use image::{ImageBuffer, Rgb};

mod common;

const TOKEN: &str = "777001:photo-rss-token";

#[tokio::main]
async fn main() {
    let admin_url = common::admin_url();
    let users: usize = common::env_number("PHOTO_RSS_USERS", 8);
    let scenarios: Vec<String> = std::env::var("PHOTO_RSS_SCENARIOS")
        .unwrap_or_else(|_| "huge,budget".into())
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    println!("# photo intake memory: {users} users send one image each at once");
    println!("| scenario | image | file KB | RSS before MB | peak RSS MB | all answered in ms |");
    println!("|---|---|---|---|---|---|");
    for scenario in scenarios {
        let (width, height) = match scenario.as_str() {
            "huge" => (16_384, 3_051),
            "budget" => (5_000, 5_000),
            other => panic!("unknown scenario {other}"),
        };
        run(&admin_url, &scenario, users, width, height).await;
    }
}

/// A one-colour PNG, as in the issue.
fn plain_png(width: u32, height: u32) -> Bytes {
    let pixels = ImageBuffer::from_pixel(width, height, Rgb([200u8, 120, 40]));
    let mut out = Cursor::new(Vec::new());
    pixels
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode");
    Bytes::from(out.into_inner())
}

async fn run(admin_url: &str, scenario: &str, users: usize, width: u32, height: u32) {
    let png = plain_png(width, height);
    let scratch = common::Scratch::create(
        admin_url,
        format!("aisha_bench_photo_rss_{}_{scenario}", std::process::id()),
    )
    .await;
    let telegram = FakeTelegram::spawn(TOKEN).await.unwrap();
    let sim = FalSimulator::spawn(SimConfig::default().with_accepted_key("rss-fal-key"))
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
        .env("FAL_KEY", "rss-fal-key")
        .env("FAL_QUEUE_URL", sim.queue_url())
        .env("FAL_REST_URL", sim.rest_url())
        .env("FAL_PLATFORM_URL", sim.platform_url())
        .env("FAL_JWKS_URL", sim.jwks_url())
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("STORAGE_URL", format!("file://{}", dir.path().display()))
        .env("TELEGRAM_RATE_LIMITS", "relaxed")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start aisha serve");
    common::wait_healthy(port, &mut server).await;

    let people: Vec<FakeUser> = (0..users)
        .map(|i| {
            telegram
                .user(910_000 + i as i64, &format!("Rss{i}"), "en")
                .with_timeout(Duration::from_secs(120))
        })
        .collect();
    futures::future::join_all(people.iter().map(create_avatar)).await;
    let before_mb =
        common::status_kb(server.id(), "VmRSS:").map_or(f64::NAN, |kb| kb as f64 / 1024.0);

    let start = Instant::now();
    let marks: Vec<usize> = people.iter().map(|u| u.transcript().len()).collect();
    for user in &people {
        user.send_document(png.clone(), "big.png", "image/png");
    }
    let answers =
        futures::future::join_all(people.iter().zip(marks).map(|(u, mark)| answer(u, mark))).await;
    let elapsed = start.elapsed();
    let peak_mb = common::peak_rss_kb(server.id()).map_or(f64::NAN, |kb| kb as f64 / 1024.0);
    let _ = server.kill();
    let _ = server.wait();
    println!(
        "| {scenario} | {width}×{height} | {:.0} | {before_mb:.1} | {peak_mb:.1} | {} |",
        png.len() as f64 / 1024.0,
        elapsed.as_millis()
    );
    let mut distinct: Vec<&String> = answers.iter().collect();
    distinct.sort();
    distinct.dedup();
    for text in distinct {
        let n = answers.iter().filter(|a| *a == text).count();
        println!("  {n}× {:?}", text);
    }
    drop(telegram);
    drop(sim);
    scratch.drop().await;
}

/// `/new` → type → gender → name, then the avatar takes photos.
async fn create_avatar(user: &FakeUser) {
    user.send_command("/new");
    let types = user.wait_for_bot_text("🎯").await.expect("types");
    // The same message is edited from step to step.
    press_and_see(user, types.message_id, "t:p", "👤").await;
    press_and_see(user, types.message_id, "g:p:f", "📝").await;
    let before = user.transcript().len();
    user.send_text("Rss");
    answer(user, before).await;
}

async fn press_and_see(user: &FakeUser, message_id: i32, data: &str, needle: &str) {
    let query = user.press_button(message_id, data).expect("press");
    user.wait_for_callback_answer(&query).await.expect("answer");
    user.wait_for_edit(message_id, |m| m.text().is_some_and(|t| t.contains(needle)))
        .await
        .expect("edited");
}

/// The text of the first bot message after transcript entry `mark`.
async fn answer(user: &FakeUser, mark: usize) -> String {
    user.wait_until(|entries| {
        entries
            .iter()
            .skip(mark)
            .any(|e| matches!(e, Entry::Bot(_)))
    })
    .await
    .expect("an answer");
    user.transcript()
        .into_iter()
        .skip(mark)
        .find_map(|e| match e {
            Entry::Bot(m) => Some(m.text().unwrap_or_default().to_owned()),
            _ => None,
        })
        .unwrap_or_default()
}
