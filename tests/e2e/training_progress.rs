//! A training's progress bar end to end: the "training started" message is edited in place
//! while FAL works (bar, percentage, time left), never with the text it already has, and once
//! more with the outcome. The simulator's jobs wait at its gate, so each move the test lets a
//! job make is one state of the bar, whatever the timing.

use std::collections::HashSet;

use aisha::fal::SimConfig;
use fake_telegram::{ChatMessage, FakeUser};
use serde_json::Value;

use crate::steps::{button, press_and_see, text, upload_album};
use crate::support::{spawn_app_on_postgres, spawn_app_with, TestApp, TestAppSettings};

const DASHA: i64 = 4004;

/// Jobs held at the gate; a training moves in five steps: out of the queue, then four progress
/// lines ("Training step 75/300", 150, 225, 300), the last of which also completes it.
fn gated() -> SimConfig {
    SimConfig {
        progress_steps: 4,
        ..SimConfig::default()
    }
    .paused()
}

/// The percentage a bar's line shows ("… 40 % · …").
fn percent_in(text: &str) -> Option<u8> {
    let at = text.rfind(" %")?;
    let digits: String = text[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

async fn create_portrait(user: &FakeUser, name: &str) {
    user.send_command("/new");
    let types = text(user, "🎯").await;
    let genders = press_and_see(user, &types, "t:p", "👤").await;
    press_and_see(user, &genders, "g:p:f", "📝").await;
    user.send_text(name);
    text(user, "is created").await;
}

/// Creates a portrait, uploads an album and starts a fast training; the "started" message.
async fn start_training(user: &FakeUser, name: &str, seed: u8) -> ChatMessage {
    create_portrait(user, name).await;
    let summary = upload_album(user, seed, "Uploaded: 10 of 10–20").await;
    let presets = press_and_see(user, &summary, &button(&summary, "tr:"), "🚀").await;
    press_and_see(user, &presets, &button(&presets, "ts:f:"), "minutes").await
}

/// Waits until message `id` says something `wanted` accepts.
async fn edited_to(user: &FakeUser, id: i32, wanted: impl Fn(&str) -> bool) -> ChatMessage {
    user.wait_for_edit(id, |m| m.text().is_some_and(&wanted))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The texts of every edit the bot asked for of message `id`, in order.
fn edits_of(app: &TestApp, id: i32) -> Vec<String> {
    let number = |v: &Value| v.as_i64().or_else(|| v.as_str()?.parse().ok());
    app.telegram
        .requests_of("editMessageText")
        .into_iter()
        .filter(|r| number(&r.params["message_id"]) == Some(i64::from(id)))
        .filter_map(|r| r.params["text"].as_str().map(str::to_owned))
        .collect()
}

async fn bars_left(app: &TestApp) -> Option<i64> {
    let mut conn = app.db.acquire().await.unwrap();
    conn.tx()
        .fetch_i64("SELECT count(*) FROM training_progress", vec![])
        .await
        .unwrap()
}

async fn the_bar_moves_and_ends_done(app: TestApp) {
    let dasha = app.user(DASHA, "Dasha", "en");
    let started = start_training(&dasha, "Dasha", 70).await;
    let id = started.message_id;
    let first = started.text().unwrap().to_owned();

    // Held in FAL's queue: the bar is there, empty; the message still says what it said.
    let queued = edited_to(&dasha, id, |t| t.contains("Waiting for a free trainer")).await;
    assert!(queued.text().unwrap().starts_with(&first), "{queued:?}");
    assert_eq!(percent_in(queued.text().unwrap()), Some(0));
    // The menu button stays under the edited message.
    assert!(queued.buttons().next().is_some());

    // A runner takes it: no step logged yet, so the clock estimates (from the preset's
    // expected time, which also gives the time left).
    app.sim.step_jobs();
    let running = edited_to(&dasha, id, |t| t.contains("⏳ Training:")).await;
    assert!(running.text().unwrap().contains("min left"), "{running:?}");

    // Each logged step moves the bar.
    for (step, percent) in [(1, 25), (2, 50), (3, 75)] {
        app.sim.step_jobs();
        let moved = edited_to(&dasha, id, |t| t.contains(&format!(" {percent} %"))).await;
        assert!(
            moved.text().unwrap().contains(&"▓".repeat(percent / 10)),
            "step {step}: {moved:?}"
        );
    }

    // The last step completes the job: the bar ends full and done, and "ready" follows.
    app.sim.step_jobs();
    let done = edited_to(&dasha, id, |t| t.contains("✅")).await;
    let done_text = done.text().unwrap();
    assert!(done_text.starts_with(&first), "{done_text}");
    assert!(done_text.contains("▓▓▓▓▓▓▓▓▓▓ 100 %"), "{done_text}");
    assert!(done.buttons().next().is_some());
    text(&dasha, "is ready").await;

    // What the bot asked Telegram: the bar only ever moved forward, at least twice, and no
    // edit repeated the text the message already had.
    let edits = edits_of(&app, id);
    let percents: Vec<u8> = edits.iter().filter_map(|t| percent_in(t)).collect();
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]),
        "the bar went back: {percents:?}"
    );
    let rises = percents.windows(2).filter(|w| w[0] < w[1]).count();
    assert!(rises >= 3, "{percents:?}");
    assert_eq!(percents.last(), Some(&100));
    let distinct: HashSet<&String> = edits.iter().collect();
    assert_eq!(
        distinct.len(),
        edits.len(),
        "an edit repeated itself: {edits:#?}"
    );
    assert!(edits.last().unwrap().contains('✅'), "{edits:#?}");

    // The finished bar is forgotten.
    assert_eq!(bars_left(&app).await, Some(0));
    app.shutdown().await;
}

#[tokio::test]
async fn the_training_message_is_a_live_progress_bar_on_sqlite() {
    let app = spawn_app_with(TestAppSettings {
        simulator: gated(),
        ..TestAppSettings::default()
    })
    .await;
    the_bar_moves_and_ends_done(app).await;
}

#[sqlx::test(migrations = false)]
async fn the_training_message_is_a_live_progress_bar_on_postgres(pool: sqlx::PgPool) {
    the_bar_moves_and_ends_done(spawn_app_on_postgres(pool, gated()).await).await;
}

#[tokio::test]
async fn a_failed_training_ends_its_bar_with_a_cross() {
    let app = spawn_app_with(TestAppSettings {
        simulator: gated(),
        ..TestAppSettings::default()
    })
    .await;
    app.sim.fail_next_jobs(1);
    let dasha = app.user(DASHA, "Dasha", "en");
    let started = start_training(&dasha, "Dasha", 90).await;
    let id = started.message_id;
    edited_to(&dasha, id, |t| t.contains("Waiting for a free trainer")).await;
    app.sim.step_jobs();
    edited_to(&dasha, id, |t| t.contains("⏳ Training:")).await;
    app.sim.step_jobs();
    edited_to(&dasha, id, |t| t.contains(" 25 %")).await;
    // The rest at once: the job fails after its last step.
    app.sim.resume_jobs();
    let failed = edited_to(&dasha, id, |t| t.contains("❌")).await;
    assert!(
        failed.text().unwrap().ends_with("❌ Training failed."),
        "{failed:?}"
    );
    text(&dasha, "failed").await;
    let edits = edits_of(&app, id);
    let distinct: HashSet<&String> = edits.iter().collect();
    assert_eq!(distinct.len(), edits.len(), "{edits:#?}");
    assert_eq!(bars_left(&app).await, Some(0));
    app.shutdown().await;
}
