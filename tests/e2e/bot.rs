//! The Telegram bot end to end: the real application (bot, HTTP server, actors, projections)
//! driven through the fake Telegram Bot API over HTTP, training and generating on the FAL
//! simulator. Users create a portrait and a style avatar, upload photos in every way Telegram
//! allows (and some that must be refused), train, generate with presets, browse the gallery and
//! delete; other users, forged buttons and stale buttons change nothing.

use std::time::Duration;

use aggregates::{AvatarStatus, TrainingPreset};
use aisha::bot::callbacks::Callback;
use aisha::fal::sim::WebhookBehaviour;
use aisha::fal::SimConfig;
use bytes::Bytes;
use fake_telegram::{sample_jpeg, ChatMessage, Entry, FakeUser};
use serde_json::Value;
use uuid::Uuid;

use crate::steps::{
    avatar_of, button, count_bot_texts, gallery_where, photo, press, press_and_see, text, train,
    upload_album,
};
use crate::support::{
    spawn_app, spawn_app_on_postgres, spawn_app_with, TestApp, TestAppSettings, BOT_TOKEN,
};

const ANNA: i64 = 1001;
const BOB: i64 = 2002;

// ---------------------------------------------------------------------------------------------
// Building blocks: steps a user takes, and what the bot was asked
// ---------------------------------------------------------------------------------------------

/// Waits until the bot has sent `n` photos in this chat; returns the `n`th.
pub(crate) async fn nth_bot_photo(user: &FakeUser, n: usize) -> ChatMessage {
    let photos = |entries: &[Entry]| -> Vec<ChatMessage> {
        entries
            .iter()
            .filter_map(|e| match e {
                Entry::Bot(m) if m.photo().is_some() => Some(m.clone()),
                _ => None,
            })
            .collect()
    };
    let entries = user
        .wait_until(|entries| photos(entries).len() >= n)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    photos(&entries).swap_remove(n - 1)
}

/// `/new` → type → gender → name; returns after "created".
pub(crate) async fn create_avatar(
    user: &FakeUser,
    type_code: &str,
    gender_code: &str,
    name: &str,
    created: &str,
) {
    user.send_command("/new");
    let types = text(user, "🎯").await;
    let genders = press_and_see(user, &types, &format!("t:{type_code}"), "👤").await;
    press_and_see(
        user,
        &genders,
        &format!("g:{type_code}:{gender_code}"),
        "📝",
    )
    .await;
    user.send_text(name);
    text(user, created).await;
}

/// FAL submissions to one endpoint, their JSON bodies in order.
/// The finetune id of the imported avatar (the simulator knows it only once told).
pub(crate) const IMPORTED_FINETUNE: &str = "ft-imported-watercolour";

/// A style avatar with a pro finetune, written as its history would have been recorded when it
/// was trained on the pro trainer.
pub(crate) async fn import_pro_finetune_avatar(
    app: &TestApp,
    owner: i64,
    name: &str,
) -> uuid::Uuid {
    use aggregates::{Action, Actor, AvatarType, Command, Gender, StyleTrainer, TrainingOutput};
    let id = uuid::Uuid::new_v4();
    let run = |by: Actor, action: Action| {
        let store = app.store.clone();
        async move {
            store
                .execute(
                    id,
                    Command::new(by, chrono::Utc::now(), action),
                    uuid::Uuid::new_v4(),
                )
                .await
                .unwrap();
        }
    };
    let user = Actor::User(owner);
    run(
        user.clone(),
        Action::Create {
            avatar_id: id,
            name: name.into(),
            gender: Gender::Female,
            avatar_type: AvatarType::Style,
        },
    )
    .await;
    for n in 0..10 {
        let photo = aggregates::PhotoMeta {
            photo_id: format!("old{n}"),
            content_hash: format!("{:064x}", 0xabc000 + n),
            byte_size: 1000,
            width: 1024,
            height: 1024,
            format: aggregates::ImageFormat::Jpeg,
            storage_key: format!("avatars/{id}/old{n}.jpg"),
        };
        run(user.clone(), Action::UploadPhoto { photo }).await;
    }
    run(
        user,
        Action::StartTraining {
            training_id: Uuid::new_v4(),
            preset: TrainingPreset::Balanced,
            style: StyleTrainer::ProFinetune,
        },
    )
    .await;
    let system = Actor::System("import".into());
    run(
        system.clone(),
        Action::RecordTrainingSubmission {
            request_id: "old-request".into(),
            endpoint: "fal-ai/flux-pro-trainer".into(),
            status_url: "https://queue.fal.run/fal-ai/flux-pro/requests/old-request/status".into(),
            response_url: "https://queue.fal.run/fal-ai/flux-pro/requests/old-request".into(),
            cancel_url: "https://queue.fal.run/fal-ai/flux-pro/requests/old-request/cancel".into(),
            archive_url: None,
        },
    )
    .await;
    run(
        system,
        Action::CompleteTraining {
            request_id: "old-request".into(),
            output: TrainingOutput {
                finetune_id: Some(IMPORTED_FINETUNE.into()),
                ..TrainingOutput::default()
            },
        },
    )
    .await;
    id
}

