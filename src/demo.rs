//! `aisha demo`: the whole story, offline — a user creates a portrait and a style avatar, uploads
//! photos (an album, a document, a duplicate, a too small image, a file that is no image), trains,
//! hears exactly once that each avatar is ready although every FAL webhook arrives twice,
//! generates with two presets, browses the gallery, deletes an avatar after cancelling once, and
//! a second user cannot touch what is not theirs, then buys credits in Telegram Stars. Credits
//! are on: each paid step shows its price before it is taken.
//!
//! Everything is the production wiring: the real [`Application`] on a temporary SQLite database,
//! the FAL simulator in-process, and the fake Telegram Bot API over HTTP, with a scripted user in
//! the chat. The conversation is printed as the user would read it, then the portrait avatar's
//! event history as an auditor would.

use std::time::Duration;

use aggregates::AvatarStatus;
use bytes::Bytes;
use uuid::Uuid;

use crate::actors::ActorSettings;
use crate::app::{AppError, AppOptions, Application};
use crate::bot::callbacks::Callback;
use crate::config::Config;
use crate::fal::sim::WebhookBehaviour;
use crate::fal::SimConfig;
use crate::store::StoreError;
use fake_telegram::{sample_jpeg, ChatMessage, Entry, FakeTelegram, FakeTelegramError, FakeUser};

const TOKEN: &str = "777000:demo-token-for-the-fake-bot-api";
const ANNA: i64 = 1001;
const BOB: i64 = 2002;

/// Why the demo stopped short.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("could not set up: {0}")]
    Setup(String),
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Chat(#[from] FakeTelegramError),
    #[error("step failed: {0}")]
    Step(String),
}

/// What the demo shows at the end.
pub struct DemoReport {
    /// The first user's chat, as she would read it.
    pub transcript: String,
    /// The second user's chat.
    pub second_transcript: String,
    /// The portrait avatar's events, as `aisha history` prints them.
    pub history: String,
    pub portrait_id: Uuid,
}

/// Runs the story and prints it; the exit code says whether every step worked.
pub async fn run_and_print() -> std::process::ExitCode {
    println!(
        "Aisha demo: the bot on a fake Telegram, FAL simulated, a temporary SQLite database.\n"
    );
    match run().await {
        Ok(report) => {
            println!("── Анна's chat with the bot ──────────────────────────────────────────────");
            println!("{}", report.transcript);
            println!("── Bob's chat with the bot ───────────────────────────────────────────────");
            println!("{}", report.second_transcript);
            println!(
                "── aisha history {} (the deleted portrait avatar) ──",
                report.portrait_id
            );
            println!("{}", report.history);
            println!("demo finished: every step worked");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the whole story and returns what it looked like.
pub async fn run() -> Result<DemoReport, DemoError> {
    let dir = tempfile::tempdir().map_err(|e| DemoError::Setup(e.to_string()))?;
    let telegram = FakeTelegram::spawn(TOKEN).await?;
    let mut config = Config::offline(
        format!("sqlite://{}", dir.path().join("aisha.db").display()),
        &dir.path().join("photos"),
    );
    config.telegram.token = Some(TOKEN.into());
    config.telegram.api_url = telegram.api_url().to_string().into();
    // Credits on: every training and image shows its price and reserves it; new users get
    // enough to try everything, and Bob buys a pack in Stars.
    config.payments = crate::bot::pricing::PaymentsConfig {
        welcome_credits: 200,
        ..crate::bot::pricing::PaymentsConfig::stars()
    };
    // Fast timings, and every FAL webhook delivered twice to show that users hear once.
    let options = AppOptions {
        actor_settings: ActorSettings::fast(),
        // Trainings long enough for the status poller to move the progress bar a few times.
        simulator: SimConfig {
            training_time: Duration::from_secs(4),
            progress_steps: 8,
            ..SimConfig::default()
        }
        .with_webhook(WebhookBehaviour {
            duplicate_rate: 1.0,
            ..WebhookBehaviour::default()
        }),
        notifier: None,
    };
    let app = Application::build(config, options).await?;
    if let Some(bot) = &app.telegram {
        // The fake Bot API has no flood control to respect.
        bot.set_limits(crate::bot::SendLimits::relaxed());
    }
    let store = app.store.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let anna = telegram.user(ANNA, "Анна", "ru");
    let bob = telegram.user(BOB, "Bob", "en");
    let story = async {
        let portrait_id = story(&anna, &bob).await?;
        let deleted = store.load(portrait_id).await?.status == AvatarStatus::Deleted;
        check(deleted, "the portrait avatar is deleted in the end")?;
        Ok::<_, DemoError>((portrait_id, store.history(portrait_id).await?))
    }
    .await;
    // Stopped before the result is looked at, so a failed step still shuts down cleanly.
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(15), running).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e.into()),
        Ok(Err(e)) => return Err(DemoError::Setup(format!("the application panicked: {e}"))),
        Err(_) => return Err(DemoError::Setup("the application did not stop".into())),
    }
    let (portrait_id, history) = story?;
    // The "training started" message moved at least twice before it ended with the outcome.
    let bars: std::collections::BTreeSet<String> = telegram
        .requests_of("editMessageText")
        .into_iter()
        .filter_map(|r| r.params["text"].as_str().map(str::to_owned))
        .filter(|t| t.contains("⏳ Обучение:") && t.contains('%'))
        .collect();
    check(bars.len() >= 2, "the training's progress bar moves")?;
    Ok(DemoReport {
        transcript: anna.render_transcript(),
        second_transcript: bob.render_transcript(),
        history: crate::audit::render::render_history(&history),
        portrait_id,
    })
}

