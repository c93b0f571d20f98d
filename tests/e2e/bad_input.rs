//! Bad input of every kind, through the real application: files that are not photos (or are
//! hostile ones), names and prompts that are too long, odd or look like SQL, forged and
//! truncated buttons, commands in the wrong state, and FAL webhooks that are forged, unsigned,
//! stale, replayed, malformed or oversized. Each case checks the exact answer the user (or FAL)
//! gets and that nothing stored changed.

use std::time::Duration;

use aggregates::{AvatarEvent, AvatarStatus, GenerationPreset, TrainingPreset};
use aisha::bot::callbacks::Callback;
use aisha::fal::{SimConfig, WebhookSigner};
use aisha::store::Database;
use bytes::Bytes;
use fake_telegram::{CallbackAnswer, ChatMessage, Entry, FakeUser};
use uuid::Uuid;

use crate::photos::png_claiming;
use crate::steps::{
    avatar_of, button, count_bot_texts, gallery_where, photo, press_and_see, text, train,
    upload_album,
};
use crate::support::{spawn_app, spawn_app_with, TestApp, TestAppSettings};

const ANNA: i64 = 7101;
const BOB: i64 = 7202;

// ---------------------------------------------------------------------------------------------
// Building blocks of these cases (the common steps are in steps.rs)
// ---------------------------------------------------------------------------------------------

/// Presses any callback data (a button that may not exist) and waits for the answer.
async fn press_forged(user: &FakeUser, message_id: i32, data: &str) -> CallbackAnswer {
    let query = user
        .press_forged_button(message_id, data)
        .expect("forged press");
    user.wait_for_callback_answer(&query).await.expect("answer")
}

/// The text of the next bot message not yet seen by a waiting helper: the bot's reply to what
/// was just sent (updates of one chat are handled in order).
async fn reply(user: &FakeUser) -> String {
    let message = user
        .next_bot_message()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", user.render_transcript()));
    message
        .text()
        .unwrap_or_else(|| panic!("a reply without text: {message:#?}"))
        .to_owned()
}

/// `/new` → type → gender → name; returns after "created".
async fn create_avatar(user: &FakeUser, name: &str) -> String {
    to_name_step(user).await;
    user.send_text(name);
    reply(user).await
}

async fn to_name_step(user: &FakeUser) {
    user.send_command("/new");
    let types = text(user, "🎯").await;
    let genders = press_and_see(user, &types, "t:p", "👤").await;
    press_and_see(user, &genders, "g:p:f", "📝").await;
}

/// `(sequence, event type)` of every event of one avatar.
async fn history(app: &TestApp, avatar: Uuid) -> Vec<(u64, String)> {
    app.store
        .history(avatar)
        .await
        .expect("history")
        .into_iter()
        .map(|e| (e.sequence, e.event_type))
        .collect()
}

/// Every event of every aggregate in the database.
async fn event_count(app: &TestApp) -> i64 {
    let Database::Sqlite(pool) = &app.db else {
        panic!("these tests run on SQLite");
    };
    sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(pool)
        .await
        .expect("count events")
}

/// The avatars created so far, oldest first.
async fn created_avatars(app: &TestApp) -> Vec<Uuid> {
    let Database::Sqlite(pool) = &app.db else {
        panic!("these tests run on SQLite");
    };
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE event_type = 'AvatarCreated' ORDER BY position",
    )
    .fetch_all(pool)
    .await
    .expect("created avatars");
    ids.iter().map(|id| Uuid::parse_str(id).unwrap()).collect()
}

/// The gallery once it lists `total` avatars.
async fn gallery_with(user: &FakeUser, total: usize) -> ChatMessage {
    let header = format!("My avatars ({total})");
    gallery_where(user, |page| page.contains(&header)).await
}

fn refused_photo(reason: &str, count: usize) -> String {
    format!("❌ Photo not accepted: {reason}\nUploaded: {count} of 10–20.")
}

const SQL: &str = "Robert'); DROP TABLE events;--";
const NOT_AVAILABLE: &str = "This avatar is not available.";
const STALE: &str = "This button is out of date. Open the menu: /start";