pub(crate) fn submitted(app: &TestApp, endpoint: &str) -> Vec<Value> {
    app.sim
        .submissions()
        .into_iter()
        .filter(|s| s.model_id() == Some(endpoint))
        .filter_map(|s| s.body)
        .collect()
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

// ---------------------------------------------------------------------------------------------
// The whole story, on both databases
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_whole_story_on_sqlite() {
    whole_story(spawn_app_with(duplicating_webhooks()).await).await;
}

#[sqlx::test(migrations = false)]
async fn the_whole_story_on_postgres(pool: sqlx::PgPool) {
    whole_story(spawn_app_on_postgres(pool, duplicating_webhooks().simulator).await).await;
}

/// Every FAL webhook is delivered twice.
fn duplicating_webhooks() -> TestAppSettings {
    TestAppSettings {
        simulator: SimConfig::default().with_webhook(WebhookBehaviour {
            duplicate_rate: 1.0,
            ..WebhookBehaviour::default()
        }),
        ..TestAppSettings::default()
    }
}

async fn whole_story(app: TestApp) {
    let anna = app.user(ANNA, "Анна", "ru");

    // Welcome and main menu, in Russian.
    anna.send_command("/start");
    let welcome = text(&anna, "Привет, Анна!").await;
    assert_eq!(welcome.callback_data("🎭 Создать аватар"), Some("n"));

    // Portrait: type (with the seed's description) → gender → name, each screen edited in place.
    let types = press_and_see(&anna, &welcome, "n", "Выберите тип аватара").await;
    let types_text = types.text().unwrap();
    assert!(
        types_text.contains("Портретный — специально для фотографий людей"),
        "{types_text}"
    );
    assert!(
        types_text.contains("Художественный — для стилей и объектов"),
        "{types_text}"
    );
    let genders = press_and_see(&anna, &types, "t:p", "Выберите пол").await;
    press_and_see(&anna, &genders, "g:p:f", "Как назовём аватар").await;
    anna.send_text("Анна <портрет>");
    let created = text(&anna, "создан").await;
    assert!(created
        .text()
        .unwrap()
        .contains("Аватар «Анна <портрет>» создан"));
    assert!(created.text().unwrap().contains("минимум 512×512"));

    // Photos: a compressed photo, the same again, a small one, a PDF, a cut-off JPEG, an
    // uncompressed document, then an album with one photo too small among nine good ones.
    anna.send_photo(photo(1));
    text(&anna, "Фото принято: 1 из 10–20").await;
    anna.send_photo(photo(1));
    let duplicate = text(&anna, "Фото не принято").await;
    assert!(
        duplicate.text().unwrap().contains("это фото уже загружено"),
        "{duplicate:?}"
    );
    anna.send_photo(sample_jpeg(300, 300, 9));
    let small = text(&anna, "Фото не принято").await;
    assert!(small
        .text()
        .unwrap()
        .contains("слишком маленькое (300×300), нужно минимум 512×512"));
    anna.send_document(
        Bytes::from_static(b"%PDF-1.4 not a photo"),
        "notes.pdf",
        "application/pdf",
    );
    let pdf = text(&anna, "Фото не принято").await;
    assert!(
        pdf.text().unwrap().contains("это не изображение"),
        "{pdf:?}"
    );
    let whole = photo(2);
    anna.send_document(whole.slice(..whole.len() / 2), "cut.jpg", "image/jpeg");
    let cut = text(&anna, "Фото не принято").await;
    assert!(cut.text().unwrap().contains("повреждён"), "{cut:?}");
    anna.send_document(photo(3), "IMG_0003.jpg", "image/jpeg");
    let document = text(&anna, "Фото принято: 2 из 10–20").await;
    assert!(
        document.buttons().all(|b| !b
            .callback_data
            .as_deref()
            .unwrap_or_default()
            .starts_with("tr:")),
        "no training before 10 photos"
    );
    assert!(document.callback_data("↩️ Убрать это фото").is_some());
    let mut album: Vec<Bytes> = (10..19).map(photo).collect();
    album.insert(4, sample_jpeg(400, 800, 77));
    anna.send_album(album);
    let summary = text(&anna, "Альбом обработан").await;
    let summary_text = summary.text().unwrap();
    assert!(
        summary_text.contains("принято 9, не принято 1"),
        "{summary_text}"
    );
    assert!(
        summary_text.contains("слишком маленькое (400×800)"),
        "{summary_text}"
    );
    assert!(
        summary_text.contains("Загружено: 11 из 10–20"),
        "{summary_text}"
    );
    assert_eq!(
        count_bot_texts(&anna, "Альбом обработан"),
        1,
        "one summary per album"
    );
    let portrait = avatar_of(&button(&summary, "tr:"));
    assert_eq!(app.store.load(portrait).await.unwrap().photos.len(), 11);

    // Training: started at once with the expected time, then exactly one "ready" although every
    // FAL webhook arrives twice and the status poller looks too.
    let ready = train(
        &anna,
        &summary,
        TrainingPreset::Fast,
        "3–15 минут",
        "готов!",
    )
    .await;
    assert!(ready
        .text()
        .unwrap()
        .contains("Аватар «Анна <портрет>» готов!"));
    eventually("a duplicated training webhook", || {
        app.sim
            .webhook_deliveries()
            .iter()
            .any(|d| d.duplicate && d.status == Some(200))
    })
    .await;
    // The status poller's look at the finished training, and anything else due, is over.
    app.settle().await;
    assert_eq!(
        count_bot_texts(&anna, "готов!"),
        1,
        "{}",
        anna.render_transcript()
    );
    let trainings = submitted(&app, "fal-ai/flux-lora-portrait-trainer");
    assert_eq!(trainings.len(), 1);
    assert_eq!(trainings[0]["steps"], 300);

    // Generating with the balanced preset, then "another preset": quality.
    let presets = press_and_see(&anna, &ready, &button(&ready, "ge:"), "Выберите пресет").await;
    assert_eq!(
        presets
            .buttons()
            .filter(|b| b
                .callback_data
                .as_deref()
                .is_some_and(|d| d.starts_with("gp:")))
            .count(),
        8
    );
    press_and_see(
        &anna,
        &presets,
        &button(&presets, "gp:b:"),
        "Опишите изображение",
    )
    .await;
    anna.send_text("портрет в парке на закате");
    text(&anna, "Генерирую изображение с аватаром «Анна <портрет>» (пресет «Сбалансированный»)… Обычно это 25–35 секунд").await;
    let first = nth_bot_photo(&anna, 1).await;
    assert!(first.text().unwrap().contains("Готово!"), "{first:?}");
    let other = button(&first, "op:");
    assert!(first.callback_data("🔁 Ещё раз").is_some());
    press(&anna, &first, &other).await;
    let regenerate = text(&anna, "Выберите пресет").await;
    press(&anna, &regenerate, &button(&regenerate, "rp:q:")).await;
    text(&anna, "(пресет «Качество»)").await;
    nth_bot_photo(&anna, 2).await;
    let lora = submitted(&app, "fal-ai/flux-lora");
    assert_eq!(lora.len(), 2, "{lora:#?}");
    for (body, (steps, guidance, scale)) in lora.iter().zip([(28, 3.5, 1.0), (50, 4.0, 1.2)]) {
        assert_eq!(body["num_inference_steps"], steps);
        assert_eq!(body["guidance_scale"], guidance);
        assert_eq!(body["image_size"], "square_hd");
        assert_eq!(body["loras"][0]["scale"], scale);
        let prompt = body["prompt"].as_str().unwrap();
        assert!(
            prompt.starts_with("PERSON_") && prompt.ends_with(" портрет в парке на закате"),
            "{prompt}"
        );
    }

    // A style avatar: album, quality training on FAL's LoRA trainer in style mode, one
    // landscape generation on the LoRA endpoint with the style LoRA.
    create_avatar(&anna, "s", "o", "Акварель", "Аватар «Акварель» создан").await;
    let style_summary = upload_album(&anna, 100, "Загружено: 10 из 10–20").await;
    let style = avatar_of(&button(&style_summary, "tr:"));
    let style_ready = train(
        &anna,
        &style_summary,
        TrainingPreset::Quality,
        "5–30 минут",
        "«Акварель» готов!",
    )
    .await;
    assert!(submitted(&app, "fal-ai/flux-pro-trainer").is_empty());
    let style_trainings = submitted(&app, "fal-ai/flux-lora-fast-training");
    assert_eq!(style_trainings.len(), 1);
    let archive = style_trainings[0]["images_data_url"].as_str().unwrap();
    let style_trigger = app.store.load(style).await.unwrap().trigger();
    assert_eq!(
        style_trainings[0],
        serde_json::json!({"images_data_url": archive, "trigger_word": style_trigger,
            "steps": 1500, "is_style": true, "create_masks": false})
    );
    let style_lora = match app.store.load(style).await.unwrap().model {
        Some(aggregates::TrainedModel::StyleLora { lora_file_url, .. }) => lora_file_url,
        other => panic!("a style avatar holds a style LoRA: {other:?}"),
    };
    let presets = press_and_see(
        &anna,
        &style_ready,
        &button(&style_ready, "ge:"),
        "Выберите пресет",
    )
    .await;
    press_and_see(
        &anna,
        &presets,
        &button(&presets, "gp:l:"),
        "Опишите изображение",
    )
    .await;
    anna.send_text("горы в тумане");
    nth_bot_photo(&anna, 3).await;
    let mut lora = submitted(&app, "fal-ai/flux-lora");
    assert_eq!(lora.len(), 3, "{lora:#?}");
    // FAL gets our copy of the style LoRA by a signed URL of ours, not the URL it made it at.
    let path = lora[2]["loras"][0]["path"].take();
    let ours = format!(
        "{}/fal-inputs/{}?",
        app.http,
        aisha::photos::store::copy_key(style, &style_lora)
    );
    assert!(path.as_str().unwrap().starts_with(&ours), "{path}");
    assert_eq!(
        lora[2],
        serde_json::json!({"prompt": format!("{style_trigger} горы в тумане"),
            "loras": [{"path": null, "scale": 1.0}], "image_size": "landscape_4_3",
            "num_inference_steps": 30, "guidance_scale": 3.5, "num_images": 1})
    );
    assert!(submitted(&app, "fal-ai/flux-pro/v1.1-ultra-finetuned").is_empty());

    // An avatar that already holds a pro finetune (trained before FAL deprecated the pro
    // trainer, imported as its history) still generates on the ultra endpoint.
    app.sim.import_finetune(IMPORTED_FINETUNE);
    let imported = import_pro_finetune_avatar(&app, ANNA, "Старый стиль").await;
    let listing = gallery_where(&anna, |page| page.contains("Старый стиль")).await;
    let card = press_and_see(
        &anna,
        &listing,
        &Callback::Card(imported).encode(),
        "Старый стиль",
    )
    .await;
    let presets = press_and_see(
        &anna,
        &card,
        &Callback::Generate(imported).encode(),
        "Выберите пресет",
    )
    .await;
    press_and_see(
        &anna,
        &presets,
        &button(&presets, "gp:l:"),
        "Опишите изображение",
    )
    .await;
    anna.send_text("старый город");
    nth_bot_photo(&anna, 4).await;
    let ultra = submitted(&app, "fal-ai/flux-pro/v1.1-ultra-finetuned");
    assert_eq!(ultra.len(), 1);
    let imported_trigger = app.store.load(imported).await.unwrap().trigger();
    assert_eq!(
        ultra[0],
        serde_json::json!({"prompt": format!("{imported_trigger} старый город"),
            "finetune_id": IMPORTED_FINETUNE, "finetune_strength": 1.0, "aspect_ratio": "4:3",
            "num_images": 1})
    );

    // The gallery lists both, each with name, type, status and photo count.
    let gallery = gallery_where(&anna, |page| {
        page.contains("Анна <портрет> — ✅ Готов") && page.contains("Акварель — ✅ Готов")
    })
    .await;
    let listing = gallery.text().unwrap();
    assert!(
        listing.contains("Анна <портрет> — ✅ Готов, 11 фото"),
        "{listing}"
    );
    assert!(
        listing.contains("Акварель — ✅ Готов, 10 фото"),
        "{listing}"
    );

    // Delete the portrait: the seed's confirmation, cancelled once, then confirmed.
    let card_button = gallery
        .buttons()
        .find(|b| b.text.contains("Анна"))
        .and_then(|b| b.callback_data.clone())
        .unwrap();
    let card = press_and_see(&anna, &gallery, &card_button, "Тип:").await;
    assert!(card.text().unwrap().contains("Портретный"));
    let confirm = press_and_see(&anna, &card, &button(&card, "d:"), "Подтверждение удаления").await;
    let confirm_text = confirm.text().unwrap();
    for line in [
        "Вы действительно хотите удалить аватар?",
        "Название: Анна <портрет>",
        "Статус: ✅ Готов",
        "Это действие нельзя отменить.",
        "• Обученная модель",
        "• Загруженные фотографии",
        "• История генераций",
    ] {
        assert!(
            confirm_text.contains(line),
            "{line:?} missing from {confirm_text}"
        );
    }
    assert_eq!(
        confirm.callback_data("❌ Да, удалить"),
        Some(format!("avatar_delete_confirm:{portrait}").as_str())
    );
    assert_eq!(
        confirm.callback_data("✅ Отмена"),
        Some(format!("avatar_delete_cancel:{portrait}").as_str())
    );
    let back = press_and_see(
        &anna,
        &confirm,
        &format!("avatar_delete_cancel:{portrait}"),
        "Тип:",
    )
    .await;
    assert_eq!(
        app.store.load(portrait).await.unwrap().status,
        AvatarStatus::Trained
    );
    let confirm = press_and_see(&anna, &back, &button(&back, "d:"), "Подтверждение удаления").await;
    let answer = press(
        &anna,
        &confirm,
        &format!("avatar_delete_confirm:{portrait}"),
    )
    .await;
    assert_eq!(
        answer.text.as_deref(),
        Some("🗑 Аватар «Анна <портрет>» удалён.")
    );
    let after = anna
        .wait_for_edit(confirm.message_id, |m| {
            m.text().is_some_and(|t| t.contains("Мои аватары (2)"))
        })
        .await
        .unwrap();
    assert!(!after.text().unwrap().contains("Анна <портрет>"));
    assert_eq!(
        app.store.load(portrait).await.unwrap().status,
        AvatarStatus::Deleted
    );
    let gallery = gallery_where(&anna, |page| !page.contains("Анна")).await;
    assert!(gallery.text().unwrap().contains("Акварель"));

    // Another user sees nothing of hers and cannot act on it, even with forged buttons.
    let bob = app.user(BOB, "Bob", "en");
    bob.send_command("/avatars");
    let empty = text(&bob, "You have no avatars yet").await;
    for data in [
        format!("avatar_delete_confirm:{style}"),
        Callback::Card(style).encode(),
        Callback::Delete(style).encode(),
        Callback::Generate(style).encode(),
    ] {
        let query = bob.press_forged_button(empty.message_id, &data).unwrap();
        let answer = bob.wait_for_callback_answer(&query).await.unwrap();
        assert_eq!(
            answer.text.as_deref(),
            Some("This avatar is not available."),
            "{data}"
        );
        assert!(answer.show_alert);
    }
    assert_eq!(
        app.store.load(style).await.unwrap().status,
        AvatarStatus::Trained
    );

    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Safety: forged, foreign and stale buttons
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn forged_foreign_and_stale_buttons_are_refused_politely_and_change_nothing() {
    let app = spawn_app().await;
    let anna = app.user(ANNA, "Анна", "ru");
    let bob = app.user(BOB, "Bob", "en");

    create_avatar(&anna, "p", "f", "Черновик", "создан").await;
    anna.send_photo(photo(1));
    text(&anna, "Фото принято: 1").await;
    let gallery = gallery_where(&anna, |page| page.contains("Черновик")).await;
    let card_data = button(&gallery, "c:");
    let avatar = avatar_of(&card_data);

    bob.send_command("/start");
    let welcome = text(&bob, "Hi, Bob!").await;
    let forged = |data: String| {
        let bob = bob.clone();
        let message = welcome.message_id;
        async move {
            let query = bob.press_forged_button(message, &data).unwrap();
            bob.wait_for_callback_answer(&query).await.unwrap()
        }
    };
    // Another user's avatar, under every action.
    for data in [
        card_data.clone(),
        Callback::Upload(avatar).encode(),
        Callback::Train(avatar).encode(),
        Callback::Delete(avatar).encode(),
        Callback::DeleteConfirm(avatar).encode(),
        Callback::DeleteCancel(avatar).encode(),
        Callback::GeneratePreset(avatar, aggregates::GenerationPreset::Fast).encode(),
    ] {
        let answer = forged(data.clone()).await;
        assert_eq!(
            answer.text.as_deref(),
            Some("This avatar is not available."),
            "{data}"
        );
        assert!(answer.show_alert, "{data}");
    }
    // An avatar that does not exist answers the same, so ids reveal nothing.
    let answer = forged(Callback::Card(Uuid::new_v4()).encode()).await;
    assert_eq!(
        answer.text.as_deref(),
        Some("This avatar is not available.")
    );
    // Garbled data.
    for data in [
        "zz:top",
        "avatar_delete_confirm:../../etc",
        "c:AAAA",
        "gl:-1",
    ] {
        let answer = forged(data.into()).await;
        assert_eq!(
            answer.text.as_deref(),
            Some("This button is out of date. Open the menu: /start"),
            "{data}"
        );
    }
    // Nothing happened to Anna's avatar, and Bob's chat got no screens from it.
    let state = app.store.load(avatar).await.unwrap();
    assert_eq!((state.status, state.photos.len()), (AvatarStatus::Draft, 1));
    assert_eq!(bob.message(welcome.message_id).unwrap().edit_date, None);

    // Anna deletes it; the old card button is then stale for her too.
    let card = press_and_see(&anna, &gallery, &card_data, "Тип:").await;
    let confirm = press_and_see(&anna, &card, &button(&card, "d:"), "Подтверждение удаления").await;
    press(&anna, &confirm, &format!("avatar_delete_confirm:{avatar}")).await;
    let query = anna
        .press_forged_button(confirm.message_id, &card_data)
        .unwrap();
    let answer = anna.wait_for_callback_answer(&query).await.unwrap();
    assert_eq!(answer.text.as_deref(), Some("Этот аватар удалён."));
    let query = anna
        .press_forged_button(
            confirm.message_id,
            &format!("avatar_delete_confirm:{avatar}"),
        )
        .unwrap();
    let answer = anna.wait_for_callback_answer(&query).await.unwrap();
    assert_eq!(answer.text.as_deref(), Some("Этот аватар удалён."));
    // A photo for the deleted draft is not taken.
    anna.send_photo(photo(2));
    text(&anna, "не жду фотографий").await;
    // An album gets one such notice, not one per photo (updates of a chat run in order, so
    // once /help is answered the album has been handled).
    anna.send_album((3..6).map(photo).collect());
    anna.send_command("/help");
    text(&anna, "Как это работает").await;
    assert_eq!(count_bot_texts(&anna, "не жду фотографий"), 2);

    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Language, /cancel and prompts
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn english_speakers_are_answered_in_english_and_russian_is_the_default() {
    let app = spawn_app().await;
    let bob = app.user(BOB, "Bob", "en-GB");
    let ivan = app.user(3003, "Иван", "");
    let hans = app.user(4004, "Hans", "de");

    bob.send_command("/start");
    let welcome = text(&bob, "Hi, Bob!").await;
    let types = press_and_see(&bob, &welcome, "n", "Choose the avatar type").await;
    assert!(types
        .text()
        .unwrap()
        .contains("Portrait — made for photos of people"));
    assert_eq!(types.callback_data("🎨 Style"), Some("t:s"));
    bob.send_command("/help");
    text(&bob, "How it works").await;

    for user in [&ivan, &hans] {
        user.send_command("/start");
        text(user, "Привет").await;
        user.send_command("/help");
        text(user, "Как это работает").await;
    }
    // The command menu exists in both languages.
    eventually("the command menus", || {
        !app.telegram.my_commands("").is_empty() && !app.telegram.my_commands("en").is_empty()
    })
    .await;
    assert_eq!(app.telegram.my_commands("en")[0].description, "Main menu");
    assert_eq!(app.telegram.my_commands("")[0].description, "Главное меню");

    app.shutdown().await;
}

#[tokio::test]
async fn cancel_leaves_each_step_and_over_long_prompts_are_refused() {
    let app = spawn_app().await;
    let bob = app.user(BOB, "Bob", "en");

    bob.send_command("/cancel");
    text(&bob, "nothing to cancel").await;

    // Cancel while naming: the next text is not taken as a name.
    create_step_to_name(&bob).await;
    bob.send_command("/cancel");
    text(&bob, "Cancelled.").await;
    bob.send_text("Not a name");
    text(&bob, "I didn't get that").await;

    // Cancel while uploading: the draft stays; a later photo resumes it.
    create_avatar(&bob, "p", "m", "Bob", "is created").await;
    bob.send_photo(photo(1));
    text(&bob, "Photo accepted: 1 of 10–20").await;
    bob.send_command("/cancel");
    text(
        &bob,
        "Upload stopped. The avatar “Bob” is kept as a draft (1 photos)",
    )
    .await;
    let summary = upload_album(&bob, 20, "Uploaded: 11 of 10–20").await;
    let ready = train(
        &bob,
        &summary,
        TrainingPreset::Balanced,
        "3–15 minutes",
        "is ready",
    )
    .await;

    // An over-long prompt is refused with its length; nothing reaches FAL; a good one follows.
    let presets = press_and_see(&bob, &ready, &button(&ready, "ge:"), "Choose a preset").await;
    press_and_see(
        &bob,
        &presets,
        &button(&presets, "gp:f:"),
        "Describe the image",
    )
    .await;
    bob.send_text(&"a".repeat(1501));
    text(
        &bob,
        "the description is too long (1501 characters); at most 1500",
    )
    .await;
    assert!(submitted(&app, "fal-ai/flux-lora").is_empty());
    bob.send_text("a lighthouse at dawn");
    text(&bob, "Generating an image of “Bob” (preset “Fast”)").await;
    let result = nth_bot_photo(&bob, 1).await;
    // "Generate again" runs the same prompt and preset once more.
    press(&bob, &result, &button(&result, "ag:")).await;
    nth_bot_photo(&bob, 2).await;
    let lora = submitted(&app, "fal-ai/flux-lora");
    assert_eq!(lora.len(), 2);
    assert_eq!(lora[0]["num_inference_steps"], 20);
    assert_eq!(lora[1]["prompt"], lora[0]["prompt"]);

    // Cancel while a prompt is awaited: the next text generates nothing.
    let gallery = gallery_where(&bob, |page| page.contains("My avatars")).await;
    let card = press_and_see(&bob, &gallery, &button(&gallery, "c:"), "Type:").await;
    let presets = press_and_see(&bob, &card, &button(&card, "ge:"), "Choose a preset").await;
    press_and_see(
        &bob,
        &presets,
        &button(&presets, "gp:u:"),
        "Describe the image",
    )
    .await;
    bob.send_command("/cancel");
    text(&bob, "Cancelled.").await;
    bob.send_text("a prompt nobody asked for");
    text(&bob, "I didn't get that").await;
    assert_eq!(submitted(&app, "fal-ai/flux-lora").len(), 2);

    // "Generate" from the main menu offers the last used avatar first.
    bob.send_command("/start");
    let menu = text(&bob, "Hi, Bob!").await;
    let choose = press_and_see(&bob, &menu, "gm", "Choose an avatar").await;
    assert!(choose
        .callback_data("⭐ Bob (last used)")
        .is_some_and(|d| d.starts_with("ge:")));

    app.shutdown().await;
}

async fn create_step_to_name(user: &FakeUser) {
    user.send_command("/new");
    let types = text(user, "🎯").await;
    let genders = press_and_see(user, &types, "t:s", "👤").await;
    press_and_see(user, &genders, "g:s:f", "📝").await;
}

// ---------------------------------------------------------------------------------------------
// Failures: NSFW images, a blocked user, a failed training
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn nsfw_images_are_not_sent_and_failed_trainings_offer_a_retry() {
    let app = spawn_app_with(TestAppSettings {
        simulator: SimConfig::default().with_nsfw_rate(1.0),
        ..TestAppSettings::default()
    })
    .await;
    let anna = app.user(ANNA, "Анна", "ru");
    create_avatar(&anna, "p", "f", "Анна", "создан").await;
    let summary = upload_album(&anna, 40, "Загружено: 10 из 10–20").await;

    // The first training fails on FAL's side; the user hears it once, with a retry button.
    app.sim.fail_next_jobs(1);
    let failed = train(
        &anna,
        &summary,
        TrainingPreset::Fast,
        "запущено",
        "Не удалось обучить",
    )
    .await;
    let ready = train(&anna, &failed, TrainingPreset::Fast, "запущено", "готов!").await;

    let presets = press_and_see(&anna, &ready, &button(&ready, "ge:"), "Выберите пресет").await;
    press_and_see(&anna, &presets, &button(&presets, "gp:f:"), "Опишите").await;
    anna.send_text("портрет");
    let hidden = text(&anna, "фильтр безопасности скрыл все изображения").await;
    assert!(hidden.buttons().any(|b| b
        .callback_data
        .as_deref()
        .is_some_and(|d| d.starts_with("ag:"))));
    assert!(anna
        .transcript()
        .iter()
        .all(|e| !matches!(e, Entry::Bot(m) if m.photo().is_some())));

    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Webhook mode
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn in_webhook_mode_updates_need_the_secret_token() {
    // Webhook mode needs our public URL before the server binds, so pick a free port first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let app = spawn_app_with(TestAppSettings {
        public_base_url: Some(base.clone()),
        http_addr: format!("127.0.0.1:{port}").parse().unwrap(),
        ..TestAppSettings::default()
    })
    .await;
    let anna = app.user(ANNA, "Анна", "ru");
    eventually("the webhook to be set", || {
        app.telegram.webhook_url().is_some()
    })
    .await;
    assert_eq!(
        app.telegram.webhook_url(),
        Some(format!("{base}/webhooks/telegram"))
    );

    let update = serde_json::json!({
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": chrono::Utc::now().timestamp(),
            "chat": {"id": ANNA, "type": "private", "first_name": "Анна"},
            "from": {"id": ANNA, "is_bot": false, "first_name": "Анна", "language_code": "ru"},
            "text": "/start",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}]
        }
    });
    let http = reqwest::Client::new();
    let url = format!("{}/webhooks/telegram", app.http);
    let post = |secret: Option<String>| {
        let mut request = http.post(&url).json(&update);
        if let Some(secret) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        request.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some("wrong".into())).await.unwrap().status(), 401);
    assert_eq!(
        post(Some(aisha::bot::webhook_secret(BOT_TOKEN)))
            .await
            .unwrap()
            .status(),
        200
    );
    text(&anna, "Привет, Анна!").await;
    assert_eq!(
        count_bot_texts(&anna, "Привет"),
        1,
        "only the authenticated update was handled"
    );

    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Restarts, flood control and the demo
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_upload_in_progress_survives_a_restart() {
    let app = spawn_app().await;
    let anna = app.user(ANNA, "Анна", "ru");
    create_avatar(&anna, "p", "f", "Анна", "создан").await;
    for seed in 1..=3 {
        anna.send_photo(photo(seed));
        text(&anna, &format!("Фото принято: {seed} из 10–20")).await;
    }

    // The step (uploading to this avatar), the avatar and its photos all outlive the process.
    let app = app.restart().await;
    anna.send_photo(photo(4));
    text(&anna, "Фото принято: 4 из 10–20").await;
    anna.send_photo(photo(2));
    text(&anna, "это фото уже загружено").await;
    anna.send_album((5..11).map(photo).collect());
    let summary = text(&anna, "Загружено: 10 из 10–20").await;
    let avatar = avatar_of(&button(&summary, "tr:"));
    assert_eq!(app.store.load(avatar).await.unwrap().photos.len(), 10);

    app.shutdown().await;
}