/// The conversation; returns the portrait avatar's id.
async fn story(anna: &FakeUser, bob: &FakeUser) -> Result<Uuid, DemoError> {
    anna.send_command("/start");
    let welcome = anna.wait_for_bot_text("Привет").await?;

    // A portrait avatar: type, gender, name.
    let types = press_and_see(anna, &welcome, "n", "Выберите тип").await?;
    let genders = press_and_see(anna, &types, "t:p", "Выберите пол").await?;
    press_and_see(anna, &genders, "g:p:f", "Как назовём").await?;
    anna.send_text("Анна");
    anna.wait_for_bot_text("создан").await?;

    // Photos in every way, good and bad.
    anna.send_photo(photo(1));
    anna.wait_for_bot_text("Фото принято: 1").await?;
    anna.send_photo(photo(1));
    expect_refusal(anna, "уже загружено").await?;
    anna.send_photo(sample_jpeg(320, 240, 5));
    expect_refusal(anna, "слишком маленькое").await?;
    anna.send_document(
        Bytes::from_static(b"%PDF-1.4 minutes of a meeting"),
        "minutes.pdf",
        "application/pdf",
    );
    expect_refusal(anna, "не изображение").await?;
    anna.send_document(photo(2), "IMG_0002.jpg", "image/jpeg");
    anna.wait_for_bot_text("Фото принято: 2").await?;
    let mut album: Vec<Bytes> = (10..18).map(photo).collect();
    album.insert(3, sample_jpeg(500, 500, 9));
    anna.send_album(album);
    let summary = anna.wait_for_bot_text("Альбом обработан").await?;
    check(
        summary
            .text()
            .is_some_and(|t| t.contains("Загружено: 10 из 10–20")),
        "the album brings the count to 10",
    )?;
    let portrait = avatar_of(&button(&summary, "tr:")?)?;

    // Training, and exactly one "ready" despite duplicated webhooks and the poller.
    let ready = train(anna, &summary, "ts:f:", "готов!").await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    check(
        count_bot_texts(anna, "готов!") == 1,
        "exactly one \"ready\" message",
    )?;

    // Two generations: balanced, then the same prompt with the quality preset.
    let presets = press_and_see(anna, &ready, &button(&ready, "ge:")?, "Выберите пресет").await?;
    press_and_see(anna, &presets, &button(&presets, "gp:b:")?, "Опишите").await?;
    anna.send_text("портрет в парке на закате, мягкий свет");
    let first = nth_bot_photo(anna, 1).await?;
    anna.press_button(first.message_id, &button(&first, "op:")?)?;
    let regenerate = anna.wait_for_bot_text("Выберите пресет").await?;
    anna.press_button(regenerate.message_id, &button(&regenerate, "rp:q:")?)?;
    nth_bot_photo(anna, 2).await?;

    // The first picture, four times larger, comes as a file.
    anna.press_button(first.message_id, &button(&first, "up:")?)?;
    let factors = anna.wait_for_bot_text("Во сколько раз").await?;
    press_and_see(anna, &factors, &button(&factors, "ux:0:4:")?, "Увеличиваю").await?;
    let upscaled = anna
        .wait_for_bot_message(|m| {
            matches!(m.content, fake_telegram::Content::Document { .. })
                && m.text().is_some_and(|c| c.contains("увеличено в 4 раза"))
        })
        .await?;
    check(
        upscaled.text().is_some_and(|c| c.contains("×")),
        "the upscaled file says its size",
    )?;

    // A pack from the avatar's card: four business portraits as one batch.
    anna.send_command("/avatars");
    let gallery = anna.wait_for_bot_text("Мои аватары").await?;
    let card = press_and_see(anna, &gallery, &Callback::Card(portrait).encode(), "Тип:").await?;
    let packs = press_and_see(anna, &card, &button(&card, "pk:")?, "Подборки для").await?;
    let business = crate::packs::tag_of("portrait-business");
    let pack = press_and_see(
        anna,
        &packs,
        &Callback::Pack {
            avatar: portrait,
            pack: business,
        }
        .encode(),
        "Деловой портрет",
    )
    .await?;
    press_and_see(anna, &pack, &button(&pack, "px:")?, "запущено 4 из 4").await?;
    nth_bot_photo(anna, 6).await?;

    // A style avatar from one album.
    anna.send_command("/new");
    let types = anna.wait_for_bot_text("Выберите тип").await?;
    let genders = press_and_see(anna, &types, "t:s", "Выберите пол").await?;
    press_and_see(anna, &genders, "g:s:o", "Как назовём").await?;
    anna.send_text("Акварель");
    anna.wait_for_bot_text("создан").await?;
    anna.send_album((40..50).map(photo).collect());
    let summary = anna.wait_for_bot_text("Альбом обработан").await?;
    let style = avatar_of(&button(&summary, "tr:")?)?;
    let ready = train(anna, &summary, "ts:q:", "«Акварель» готов!").await?;
    let presets = press_and_see(anna, &ready, &button(&ready, "ge:")?, "Выберите пресет").await?;
    press_and_see(anna, &presets, &button(&presets, "gp:l:")?, "Опишите").await?;
    anna.send_text("горы в утреннем тумане");
    nth_bot_photo(anna, 7).await?;

    // The gallery; the portrait's card; delete — cancelled once, then confirmed.
    anna.send_command("/avatars");
    let gallery = anna.wait_for_bot_text("Мои аватары").await?;
    let card = press_and_see(anna, &gallery, &Callback::Card(portrait).encode(), "Тип:").await?;
    let confirm =
        press_and_see(anna, &card, &button(&card, "d:")?, "Подтверждение удаления").await?;
    let card = press_and_see(
        anna,
        &confirm,
        &format!("avatar_delete_cancel:{portrait}"),
        "Тип:",
    )
    .await?;
    let confirm =
        press_and_see(anna, &card, &button(&card, "d:")?, "Подтверждение удаления").await?;
    press_and_see(
        anna,
        &confirm,
        &format!("avatar_delete_confirm:{portrait}"),
        "Мои аватары (1)",
    )
    .await?;
    anna.send_command("/avatars");
    let gallery = anna.wait_for_bot_text("Мои аватары").await?;
    check(
        gallery
            .text()
            .is_some_and(|t| t.contains("Акварель") && !t.contains("Анна")),
        "the deleted avatar is gone from the gallery",
    )?;

    // Bob sees none of it and cannot act on it, not even with a forged button.
    bob.send_command("/avatars");
    let empty = bob.wait_for_bot_text("no avatars").await?;
    let query =
        bob.press_forged_button(empty.message_id, &format!("avatar_delete_confirm:{style}"))?;
    let answer = bob.wait_for_callback_answer(&query).await?;
    check(
        answer.text.as_deref() == Some("This avatar is not available."),
        "another user's avatar is refused",
    )?;

    // Bob buys credits in Telegram Stars: the invoice, the payment, the balance.
    bob.send_command("/buy");
    let packs = bob.wait_for_bot_text("Choose a pack").await?;
    let pack = button(&packs, "bp:")?;
    bob.press_button(packs.message_id, &pack)?;
    let invoice = bob.wait_for_invoice().await?;
    let query = bob.pay(invoice.message_id)?;
    let paid = bob.wait_for_payment_outcome(&query).await?;
    check(
        matches!(paid, fake_telegram::PreCheckoutState::Approved { .. }),
        "the payment in Stars goes through",
    )?;
    bob.wait_for_bot_text("Payment received").await?;
    bob.send_command("/balance");
    let balance = bob.wait_for_bot_text("Available").await?;
    check(
        balance.text().is_some_and(|t| t.contains("bought for ⭐")),
        "the balance lists the purchase",
    )?;
    Ok(portrait)
}