// ---------------------------------------------------------------------------------------------
// Photos
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_photos_are_refused_with_the_reason_and_change_nothing() {
    let app = spawn_app().await;
    let anna = app.user(ANNA, "Anna", "en");
    let created = create_avatar(&anna, "Photos").await;
    assert!(
        created.starts_with("✅ The avatar “Photos” is created!"),
        "{created}"
    );
    let avatar = created_avatars(&app).await[0];
    let before = history(&app, avatar).await;
    assert_eq!(before.len(), 1);

    let whole = photo(90);
    let cases: Vec<(&str, Bytes, &str, &str, String)> = vec![
        (
            "a PDF",
            Bytes::from_static(b"%PDF-1.4\n% not a photo at all\n"),
            "notes.pdf",
            "application/pdf",
            "this is not an image. Send a JPEG, PNG or WebP photo.".into(),
        ),
        (
            "a truncated JPEG",
            whole.slice(..whole.len() / 2),
            "cut.jpg",
            "image/jpeg",
            "the file is damaged or incomplete.".into(),
        ),
        (
            "a decompression bomb",
            Bytes::from(png_claiming(100_000, 100_000, 8, 2)),
            "bomb.png",
            "image/png",
            "the image (100000×100000) is too large to process.".into(),
        ),
        (
            "25 MB",
            Bytes::from(vec![0xFFu8; 25 * 1024 * 1024]),
            "huge.jpg",
            "image/jpeg",
            "the file is too large (25.0 MB); at most 20 MB.".into(),
        ),
        (
            "an empty file",
            Bytes::new(),
            "empty.jpg",
            "image/jpeg",
            "the file is empty.".into(),
        ),
    ];
    for (what, bytes, file_name, mime, reason) in cases {
        anna.send_document(bytes, file_name, mime);
        assert_eq!(reply(&anna).await, refused_photo(&reason, 0), "{what}");
        assert_eq!(
            history(&app, avatar).await,
            before,
            "{what} changed the history"
        );
    }
    assert!(
        png_claiming(100_000, 100_000, 8, 2).len() < 100,
        "the bomb is tiny"
    );

    // A duplicate: the same photo again, then the same bytes as an uncompressed document.
    anna.send_photo(photo(1));
    assert_eq!(
        reply(&anna).await,
        "✅ Photo accepted: 1 of 10–20. Send more."
    );
    let one = history(&app, avatar).await;
    assert_eq!(one.len(), 2);
    anna.send_photo(photo(1));
    assert_eq!(
        reply(&anna).await,
        refused_photo("this photo was already uploaded.", 1)
    );
    anna.send_document(photo(1), "IMG_0001.jpg", "image/jpeg");
    assert_eq!(
        reply(&anna).await,
        refused_photo("this photo was already uploaded.", 1)
    );
    assert_eq!(history(&app, avatar).await, one);

    // Up to the maximum of 20, then a 21st.
    upload_album(&anna, 2, "Uploaded: 11 of 10–20").await;
    anna.send_album((12..21).map(photo).collect());
    let summary = text(&anna, "Album processed").await;
    assert_eq!(
        summary.text().unwrap(),
        "📸 Album processed: 9 accepted.\nUploaded: 20 of 10–20. You can start training."
    );
    let full = history(&app, avatar).await;
    assert_eq!(full.len(), 21);
    anna.send_photo(photo(50));
    assert_eq!(
        reply(&anna).await,
        refused_photo("the avatar already has the maximum of 20 photos.", 20)
    );
    assert_eq!(history(&app, avatar).await, full);
    assert_eq!(app.store.load(avatar).await.unwrap().photos.len(), 20);
    assert_eq!(
        created_avatars(&app).await,
        vec![avatar],
        "no other avatar appeared"
    );

    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn names_too_long_are_refused_and_any_script_or_sql_is_kept_verbatim() {
    let app = spawn_app().await;
    let anna = app.user(ANNA, "Anna", "en");

    // 500 characters: refused with the limit; the user stays at the name step.
    to_name_step(&anna).await;
    let events = event_count(&app).await;
    anna.send_text(&"x".repeat(500));
    assert_eq!(
        reply(&anna).await,
        "❌ That didn't work: the name is too long (500 characters); at most 64."
    );
    assert_eq!(event_count(&app).await, events, "nothing was stored");
    assert!(created_avatars(&app).await.is_empty());

    // Emoji, right-to-left and SQL-looking names are accepted and shown back intact.
    let emoji = "🦄 Ёжик ✨🌈👩‍👩‍👧";
    let rtl = "سارة الصغيرة 🌙 שלום";
    let names = [emoji, rtl, SQL];
    anna.send_text(emoji);
    assert!(reply(&anna)
        .await
        .starts_with(&format!("✅ The avatar “{emoji}” is created!")),);
    for name in [rtl, SQL] {
        let created = create_avatar(&anna, name).await;
        assert!(
            created.starts_with(&format!("✅ The avatar “{name}” is created!")),
            "{created}"
        );
    }
    let avatars = created_avatars(&app).await;
    assert_eq!(avatars.len(), 3);
    for (id, name) in avatars.iter().zip(names) {
        let avatar = app.store.load(*id).await.unwrap();
        assert_eq!(avatar.name.as_ref().map(|n| n.as_str()), Some(name));
        let history = app.store.history(*id).await.unwrap();
        assert!(
            matches!(&history[0].event, AvatarEvent::AvatarCreated { name: stored, .. } if stored.as_str() == name),
            "{:?}",
            history[0].event
        );
    }

    // The events table still works: a photo for the SQL-named avatar is recorded as usual.
    let events = event_count(&app).await;
    anna.send_photo(photo(1));
    assert_eq!(
        reply(&anna).await,
        "✅ Photo accepted: 1 of 10–20. Send more."
    );
    assert_eq!(event_count(&app).await, events + 1);
    assert_eq!(history(&app, avatars[2]).await.len(), 2);

    // The gallery shows every name as typed.
    // (Waits for the projection to count the photo as well as the avatars.)
    let lines: Vec<String> = [(emoji, 0), (rtl, 0), (SQL, 1)]
        .iter()
        .map(|(name, photos)| format!("🎭 {name} — 📝 Draft, {photos} photos"))
        .collect();
    let mut listing = String::new();
    for _ in 0..100 {
        listing = gallery_with(&anna, 3).await.text().unwrap().to_owned();
        if lines.iter().all(|line| listing.contains(line)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for line in &lines {
        assert!(listing.contains(line), "{line:?} missing from {listing}");
    }

    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Prompts
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn empty_and_over_long_prompts_are_refused_and_sql_is_a_prompt_like_any_other() {
    let app = spawn_app().await;
    let anna = app.user(ANNA, "Anna", "en");
    create_avatar(&anna, "Prompty").await;
    let summary = upload_album(&anna, 30, "Uploaded: 10 of 10–20").await;
    let avatar = avatar_of(&button(&summary, "tr:"));
    let ready = train(
        &anna,
        &summary,
        TrainingPreset::Fast,
        "has started",
        "is ready",
    )
    .await;
    let presets = press_and_see(&anna, &ready, &button(&ready, "ge:"), "Choose a preset").await;
    press_and_see(
        &anna,
        &presets,
        &button(&presets, "gp:f:"),
        "Describe the image",
    )
    .await;
    let before = history(&app, avatar).await;
    let events = event_count(&app).await;

    anna.send_text("   \n\t  ");
    assert_eq!(
        reply(&anna).await,
        "❌ That didn't work: the description cannot be empty."
    );
    anna.send_text(&"a".repeat(1501));
    assert_eq!(
        reply(&anna).await,
        "❌ That didn't work: the description is too long (1501 characters); at most 1500. \
         Please shorten it."
    );
    assert_eq!(history(&app, avatar).await, before);
    assert_eq!(event_count(&app).await, events);
    let generations = |app: &TestApp| {
        app.sim
            .submissions()
            .into_iter()
            .filter(|s| s.model_id() == Some("fal-ai/flux-lora"))
            .filter_map(|s| s.body)
            .collect::<Vec<_>>()
    };
    assert!(generations(&app).is_empty(), "nothing reached FAL");

    // SQL-looking text is just a prompt: stored verbatim, sent to FAL verbatim.
    anna.send_text(SQL);
    let started = reply(&anna).await;
    assert!(
        started.starts_with("🎨 Generating an image of “Prompty” (preset “Fast”)…"),
        "{started}"
    );
    // The request is the next event (the simulator may already have finished it).
    let history_after = app.store.history(avatar).await.unwrap();
    assert!(history_after.len() > before.len());
    let requested = &history_after[before.len()].event;
    assert!(
        matches!(requested,
            AvatarEvent::GenerationRequested { prompt, preset: Some(GenerationPreset::Fast), .. } if prompt == SQL),
        "{requested:?}"
    );
    anna.wait_until(|entries| {
        entries
            .iter()
            .any(|e| matches!(e, Entry::Bot(m) if m.photo().is_some()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let sent = generations(&app);
    assert_eq!(sent.len(), 1);
    let prompt = sent[0]["prompt"].as_str().unwrap();
    assert!(prompt.ends_with(&format!(" {SQL}")), "{prompt}");
    assert!(
        event_count(&app).await > events,
        "the events table still works"
    );

    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Callbacks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn foreign_forged_and_truncated_callbacks_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let anna = app.user(ANNA, "Anna", "en");
    let bob = app.user(BOB, "Bob", "en");
    create_avatar(&anna, "Mine").await;
    anna.send_photo(photo(1));
    reply(&anna).await;
    let gallery = gallery_with(&anna, 1).await;
    let card_data = button(&gallery, "c:");
    let avatar = avatar_of(&card_data);
    let before = history(&app, avatar).await;
    let events = event_count(&app).await;

    // Another user's avatar, under every action.
    bob.send_command("/start");
    let welcome = text(&bob, "Hi, Bob!").await;
    for data in [
        card_data.clone(),
        Callback::Upload(avatar).encode(),
        Callback::Train(avatar).encode(),
        Callback::StartTraining(avatar, TrainingPreset::Fast).encode(),
        Callback::Generate(avatar).encode(),
        Callback::GeneratePreset(avatar, GenerationPreset::Fast).encode(),
        Callback::Delete(avatar).encode(),
        Callback::DeleteConfirm(avatar).encode(),
    ] {
        let answer = press_forged(&bob, welcome.message_id, &data).await;
        assert_eq!(answer.text.as_deref(), Some(NOT_AVAILABLE), "{data}");
        assert!(answer.show_alert, "{data}");
    }

    // Forged: random data, from both users.
    for data in [
        Uuid::new_v4().simple().to_string(),
        format!("zz:{}", Uuid::new_v4().simple()),
        "☃️💥".to_owned(),
        "c:".to_owned(),
        "gl:99999999".to_owned(),
    ] {
        let answer = press_forged(&bob, welcome.message_id, &data).await;
        assert_eq!(answer.text.as_deref(), Some(STALE), "{data}");
        let answer = press_forged(&anna, gallery.message_id, &data).await;
        assert_eq!(answer.text.as_deref(), Some(STALE), "{data}");
        assert!(answer.show_alert, "{data}");
    }

    // Truncated: Anna's own valid buttons cut in half.
    for valid in [
        card_data.clone(),
        Callback::Delete(avatar).encode(),
        Callback::DeleteConfirm(avatar).encode(),
        Callback::StartTraining(avatar, TrainingPreset::Fast).encode(),
    ] {
        let cut = &valid[..valid.len() / 2];
        let answer = press_forged(&anna, gallery.message_id, cut).await;
        assert_eq!(answer.text.as_deref(), Some(STALE), "{cut}");
        assert!(answer.show_alert, "{cut}");
    }

    // Nothing happened: no events, no edited screens.
    assert_eq!(history(&app, avatar).await, before);
    assert_eq!(event_count(&app).await, events);
    let state = app.store.load(avatar).await.unwrap();
    assert_eq!((state.status, state.photos.len()), (AvatarStatus::Draft, 1));
    assert_eq!(bob.message(welcome.message_id).unwrap().edit_date, None);
    assert_eq!(anna.message(gallery.message_id).unwrap().edit_date, None);

    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Commands in the wrong state
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn generating_before_training_and_uploading_after_it_started_are_refused() {
    let app = spawn_app().await;
    let anna = app.user(ANNA, "Anna", "en");
    create_avatar(&anna, "Early").await;
    let summary = upload_album(&anna, 60, "Uploaded: 10 of 10–20").await;
    let avatar = avatar_of(&button(&summary, "tr:"));
    let before = history(&app, avatar).await;

    // Generate on an untrained avatar: the button is refused, no prompt is asked for.
    for data in [
        Callback::Generate(avatar).encode(),
        Callback::GeneratePreset(avatar, GenerationPreset::Balanced).encode(),
    ] {
        let answer = press_forged(&anna, summary.message_id, &data).await;
        assert_eq!(
            answer.text.as_deref(),
            Some("The avatar is not trained yet."),
            "{data}"
        );
        assert!(answer.show_alert, "{data}");
    }
    anna.send_command("/start");
    let menu = text(&anna, "Hi, Anna!").await;
    let none = press_and_see(&anna, &menu, "gm", "Generating needs").await;
    assert_eq!(
        none.text().unwrap(),
        "✨ Generating needs a trained avatar, and you don't have one yet. Shall we create one?"
    );
    assert_eq!(history(&app, avatar).await, before);
    assert_eq!(
        app.store.load(avatar).await.unwrap().status,
        AvatarStatus::Draft
    );

    // Training starts (and stays running); then photos are no longer taken.
    app.sim.pause_jobs();
    let presets = press_and_see(
        &anna,
        &summary,
        &button(&summary, "tr:"),
        "Choose the quality",
    )
    .await;
    press_and_see(&anna, &presets, &button(&presets, "ts:f:"), "has started").await;
    let submitted = wait_for_submission(&app, avatar).await;
    assert!(!submitted.is_empty());
    let training = history(&app, avatar).await;

    anna.send_photo(photo(99));
    assert_eq!(
        reply(&anna).await,
        "📸 I'm not collecting photos right now. Create an avatar with /new — or open a draft in “My avatars”."
    );
    let answer = press_forged(
        &anna,
        summary.message_id,
        &Callback::Upload(avatar).encode(),
    )
    .await;
    assert_eq!(
        answer.text.as_deref(),
        Some("Training has started — the photos can no longer change.")
    );
    let answer = press_forged(&anna, summary.message_id, &Callback::Train(avatar).encode()).await;
    assert_eq!(
        answer.text.as_deref(),
        Some("Training has already started.")
    );
    let answer = press_forged(
        &anna,
        summary.message_id,
        &Callback::Generate(avatar).encode(),
    )
    .await;
    assert_eq!(
        answer.text.as_deref(),
        Some("The avatar is not trained yet.")
    );

    assert_eq!(history(&app, avatar).await, training);
    let state = app.store.load(avatar).await.unwrap();
    assert_eq!(
        (state.status, state.photos.len()),
        (AvatarStatus::Training, 10)
    );

    app.shutdown().await;
}

/// Waits until the avatar's training has been submitted to FAL; returns the request id.
async fn wait_for_submission(app: &TestApp, avatar: Uuid) -> String {
    for _ in 0..200 {
        let found = app
            .store
            .history(avatar)
            .await
            .unwrap()
            .into_iter()
            .find_map(|e| match e.event {
                AvatarEvent::TrainingSubmitted { request_id, .. } => Some(request_id),
                _ => None,
            });
        if let Some(request_id) = found {
            return request_id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the training was never submitted");
}

// ---------------------------------------------------------------------------------------------
// FAL webhooks
// ---------------------------------------------------------------------------------------------

fn header_map(headers: &aisha::fal::webhook::WebhookHeaders) -> reqwest::header::HeaderMap {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers.pairs() {
        map.insert(name, value.parse().unwrap());
    }
    map
}

#[tokio::test]
async fn bad_fal_webhooks_are_refused_and_a_replay_completes_once() {
    let seed = [42u8; 32];
    let app = spawn_app_with(TestAppSettings {
        simulator: SimConfig::default().with_signing_seed(seed),
        ..TestAppSettings::default()
    })
    .await;
    let anna = app.user(ANNA, "Anna", "en");
    create_avatar(&anna, "Hooked").await;
    let summary = upload_album(&anna, 80, "Uploaded: 10 of 10–20").await;
    let avatar = avatar_of(&button(&summary, "tr:"));
    // The simulator never finishes this job itself: only our deliveries can.
    app.sim.pause_jobs();
    let presets = press_and_see(
        &anna,
        &summary,
        &button(&summary, "tr:"),
        "Choose the quality",
    )
    .await;
    press_and_see(&anna, &presets, &button(&presets, "ts:f:"), "has started").await;
    let request_id = wait_for_submission(&app, avatar).await;
    let before = history(&app, avatar).await;

    let genuine = WebhookSigner::from_seed(seed, "sim-user");
    // The webhook URL our server gave FAL with the submission (it carries the job's token).
    let url = app
        .sim
        .submissions()
        .last()
        .and_then(|s| s.query_param("fal_webhook"))
        .expect("the submission named our webhook");
    let client = reqwest::Client::new();
    let post = |headers: reqwest::header::HeaderMap, body: Vec<u8>| {
        client.post(&url).headers(headers).body(body).send()
    };
    let body = serde_json::to_vec(&serde_json::json!({
        "request_id": request_id, "gateway_request_id": request_id, "status": "OK",
        "payload": {"diffusers_lora_file": {"url": "http://fal/files/lora.safetensors"}}
    }))
    .unwrap();
    let now = chrono::Utc::now().timestamp();

    let forger = WebhookSigner::generate("sim-user");
    let forged = post(
        header_map(&forger.sign(&request_id, now, &body)),
        body.clone(),
    );
    assert_eq!(forged.await.unwrap().status(), 401, "forged");
    let unsigned = post(Default::default(), body.clone());
    assert_eq!(unsigned.await.unwrap().status(), 401, "unsigned");
    let stale = header_map(&genuine.sign(&request_id, now - 3600, &body));
    assert_eq!(
        post(stale, body.clone()).await.unwrap().status(),
        401,
        "stale"
    );
    let garbage = b"{not json".to_vec();
    let malformed = header_map(&genuine.sign(&request_id, now, &garbage));
    assert_eq!(
        post(malformed, garbage).await.unwrap().status(),
        400,
        "malformed"
    );
    let huge = vec![b'{'; 2 * 1024 * 1024];
    let oversized = header_map(&genuine.sign(&request_id, now, &huge));
    assert_eq!(
        post(oversized, huge).await.unwrap().status(),
        413,
        "oversized"
    );
    // Genuinely signed by FAL, but not at a URL we gave out: answered so FAL stops, ignored.
    let signed = header_map(&genuine.sign(&request_id, now, &body));
    for foreign in [
        format!("{}/webhooks/fal?avatar_id={avatar}", app.http),
        format!("{}/webhooks/fal?avatar_id={avatar}&token=00ff", app.http),
        url.replace(&avatar.to_string(), &uuid::Uuid::new_v4().to_string()),
    ] {
        let answer = client
            .post(&foreign)
            .headers(signed.clone())
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{foreign}");
    }
    assert_eq!(
        history(&app, avatar).await,
        before,
        "no bad delivery was recorded"
    );
    assert_eq!(
        app.store.load(avatar).await.unwrap().status,
        AvatarStatus::Training
    );

    // The genuine delivery, twice: accepted both times, applied once.
    let signed = header_map(&genuine.sign(&request_id, now, &body));
    assert_eq!(
        post(signed.clone(), body.clone()).await.unwrap().status(),
        200
    );
    assert_eq!(
        post(signed, body.clone()).await.unwrap().status(),
        200,
        "replayed"
    );
    text(
        &anna,
        "🎉 Your avatar “Hooked” is ready! You can create images now.",
    )
    .await;
    let after = app.store.history(avatar).await.unwrap();
    assert_eq!(after.len(), before.len() + 1, "{after:#?}");
    assert!(
        matches!(&after.last().unwrap().event,
            AvatarEvent::TrainingCompleted { request_id: r, .. } if *r == request_id),
        "{:?}",
        after.last().unwrap().event
    );
    assert_eq!(
        app.store.load(avatar).await.unwrap().status,
        AvatarStatus::Trained
    );
    // FAL never finishes the hooked job, so its clean-up looks again and again: wait for what
    // the deliveries set off, not for those looks.
    app.settle_within(Duration::ZERO).await;
    assert_eq!(
        count_bot_texts(&anna, "is ready"),
        1,
        "{}",
        anna.render_transcript()
    );
    assert_eq!(history(&app, avatar).await.len(), before.len() + 1);

    app.shutdown().await;
}

/// Quotas: past the number of avatars a user may have, a new one is refused with the exact
/// message and nothing is written; past the trainings a day, the training button says so.
#[tokio::test]
async fn quotas_refuse_with_a_clear_message_and_store_nothing() {
    let app = spawn_app().await;
    app.set_quotas(aisha::bot::quotas::Quotas {
        avatars_per_user: 1,
        trainings_per_user_per_day: 0,
        ..Default::default()
    });
    let anna = app.user(ANNA, "Anna", "en");
    let created = create_avatar(&anna, "First").await;
    assert!(created.contains("created"), "{created}");
    let summary = upload_album(&anna, 120, "Uploaded: 10 of 10–20").await;
    let presets = press_and_see(
        &anna,
        &summary,
        &button(&summary, "tr:"),
        "Choose the quality",
    )
    .await;
    let before = event_count(&app).await;
    let answer = crate::steps::press(&anna, &presets, &button(&presets, "ts:f:")).await;
    assert_eq!(
        answer.text.as_deref(),
        Some("⛔ At most 0 trainings can be started a day. Please try again tomorrow.")
    );
    assert_eq!(event_count(&app).await, before, "no training was started");
    assert!(app.sim.submissions().is_empty(), "nothing was paid for");

    gallery_where(&anna, |page| page.contains("First")).await;
    let before = event_count(&app).await;
    let refused = create_avatar(&anna, "Second").await;
    assert_eq!(
        refused,
        "⛔ You already have 1 avatars, the most allowed. Delete one in “My avatars” to create a new one."
    );
    assert_eq!(event_count(&app).await, before, "nothing was stored");
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------------

/// Rows of a table, on the SQLite database these cases run on.
async fn rows(app: &TestApp, table: &str) -> i64 {
    let Database::Sqlite(pool) = &app.db else {
        panic!("these tests run on SQLite");
    };
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .expect("count rows")
}

#[tokio::test]
async fn in_a_group_the_bot_points_to_its_private_chat_and_remembers_nothing() {
    const GROUP_ONLY: &str = "I only work in private messages: your photos and avatars are personal. Write to me: https://t.me/aisha_fake_bot";
    let app = spawn_app().await;
    let anna = app.user(ANNA, "Anna", "en");
    let bob = app.user(BOB, "Bob", "ru");
    let group = app.telegram.group(9001, "Family", false);
    let anna_there = anna.in_group(group);

    // Chatter, a photo and a document are not addressed to the bot: no answer, nothing kept.
    // Updates of one chat are handled in order, so the answer to the command that follows is
    // the first bot message in the group.
    anna_there.send_text("hello everyone");
    anna_there.send_photo(photo(1));
    anna_there.send_document(photo(2), "me.jpg", "image/jpeg");
    anna_there.send_command("/new");
    let answer = anna_there.next_bot_message().await.expect("an answer");
    assert_eq!(answer.text(), Some(GROUP_ONLY));
    // Bob's Telegram is in Russian, so his answer is.
    bob.in_group(group).send_command("/start");
    let answer = bob
        .in_group(group)
        .next_bot_message()
        .await
        .expect("answer");
    assert_eq!(
        answer.text(),
        Some("Я работаю только в личных сообщениях: фотографии и аватары — это личное. Напишите мне: https://t.me/aisha_fake_bot")
    );

    // A forged button under the bot's group message: the same sentence, as an alert.
    let pressed = press_forged(&anna_there, answer.message_id, "c:0").await;
    assert_eq!(pressed.text.as_deref(), Some(GROUP_ONLY));
    assert!(pressed.show_alert);

    assert_eq!(count_bot_texts(&anna_there, "private messages"), 1);
    assert_eq!(event_count(&app).await, 0, "no avatar, no photo");
    assert_eq!(rows(&app, "telegram_users").await, 0, "no user row");
    assert_eq!(rows(&app, "bot_dialogues").await, 0, "no dialogue");
    assert!(
        anna.transcript().is_empty(),
        "nothing reached Anna's private chat"
    );

    // Notifications go to the private chat, never to the group the user last wrote in.
    create_avatar(&anna, "Anna").await;
    let summary = upload_album(&anna, 40, "Uploaded: 10 of 10–20").await;
    let ready = train(
        &anna,
        &summary,
        TrainingPreset::Balanced,
        "3–15 minutes",
        "is ready",
    )
    .await;
    let presets = press_and_see(&anna, &ready, &button(&ready, "ge:"), "Choose a preset").await;
    press_and_see(
        &anna,
        &presets,
        &button(&presets, "gp:f:"),
        "Describe the image",
    )
    .await;
    anna_there.send_command("/help");
    assert_eq!(
        anna_there.next_bot_message().await.expect("answer").text(),
        Some(GROUP_ONLY)
    );
    // The prompt step survives the group detour: the next private text is the prompt.
    anna.send_text("a lighthouse at dawn");
    anna.wait_for_bot_message(|m| matches!(m.content, fake_telegram::Content::Photo { .. }))
        .await
        .expect("the image, in the private chat");
    assert!(
        anna_there.transcript().iter().all(|e| !matches!(
            e,
            Entry::Bot(m) if matches!(m.content, fake_telegram::Content::Photo { .. })
        )),
        "no image was posted to the group:\n{}",
        anna_there.render_transcript()
    );
    app.shutdown().await;
}

/// Deleting an avatar takes its trainings out of the read models, not out of the quota: each
/// was a paid job. With one training a day, a user who trains, deletes the avatar and makes
/// another is told to wait, and FAL is asked once.
#[tokio::test]
async fn deleting_an_avatar_does_not_give_its_training_back_to_the_daily_quota() {
    let app = spawn_app().await;
    app.set_quotas(aisha::bot::quotas::Quotas {
        trainings_per_user_per_day: 1,
        ..Default::default()
    });
    let anna = app.user(ANNA, "Anna", "en");
    let (_, first) = crate::bot::trained_portrait(&anna, "First", 130).await;
    anna.send_command("/avatars");
    let gallery = text(&anna, "🖼").await;
    let card = press_and_see(&anna, &gallery, &Callback::Card(first).encode(), "Type:").await;
    let confirm = press_and_see(&anna, &card, &Callback::Delete(first).encode(), "").await;
    crate::steps::press(&anna, &confirm, &Callback::DeleteConfirm(first).encode()).await;
    gallery_where(&anna, |page| !page.contains("First")).await;

    create_avatar(&anna, "Second").await;
    let summary = upload_album(&anna, 150, "Uploaded: 10 of 10–20").await;
    let presets = press_and_see(
        &anna,
        &summary,
        &button(&summary, "tr:"),
        "Choose the quality",
    )
    .await;
    let answer = crate::steps::press(&anna, &presets, &button(&presets, "ts:f:")).await;
    assert_eq!(
        answer.text.as_deref(),
        Some("⛔ At most 1 trainings can be started a day. Please try again tomorrow.")
    );
    let trainings = app
        .sim
        .submissions()
        .into_iter()
        .filter(|s| s.model_id().is_some_and(|m| m.contains("trainer")))
        .count();
    assert_eq!(trainings, 1, "one paid training");
    app.shutdown().await;
}