#[tokio::test]
async fn a_step_in_the_middle_of_a_conversation_survives_a_restart() {
    let app = spawn_app().await;
    let anna = app.user(ANNA, "Анна", "ru");
    anna.send_command("/new");
    let types = text(&anna, "🎯").await;
    let genders = press_and_see(&anna, &types, "t:s", "👤").await;
    press_and_see(&anna, &genders, "g:s:f", "📝").await;

    // The bot now waits for a name; a crash or a deploy must not make Anna start over.
    let app = app.restart().await;
    anna.send_text("Акварель");
    text(&anna, "создан").await;
    let gallery = gallery_where(&anna, |page| page.contains("Акварель")).await;
    let avatar = avatar_of(&button(&gallery, "c:"));
    let state = app.store.load(avatar).await.unwrap();
    assert_eq!(
        state.name.map(|n| n.to_string()).as_deref(),
        Some("Акварель")
    );
    assert_eq!(state.avatar_type, Some(aggregates::AvatarType::Style));

    // The chat now waits for this avatar's photos, and says so in the database.
    assert_eq!(
        stored_steps(&app).await,
        [serde_json::json!({ "step": "uploading", "avatar_id": avatar })]
    );
    // Back to idle, the row says so (and keeps the step it ended, for a re-run of /cancel).
    anna.send_command("/cancel");
    text(&anna, "Загрузка остановлена").await;
    assert_eq!(
        stored_steps(&app).await,
        [serde_json::json!({ "step": "idle" })]
    );
    app.shutdown().await;
}