fn photo(seed: u8) -> Bytes {
    sample_jpeg(768, 1024, seed)
}

fn check(ok: bool, what: &str) -> Result<(), DemoError> {
    if ok {
        Ok(())
    } else {
        Err(DemoError::Step(what.to_owned()))
    }
}

fn button(message: &ChatMessage, prefix: &str) -> Result<String, DemoError> {
    message
        .buttons()
        .filter_map(|b| b.callback_data.clone())
        .find(|data| data.starts_with(prefix))
        .ok_or_else(|| {
            DemoError::Step(format!(
                "no {prefix}… button under message {}",
                message.message_id
            ))
        })
}

fn avatar_of(data: &str) -> Result<Uuid, DemoError> {
    Callback::parse(data)
        .ok()
        .and_then(|c| c.avatar_id())
        .ok_or_else(|| DemoError::Step(format!("button {data} names no avatar")))
}

async fn press_and_see(
    user: &FakeUser,
    message: &ChatMessage,
    data: &str,
    needle: &str,
) -> Result<ChatMessage, DemoError> {
    user.press_button(message.message_id, data)?;
    Ok(user
        .wait_for_edit(message.message_id, |m| {
            m.text().is_some_and(|t| t.contains(needle))
        })
        .await?)
}

async fn expect_refusal(user: &FakeUser, reason: &str) -> Result<(), DemoError> {
    let message = user.wait_for_bot_text("Фото не принято").await?;
    check(
        message.text().is_some_and(|t| t.contains(reason)),
        &format!("the refusal says {reason:?}"),
    )
}