#[tokio::test]
async fn a_step_this_version_cannot_read_starts_the_chat_afresh() {
    let app = spawn_app().await;
    let anna = app.user(ANNA, "Анна", "ru");
    // A step another release wrote (or a damaged row): refusing every message from the chat
    // would lock Anna out, so it reads as no step at all.
    let aisha::store::Database::Sqlite(pool) = &app.db else {
        unreachable!("spawn_app runs on SQLite")
    };
    sqlx::query(
        "INSERT INTO bot_dialogues (chat_id, state, updated_at)
         VALUES (?1, '{\"step\": \"hologram\"}', '2026-01-01T00:00:00+00:00')",
    )
    .bind(anna.chat_id())
    .execute(pool)
    .await
    .unwrap();
    anna.send_command("/cancel");
    text(&anna, "Сейчас нечего отменять.").await;
    app.shutdown().await;
}

/// The conversation steps stored in `bot_dialogues`.
async fn stored_steps(app: &TestApp) -> Vec<Value> {
    let sql = "SELECT state FROM bot_dialogues ORDER BY chat_id";
    match &app.db {
        aisha::store::Database::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        aisha::store::Database::Postgres(pool) => {
            sqlx::query_scalar(&sql.replace("state", "state::text"))
                .fetch_all(pool)
                .await
        }
    }
    .expect("read bot_dialogues")
    .iter()
    .map(|json: &String| serde_json::from_str(json).expect("a step is JSON"))
    .collect()
}

#[tokio::test]
async fn flood_waits_from_telegram_are_waited_out() {
    let app = spawn_app().await;
    let anna = app.user(ANNA, "Анна", "ru");
    app.telegram.fail_next(
        "sendMessage",
        429,
        "Too Many Requests: retry after 1",
        Some(1),
    );
    anna.send_command("/start");
    text(&anna, "Привет, Анна!").await;
    let attempts = app.telegram.requests_of("sendMessage").len();
    assert_eq!(attempts, 2, "one refused with 429, one after the wait");
    app.shutdown().await;
}

#[tokio::test]
async fn the_demo_runs_the_whole_story_and_exits_zero() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_aisha"))
        .arg("demo")
        .env("RUST_LOG", "error")
        .output()
        .await
        .expect("run aisha demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "Анна › /start",
        "Альбом обработан",
        "🎉 Аватар «Анна» готов!",
        "Подтверждение удаления",
        "alert: This avatar is not available.",
        "AvatarCreated",
        "TrainingCompleted",
        "AvatarDeleted",
        "demo finished: every step worked",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from:\n{stdout}"
        );
    }
}

#[tokio::test]
async fn the_gallery_is_paginated() {
    let app = spawn_app().await;
    let anna = app.user(ANNA, "Анна", "ru");
    anna.send_command("/start");
    text(&anna, "Привет").await;
    for n in 1..=7 {
        let id = Uuid::new_v4();
        let create = aggregates::Command::new(
            aggregates::Actor::User(ANNA),
            chrono::Utc::now(),
            aggregates::Action::Create {
                avatar_id: id,
                name: format!("Аватар {n}"),
                gender: aggregates::Gender::Female,
                avatar_type: aggregates::AvatarType::Portrait,
            },
        );
        app.store.execute(id, create, Uuid::new_v4()).await.unwrap();
    }
    let first = gallery_where(&anna, |page| page.contains("(7)")).await;
    assert!(first.text().unwrap().contains("страница 1 из 2"));
    assert_eq!(
        first
            .buttons()
            .filter(|b| b.text.starts_with("🎭 Аватар"))
            .count(),
        5
    );
    assert!(first.callback_data("◀️").is_none());
    let second = press_and_see(&anna, &first, "gl:1", "страница 2 из 2").await;
    assert_eq!(
        second
            .buttons()
            .filter(|b| b.text.starts_with("🎭 Аватар"))
            .count(),
        2
    );
    assert!(second.callback_data("▶️").is_none());
    press_and_see(&anna, &second, "gl:0", "страница 1 из 2").await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_user_who_blocked_the_bot_is_not_retried_forever() {
    let app = spawn_app().await;
    let anna = app.user(ANNA, "Анна", "ru");
    create_avatar(&anna, "p", "f", "Анна", "создан").await;
    let summary = upload_album(&anna, 60, "Загружено: 10 из 10–20").await;
    let avatar = avatar_of(&button(&summary, "tr:"));
    let presets = press_and_see(
        &anna,
        &summary,
        &button(&summary, "tr:"),
        "Выберите качество",
    )
    .await;
    app.sim.pause_jobs();
    press_and_see(&anna, &presets, &button(&presets, "ts:f:"), "запущено").await;
    anna.block_bot();
    app.sim.resume_jobs();
    let store = app.store.clone();
    for _ in 0..200 {
        if store.load(avatar).await.unwrap().status == AvatarStatus::Trained {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        store.load(avatar).await.unwrap().status,
        AvatarStatus::Trained
    );
    let ready_attempts = || {
        app.telegram
            .requests_of("sendMessage")
            .iter()
            .filter(|r| {
                r.params["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("готов!"))
            })
            .count()
    };
    eventually("the notification attempt", || ready_attempts() >= 1).await;
    app.settle().await;
    assert_eq!(
        ready_attempts(),
        1,
        "a blocked bot is a permanent failure, not retried"
    );
    assert_eq!(count_bot_texts(&anna, "готов!"), 0);
    app.shutdown().await;
}

#[tokio::test]
async fn serve_without_a_token_says_so_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_aisha"))
        .arg("serve")
        .env("TELOXIDE_TOKEN", "")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("a.db").display()),
        )
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "error")
        .current_dir(dir.path())
        .output()
        .await
        .expect("run aisha serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("TELOXIDE_TOKEN is not set"), "{stderr}");
}