async fn train(
    user: &FakeUser,
    message: &ChatMessage,
    preset: &str,
    ready: &str,
) -> Result<ChatMessage, DemoError> {
    let presets =
        press_and_see(user, message, &button(message, "tr:")?, "Выберите качество").await?;
    press_and_see(user, &presets, &button(&presets, preset)?, "запущено").await?;
    Ok(user.wait_for_bot_text(ready).await?)
}

fn count_bot_texts(user: &FakeUser, needle: &str) -> usize {
    user.transcript()
        .iter()
        .filter(|e| matches!(e, Entry::Bot(m) if m.text().is_some_and(|t| t.contains(needle))))
        .count()
}

async fn nth_bot_photo(user: &FakeUser, n: usize) -> Result<ChatMessage, DemoError> {
    fn photos(entries: &[Entry]) -> Vec<ChatMessage> {
        entries
            .iter()
            .filter_map(|e| match e {
                Entry::Bot(m) if m.photo().is_some() => Some(m.clone()),
                _ => None,
            })
            .collect()
    }
    let entries = user
        .wait_until(|entries| photos(entries).len() >= n)
        .await?;
    photos(&entries)
        .into_iter()
        .nth(n - 1)
        .ok_or_else(|| DemoError::Step(format!("generated image {n}")))
}