#[tokio::test]
async fn a_photo_can_be_removed_and_the_set_started_over_and_their_bytes_are_deleted() {
    let app = spawn_app().await;
    let anna = app.user(ANNA, "Anna", "en");
    create_avatar(&anna, "p", "f", "Anna", "is created").await;
    anna.send_photo(photo(1));
    let first = text(&anna, "Photo accepted: 1 of 10–20").await;
    anna.send_photo(photo(2));
    let second = text(&anna, "Photo accepted: 2 of 10–20").await;
    assert_eq!(
        second
            .buttons()
            .map(|b| b.text.as_str())
            .collect::<Vec<_>>(),
        ["↩️ Remove this photo", "🔄 Start the set over"]
    );
    let avatar = avatar_of(&button(&second, "po:"));
    let state = app.store.load(avatar).await.unwrap();
    let (kept, removed) = (state.photos[0].clone(), state.photos[1].clone());
    assert_eq!(app.stored_photo_files().len(), 2);

    // "Remove this photo" under the second reply: that photo goes, bytes and all.
    press(&anna, &second, &button(&second, "pr:")).await;
    let edited = anna
        .wait_for_edit(second.message_id, |m| {
            m.text() == Some("🗑 Photo removed and deleted. Uploaded: 1 of 10–20.")
        })
        .await
        .expect("the reply becomes the removal");
    assert!(edited.callback_data("↩️ Remove this photo").is_none());
    let state = app.store.load(avatar).await.unwrap();
    assert_eq!(state.photos, vec![kept.clone()]);
    assert_eq!(app.stored_photo_files(), vec![kept.storage_key.clone()]);
    assert!(!app.photos_dir().join(&removed.storage_key).exists());

    // The same button again (a stale client): nothing to remove, nothing changes.
    let stale = anna
        .press_forged_button(second.message_id, &button(&second, "pr:"))
        .unwrap();
    let answer = anna.wait_for_callback_answer(&stale).await.unwrap();
    assert_eq!(
        answer.text.as_deref(),
        Some("This photo is no longer in the set.")
    );
    assert_eq!(app.store.load(avatar).await.unwrap().photos.len(), 1);

    // The removed photo may come back: it is no duplicate any more.
    anna.send_photo(photo(2));
    text(&anna, "Photo accepted: 2 of 10–20").await;

    // "Start the set over": every photo goes, and the upload carries on from zero.
    press(&anna, &first, &button(&first, "po:")).await;
    anna.wait_for_edit(first.message_id, |m| {
        m.text()
            == Some(
                "🔄 The set is started over: 2 photos removed and deleted. Send 10–20 new photos.",
            )
    })
    .await
    .expect("the set is started over");
    assert!(app.store.load(avatar).await.unwrap().photos.is_empty());
    assert!(
        app.stored_photo_files().is_empty(),
        "{:?}",
        app.stored_photo_files()
    );
    let history: Vec<String> = app
        .store
        .history(avatar)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        history.iter().filter(|t| *t == "PhotoRemoved").count(),
        3,
        "one removal, then two in the start-over: {history:?}"
    );

    // The new set trains as any other.
    let summary = upload_album(&anna, 60, "Uploaded: 10 of 10–20").await;
    train(
        &anna,
        &summary,
        TrainingPreset::Balanced,
        "3–15 minutes",
        "is ready",
    )
    .await;
    app.shutdown().await;
}

/// An English-speaking user's portrait avatar created, given ten photos (from `seed`) and
/// trained on the fast preset; returns the "ready" message and the avatar's id.
pub(crate) async fn trained_portrait(user: &FakeUser, name: &str, seed: u8) -> (ChatMessage, Uuid) {
    create_avatar(user, "p", "f", name, "is created").await;
    let summary = upload_album(user, seed, "Uploaded: 10 of 10–20").await;
    let ready = train(user, &summary, TrainingPreset::Fast, "minutes", "is ready").await;
    let avatar = avatar_of(&button(&ready, "ge:"));
    (ready, avatar)
}

/// The images of a finished generation as recorded, from the avatar's history.
pub(crate) async fn recorded_images(
    app: &TestApp,
    avatar: Uuid,
) -> Vec<aggregates::GeneratedImage> {
    app.store
        .history(avatar)
        .await
        .unwrap()
        .into_iter()
        .rev()
        .find_map(|e| match e.event {
            aggregates::AvatarEvent::GenerationCompleted { images, .. } => Some(images),
            _ => None,
        })
        .expect("a finished generation")
}

#[tokio::test]
async fn four_images_in_a_chosen_frame_arrive_as_one_album_and_each_as_its_original_file() {
    four_images(spawn_app().await).await;
}

#[sqlx::test(migrations = false)]
async fn four_images_on_postgres(pool: sqlx::PgPool) {
    four_images(spawn_app_on_postgres(pool, SimConfig::default()).await).await;
}

async fn four_images(app: TestApp) {
    let bob = app.user(BOB, "Bob", "en");
    let (ready, avatar) = trained_portrait(&bob, "Bob", 80).await;
    // Right after "ready", the menu's "Generate" (read from the gallery) already knows it.
    bob.send_command("/start");
    let menu = text(&bob, "Hi, Bob!").await;
    let choose = press_and_see(&bob, &menu, "gm", "Choose an avatar").await;
    assert!(choose.buttons().any(|b| b
        .callback_data
        .as_deref()
        .is_some_and(|d| d == Callback::Generate(avatar).encode())));
    let presets = press_and_see(&bob, &ready, &button(&ready, "ge:"), "Choose a preset").await;
    let screen = press_and_see(
        &bob,
        &presets,
        &button(&presets, "gp:b:"),
        "Describe the image",
    )
    .await;
    assert!(
        screen
            .text()
            .unwrap()
            .ends_with("🖼 Images: 1 · frame: the preset's"),
        "{screen:?}"
    );
    assert!(screen.callback_data("✓ 1").is_some());
    assert!(screen.callback_data("✓ preset's").is_some());

    // Four images, then 9:16: the screen is edited in place each time and says so.
    press(
        &bob,
        &screen,
        &screen.callback_data("4").unwrap().to_owned(),
    )
    .await;
    let four = bob
        .wait_for_edit(screen.message_id, |m| {
            m.text()
                .is_some_and(|t| t.ends_with("Images: 4 · frame: the preset's"))
        })
        .await
        .unwrap();
    press(&bob, &four, &four.callback_data("9:16").unwrap().to_owned()).await;
    let tall = bob
        .wait_for_edit(screen.message_id, |m| {
            m.text()
                .is_some_and(|t| t.ends_with("Images: 4 · frame: 9:16"))
        })
        .await
        .unwrap();
    // Tapping the choice already made sends no edit Telegram would refuse as "not modified".
    let edits = app.telegram.requests_of("editMessageText").len();
    let again = press(
        &bob,
        &tall,
        &tall.callback_data("✓ 9:16").unwrap().to_owned(),
    )
    .await;
    assert_eq!(again.text, None);
    assert_eq!(app.telegram.requests_of("editMessageText").len(), edits);

    // The request FAL gets: four images in the LoRA endpoint's 9:16 size; they come as one album.
    bob.send_text("a lighthouse at dawn");
    text(&bob, "Generating an image of “Bob”").await;
    let caption = bob
        .wait_for_bot_message(|m| m.callback_data("📎 File 4").is_some())
        .await
        .expect("the buttons after the album");
    let lora = submitted(&app, "fal-ai/flux-lora");
    assert_eq!(lora.len(), 1);
    assert_eq!(lora[0]["num_images"], 4);
    assert_eq!(lora[0]["image_size"], "portrait_16_9");
    let albums = app.telegram.requests_of("sendMediaGroup");
    assert_eq!(albums.len(), 1, "one album");
    assert_eq!(nth_bot_photo(&bob, 4).await.media_group_id.is_some(), true);
    let history = app.store.history(avatar).await.unwrap();
    assert!(history.iter().any(|e| matches!(
        &e.event,
        aggregates::AvatarEvent::GenerationRequested {
            num_images: 4,
            aspect: Some(aggregates::AspectRatio::Tall),
            ..
        }
    )));

    // "File 2" sends the second image's original bytes as a document.
    press(
        &bob,
        &caption,
        &caption.callback_data("📎 File 2").unwrap().to_owned(),
    )
    .await;
    let document = bob
        .wait_for_bot_message(|m| matches!(m.content, fake_telegram::Content::Document { .. }))
        .await
        .expect("the file");
    let fake_telegram::Content::Document { document, .. } = &document.content else {
        unreachable!()
    };
    // Our copy of the image, kept once FAL's is deleted: what the bot serves.
    let images = recorded_images(&app, avatar).await;
    let key = aisha::photos::store::copy_key(avatar, &images[1].url);
    let original = crate::fal_forgets::until("our copy of the image", || async {
        app.bot_photos().get(&key).await.ok()
    })
    .await;
    assert_eq!(
        document.bytes, original,
        "the original, not a recompressed photo"
    );
    assert!(
        document.file_name.as_deref().unwrap().ends_with("-2.png")
            || document.file_name.as_deref().unwrap().ends_with("-2.jpg")
    );

    // The choice is remembered: "again" asks for four 9:16 images too.
    press(&bob, &caption, &button(&caption, "ag:")).await;
    bob.wait_for_bot_message(|m| m.callback_data("📎 File 4").is_some())
        .await
        .expect("the second album");
    let lora = submitted(&app, "fal-ai/flux-lora");
    assert_eq!(lora[1]["num_images"], 4);
    assert_eq!(lora[1]["image_size"], "portrait_16_9");
    app.shutdown().await;
}

#[tokio::test]
async fn an_avatar_is_renamed_and_a_recent_prompt_is_reused_with_one_tap() {
    rename_and_reuse(spawn_app().await).await;
}

#[sqlx::test(migrations = false)]
async fn rename_and_reuse_on_postgres(pool: sqlx::PgPool) {
    rename_and_reuse(spawn_app_on_postgres(pool, SimConfig::default()).await).await;
}

async fn rename_and_reuse(app: TestApp) {
    let anna = app.user(ANNA, "Anna", "en");
    let (_, avatar) = trained_portrait(&anna, "Old name", 100).await;

    // Rename from the card: a disguised name is refused and the step stays; a good one lands.
    let gallery = gallery_where(&anna, |page| page.contains("Old name")).await;
    let card = press_and_see(&anna, &gallery, &button(&gallery, "c:"), "Type:").await;
    press_and_see(
        &anna,
        &card,
        &button(&card, "rn:"),
        "Send the new name for “Old name”",
    )
    .await;
    anna.send_text("\u{202e}gnp.exe");
    let refused = text(&anna, "invisible character").await;
    assert!(refused.text().unwrap().contains("U+202E"), "{refused:?}");
    anna.send_text("Anna at the sea");
    let renamed = text(&anna, "The avatar is now called").await;
    assert_eq!(
        renamed.text(),
        Some("✅ The avatar is now called “Anna at the sea”.")
    );
    assert!(
        renamed.callback_data("✏️ Rename").is_some(),
        "the card's buttons"
    );
    gallery_where(&anna, |page| {
        page.contains("Anna at the sea") && !page.contains("Old name")
    })
    .await;
    let history = app.store.history(avatar).await.unwrap();
    assert_eq!(
        history
            .iter()
            .filter(|e| e.event_type == "AvatarRenamed")
            .count(),
        1
    );

    // Generate once by typing; the next prompt screen offers that prompt to reuse.
    let presets = press_and_see(&anna, &renamed, &button(&renamed, "ge:"), "Choose a preset").await;
    press_and_see(
        &anna,
        &presets,
        &button(&presets, "gp:f:"),
        "Describe the image",
    )
    .await;
    anna.send_text("a red kite over the dunes");
    nth_bot_photo(&anna, 1).await;
    let presets = press_and_see(&anna, &renamed, &button(&renamed, "ge:"), "Choose a preset").await;
    let screen = press_and_see(
        &anna,
        &presets,
        &button(&presets, "gp:q:"),
        "Describe the image",
    )
    .await;
    let reuse = screen
        .callback_data("↺ a red kite over the dunes")
        .expect("the recent prompt")
        .to_owned();
    press(&anna, &screen, &reuse).await;
    nth_bot_photo(&anna, 2).await;
    let lora = submitted(&app, "fal-ai/flux-lora");
    assert_eq!(lora.len(), 2);
    assert_eq!(lora[1]["prompt"], lora[0]["prompt"]);
    assert_eq!(
        lora[1]["num_inference_steps"], 50,
        "with the preset of this screen"
    );
    // The prompt step is over: a text now is no prompt.
    anna.send_text("not a prompt");
    text(&anna, "I didn't get that").await;
    assert_eq!(submitted(&app, "fal-ai/flux-lora").len(), 2);
    app.shutdown().await;
}

#[tokio::test]
async fn three_prompts_in_one_message_run_as_a_batch_and_one_failure_fails_no_other() {
    batch_of_three(spawn_app().await).await;
}

#[sqlx::test(migrations = false)]
async fn batch_of_three_on_postgres(pool: sqlx::PgPool) {
    batch_of_three(spawn_app_on_postgres(pool, SimConfig::default()).await).await;
}

async fn batch_of_three(app: TestApp) {
    let anna = app.user(ANNA, "Anna", "en");
    let (ready, avatar) = trained_portrait(&anna, "Anna", 120).await;
    let presets = press_and_see(&anna, &ready, &button(&ready, "ge:"), "Choose a preset").await;
    press_and_see(
        &anna,
        &presets,
        &button(&presets, "gp:f:"),
        "Describe the image",
    )
    .await;

    // FAL refuses the first of the three submissions for good.
    app.sim.fail_next(
        aisha::fal::sim::RequestKind::Submit,
        &[aisha::fal::sim::Fault::Status(422)],
    );
    anna.send_text("a cat on a roof\n\n  a dog in the snow \na bird over the sea");
    let started = text(&anna, "A batch of 3 prompts").await;
    assert_eq!(
        started.text(),
        Some("🎨 A batch of 3 prompts for “Anna” (preset “Fast”): 3 started. Each result comes as soon as it is ready.")
    );
    let done = anna
        .wait_until(|entries| {
            entries
                .iter()
                .filter(|e| matches!(e, Entry::Bot(m) if m.text().is_some_and(|t| t.contains(" of 3 ready"))))
                .count()
                >= 3
        })
        .await
        .expect("three outcomes, each with the batch's progress");
    let outcomes: Vec<String> = done
        .iter()
        .filter_map(|e| match e {
            Entry::Bot(m) => m
                .text()
                .filter(|t| t.contains(" of 3 ready"))
                .map(str::to_owned),
            _ => None,
        })
        .collect();
    let failed: Vec<&String> = outcomes
        .iter()
        .filter(|t| t.contains("could not be created"))
        .collect();
    assert_eq!(failed.len(), 1, "{outcomes:#?}");
    assert_eq!(
        outcomes.iter().filter(|t| t.contains("✨ Done!")).count(),
        2,
        "{outcomes:#?}"
    );
    assert!(
        outcomes.last().unwrap().contains("3 of 3 ready"),
        "{outcomes:#?}"
    );
    assert_eq!(count_photos_in(&done), 2, "the other two images arrived");

    // Three generations in the history, one batch, each prompt its own request to FAL.
    let history = app.store.history(avatar).await.unwrap();
    let items: Vec<(String, aggregates::BatchItem)> = history
        .iter()
        .filter_map(|e| match &e.event {
            aggregates::AvatarEvent::GenerationRequested {
                prompt,
                batch: Some(b),
                ..
            } => Some((prompt.clone(), *b)),
            _ => None,
        })
        .collect();
    assert_eq!(
        items
            .iter()
            .map(|(p, b)| (p.as_str(), b.index, b.size))
            .collect::<Vec<_>>(),
        [
            ("a cat on a roof", 0, 3),
            ("a dog in the snow", 1, 3),
            ("a bird over the sea", 2, 3)
        ]
    );
    assert!(items.iter().all(|(_, b)| b.batch_id == items[0].1.batch_id));
    let prompts: std::collections::BTreeSet<String> = submitted(&app, "fal-ai/flux-lora")
        .iter()
        .map(|body| body["prompt"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(prompts.len(), 3, "{prompts:?}");

    // Six prompts are more than one message may carry: refused, nothing asked of FAL.
    let before = submitted(&app, "fal-ai/flux-lora").len();
    let presets = press_and_see(&anna, &ready, &button(&ready, "ge:"), "Choose a preset").await;
    press_and_see(
        &anna,
        &presets,
        &button(&presets, "gp:f:"),
        "Describe the image",
    )
    .await;
    anna.send_text("1\n2\n3\n4\n5\n6");
    text(
        &anna,
        "one message can carry at most 5 prompts (one per line); this one has 6.",
    )
    .await;
    assert_eq!(submitted(&app, "fal-ai/flux-lora").len(), before);
    app.shutdown().await;
}

fn count_photos_in(entries: &[Entry]) -> usize {
    entries
        .iter()
        .filter(|e| matches!(e, Entry::Bot(m) if m.photo().is_some()))
        .count()
}

/// A sharp pattern (squares of `square` pixels with hard edges), then blurred hard, as a JPEG.
fn blurry_jpeg(square: u32) -> Bytes {
    let sharp = image::RgbImage::from_fn(640, 640, |x, y| {
        let on = ((x / square) + (y / square)) % 2 == 0;
        let v = if on { 200 } else { 40 };
        image::Rgb([v, (v / 2).wrapping_add((x % 7) as u8), 255 - v])
    });
    let blurred = image::imageops::blur(&sharp, 8.0);
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(blurred)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    Bytes::from(out.into_inner())
}

#[tokio::test]
async fn a_blurry_photo_is_accepted_with_advice_and_a_good_one_without() {
    blurry_photos(spawn_app().await).await;
}

#[sqlx::test(migrations = false)]
async fn a_blurry_photo_is_accepted_with_advice_on_postgres(pool: sqlx::PgPool) {
    blurry_photos(spawn_app_on_postgres(pool, SimConfig::default()).await).await;
}

async fn blurry_photos(app: TestApp) {
    let anna = app.user(ANNA, "Anna", "en");
    create_avatar(&anna, "p", "f", "Anna", "is created").await;
    anna.send_photo(blurry_jpeg(40));
    let accepted = text(&anna, "Photo accepted: 1 of 10–20").await;
    assert_eq!(
        accepted.text(),
        Some("✅ Photo accepted: 1 of 10–20. Send more.\n💡 Tip: the photo looks blurry — a face in focus trains better. You can remove it and send another.")
    );
    assert!(accepted.callback_data("↩️ Remove this photo").is_some());
    anna.send_photo(photo(7));
    let good = text(&anna, "Photo accepted: 2 of 10–20").await;
    assert_eq!(
        good.text(),
        Some("✅ Photo accepted: 2 of 10–20. Send more.")
    );

    // In an album the advice comes once, in its summary, counted per kind.
    let mut album: Vec<Bytes> = (20..23).map(photo).collect();
    album.insert(1, blurry_jpeg(32));
    album.push(blurry_jpeg(50));
    anna.send_album(album);
    let summary = text(&anna, "Album processed").await;
    assert!(
        summary
            .text()
            .unwrap()
            .ends_with("\n💡 Tip on this album's photos: 2 blurry. Sharp daylight photos instead would train better."),
        "{summary:?}"
    );
    app.shutdown().await;
}
