//! What the bot offers beyond a typed prompt, end to end over the fake Bot API and the FAL
//! simulator, on both databases: sample pictures when a training completes, a pack run as a
//! batch, an upscale sent as a file, the main avatar, and each frame on both generators — each
//! checked against the exact request FAL received.

use aggregates::{AvatarEvent, Origin, UpscaleFactor};
use aisha::bot::callbacks::Callback;
use fake_telegram::{Content, FakeUser};
use serde_json::Value;
use uuid::Uuid;

use crate::bot::{
    import_pro_finetune_avatar, nth_bot_photo, recorded_images, submitted, trained_portrait,
    IMPORTED_FINETUNE,
};
use crate::steps::{button, press, press_and_see, text};
use crate::support::{postgres_url, spawn_app_with, TestApp, TestAppSettings};

const ANNA: i64 = 4001;
const SAMPLES: u32 = 2;

fn with_samples(database_url: Option<String>) -> TestAppSettings {
    TestAppSettings {
        starter_images: SAMPLES,
        database_url,
        ..TestAppSettings::default()
    }
}

#[tokio::test]
async fn samples_a_pack_an_upscale_and_the_main_avatar_on_sqlite() {
    studio_story(spawn_app_with(with_samples(None)).await).await;
}

#[sqlx::test(migrations = false)]
async fn samples_a_pack_an_upscale_and_the_main_avatar_on_postgres(pool: sqlx::PgPool) {
    studio_story(spawn_app_with(with_samples(Some(postgres_url(&pool)))).await).await;
}

/// The origins the avatar's history recorded, in order.
async fn origins(app: &TestApp, avatar: Uuid) -> Vec<Option<Origin>> {
    app.store
        .history(avatar)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            AvatarEvent::GenerationRequested { origin, .. } => Some(origin),
            _ => None,
        })
        .collect()
}

async fn studio_story(app: TestApp) {
    let anna = app.user(ANNA, "Anna", "en");
    let (ready, avatar) = trained_portrait(&anna, "Anna", 120).await;

    // "Ready" says samples are coming; two arrive from the portrait starter pack, each one
    // picture of a woman, captioned as samples with the batch's count.
    assert!(
        ready
            .text()
            .unwrap()
            .contains("making your first 2 pictures"),
        "{ready:?}"
    );
    let second = nth_bot_photo(&anna, 2).await;
    assert!(second.text().unwrap().contains("A first picture of “Anna”"));
    assert!(second.text().unwrap().contains("of 2"), "{second:?}");
    let lora = submitted(&app, "fal-ai/flux-lora");
    assert_eq!(lora.len(), SAMPLES as usize);
    for body in &lora {
        assert_eq!(body["num_images"], 1);
        assert!(body["prompt"].as_str().unwrap().contains("woman"), "{body}");
        assert!(body["prompt"].as_str().unwrap().starts_with("PERSON_"));
    }
    let starter = Some(Origin::Starter {
        pack: "starter-portrait".into(),
    });
    assert_eq!(origins(&app, avatar).await, vec![starter.clone(), starter]);

    // A pack from the "ready" message: the business headshots, four scenes in 3:4, one
    // picture each, every one recorded with its pack.
    let packs = press_and_see(&anna, &ready, &button(&ready, "pk:"), "Packs for “Anna”").await;
    let business = aisha::packs::tag_of("portrait-business");
    let pack = press_and_see(
        &anna,
        &packs,
        &Callback::Pack {
            avatar,
            pack: business,
        }
        .encode(),
        "Business headshots",
    )
    .await;
    assert!(pack.text().unwrap().contains("Pictures: 4"));
    // A double tap is one run: the second asks for the same generations and is refused.
    let run = button(&pack, "px:");
    let taps = [
        anna.press_button(pack.message_id, &run).unwrap(),
        anna.press_button(pack.message_id, &run).unwrap(),
    ];
    for tap in &taps {
        anna.wait_for_callback_answer(tap).await.unwrap();
    }
    anna.wait_for_edit(pack.message_id, |m| {
        m.text().is_some_and(|t| t.contains("4 of 4 started"))
    })
    .await
    .unwrap();
    let last = nth_bot_photo(&anna, 2 + 4).await;
    let lora = submitted(&app, "fal-ai/flux-lora");
    assert_eq!(lora.len(), 2 + 4);
    for body in &lora[2..] {
        assert_eq!(body["num_images"], 1);
        assert_eq!(body["image_size"], "portrait_4_3", "the pack's 3:4");
        assert_eq!(
            body["num_inference_steps"], 35,
            "the pack's portrait preset"
        );
    }
    // Submitted side by side, so in any order.
    assert!(lora[2..].iter().any(|b| b["prompt"]
        .as_str()
        .unwrap()
        .contains("professional headshot of a woman in a navy suit")));
    let recorded = origins(&app, avatar).await;
    assert_eq!(
        recorded[2..],
        vec![
            Some(Origin::Pack {
                pack: "portrait-business".into()
            });
            4
        ]
    );

    // The last picture, four times larger: FAL's upscaler gets exactly that image, and the
    // result comes as a file four times the size.
    let generation = match Callback::parse(&button(&last, "af:")).unwrap() {
        Callback::AsFile { generation, .. } => generation,
        other => panic!("{other:?}"),
    };
    press(&anna, &last, &button(&last, "up:")).await;
    let factors = text(&anna, "How much larger").await;
    let times_four = button(&factors, "ux:0:4:");
    let taps = [
        anna.press_button(factors.message_id, &times_four).unwrap(),
        anna.press_button(factors.message_id, &times_four).unwrap(),
    ];
    for tap in &taps {
        anna.wait_for_callback_answer(tap).await.unwrap();
    }
    anna.wait_for_edit(factors.message_id, |m| {
        m.text().is_some_and(|t| t.contains("Upscaling ×4"))
    })
    .await
    .unwrap();
    let file = anna
        .wait_for_bot_message(|m| matches!(m.content, Content::Document { .. }))
        .await
        .expect("the upscaled file");
    let upscales = submitted(&app, "fal-ai/seedvr/upscale/image");
    assert_eq!(upscales.len(), 1, "two taps, one upscale");
    let requested = |app: &TestApp| {
        let app = app.store.clone();
        async move {
            app.history(avatar)
                .await
                .unwrap()
                .iter()
                .filter(|e| matches!(e.event, AvatarEvent::GenerationRequested { .. }))
                .count()
        }
    };
    assert_eq!(
        requested(&app).await,
        2 + 4 + 1,
        "samples, one pack run, one upscale"
    );
    let source = recorded_images(&app, avatar).await;
    let history = app.store.history(avatar).await.unwrap();
    let source_url = history
        .iter()
        .find_map(|e| match &e.event {
            AvatarEvent::GenerationCompleted {
                generation_id,
                images,
                ..
            } if *generation_id == generation => Some(images[0].url.clone()),
            _ => None,
        })
        .unwrap();
    // FAL gets our copy of that image by a signed URL of ours (its own copy is deleted once
    // ours is made).
    let sent = upscales[0]["image_url"].as_str().unwrap().to_owned();
    let ours = format!(
        "{}/fal-inputs/{}?",
        app.http,
        aisha::photos::store::copy_key(avatar, &source_url)
    );
    assert!(sent.starts_with(&ours), "{sent}");
    assert_eq!(
        upscales[0],
        serde_json::json!({"image_url": sent, "upscale_mode": "factor", "upscale_factor": 4.0})
    );
    let Content::Document { document, caption } = &file.content else {
        unreachable!()
    };
    let upscaled = image::load_from_memory(&document.bytes).expect("a real image");
    let original = reqwest::get(&sent).await.unwrap().bytes().await.unwrap();
    let original = image::load_from_memory(&original).unwrap();
    assert_eq!(upscaled.width(), original.width() * 4);
    assert_eq!(upscaled.height(), original.height() * 4);
    assert!(
        caption.as_deref().unwrap().contains("upscaled ×4"),
        "{caption:?}"
    );
    assert_eq!(
        source[0].width,
        Some(upscaled.width()),
        "the recorded result"
    );
    assert!(history.iter().any(|e| matches!(
        &e.event,
        AvatarEvent::GenerationRequested {
            origin: Some(Origin::Upscale { of, image: 0, factor: UpscaleFactor::X4 }),
            ..
        } if *of == generation
    )));

    // The main avatar: made main on its card, "Generate" from the menu goes straight to it,
    // with a way to the others.
    anna.send_command("/avatars");
    let gallery = text(&anna, "🖼").await;
    let card = press_and_see(&anna, &gallery, &Callback::Card(avatar).encode(), "Type:").await;
    let answer = press(&anna, &card, &Callback::MakeMain(avatar).encode()).await;
    assert_eq!(
        answer.text.as_deref(),
        Some("⭐ “Anna” is now your main avatar")
    );
    let card = anna
        .wait_for_edit(card.message_id, |m| {
            m.text().is_some_and(|t| t.contains("⭐ Main avatar"))
        })
        .await
        .unwrap();
    assert!(card.callback_data("⭐ Make main").is_none());
    anna.send_command("/start");
    let menu = text(&anna, "Hi, Anna!").await;
    let presets = press_and_see(&anna, &menu, "gm", "Choose a preset").await;
    assert!(presets.text().unwrap().contains("“Anna”"));
    press_and_see(&anna, &presets, "ga", "Choose an avatar").await;
    app.shutdown().await;
}

#[tokio::test]
async fn each_frame_reaches_each_generator_as_its_own_field() {
    frames_on_both_generators(spawn_app_with(TestAppSettings::default()).await).await;
}

#[sqlx::test(migrations = false)]
async fn each_frame_reaches_each_generator_as_its_own_field_on_postgres(pool: sqlx::PgPool) {
    let settings = TestAppSettings {
        database_url: Some(postgres_url(&pool)),
        ..TestAppSettings::default()
    };
    frames_on_both_generators(spawn_app_with(settings).await).await;
}

/// Chooses `ratio` on the prompt screen of `avatar` (preset `preset_code`), sends a prompt and
/// returns the body FAL got for it from `endpoint`.
async fn generate_framed(
    app: &TestApp,
    user: &FakeUser,
    avatar: Uuid,
    preset_code: &str,
    ratio: &str,
    endpoint: &str,
) -> Value {
    let before = submitted(app, endpoint).len();
    // The gallery is a read model: an avatar just imported may take a moment to be listed.
    let card_button = Callback::Card(avatar).encode();
    let mut gallery = None;
    for _ in 0..100 {
        user.send_command("/avatars");
        let page = text(user, "🖼").await;
        if page
            .buttons()
            .any(|b| b.callback_data.as_deref() == Some(card_button.as_str()))
        {
            gallery = Some(page);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let gallery = gallery.expect("the gallery lists the avatar");
    let card = press_and_see(user, &gallery, &card_button, "Type:").await;
    let presets = press_and_see(user, &card, &button(&card, "ge:"), "Choose a preset").await;
    let screen = press_and_see(
        user,
        &presets,
        &button(&presets, &format!("gp:{preset_code}:")),
        "Describe the image",
    )
    .await;
    if let Some(data) = screen.callback_data(ratio) {
        let data = data.to_owned();
        press(user, &screen, &data).await;
        user.wait_for_edit(screen.message_id, |m| {
            m.text()
                .is_some_and(|t| t.ends_with(&format!("frame: {ratio}")))
        })
        .await
        .unwrap();
    }
    let results = crate::steps::count_bot_texts(user, "Done!");
    user.send_text(&format!("a harbour, framed {ratio}"));
    for _ in 0..200 {
        let bodies = submitted(app, endpoint);
        if bodies.len() > before {
            // One at a time: the next request must not meet the waiting-generations quota.
            user.wait_until(|entries| {
                entries
                    .iter()
                    .filter(|e| {
                        matches!(e, fake_telegram::Entry::Bot(m)
                        if m.text().is_some_and(|t| t.contains("Done!")))
                    })
                    .count()
                    > results
            })
            .await
            .expect("the result arrives");
            return bodies[before].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let chat = user.render_transcript();
    let lines: Vec<&str> = chat.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    panic!("no request to {endpoint} for {ratio}; the chat ends:\n{tail}");
}

async fn frames_on_both_generators(app: TestApp) {
    let anna = app.user(ANNA, "Anna", "en");
    let (_, portrait) = trained_portrait(&anna, "Anna", 140).await;
    app.sim.import_finetune(IMPORTED_FINETUNE);
    let style = import_pro_finetune_avatar(&app, ANNA, "Watercolour").await;
    let cases = [
        ("1:1", "square_hd"),
        ("3:4", "portrait_4_3"),
        ("9:16", "portrait_16_9"),
        ("4:3", "landscape_4_3"),
        ("16:9", "landscape_16_9"),
    ];
    for (ratio, image_size) in cases {
        let lora = generate_framed(&app, &anna, portrait, "b", ratio, "fal-ai/flux-lora").await;
        assert_eq!(
            lora["image_size"], image_size,
            "{ratio} on the LoRA endpoint"
        );
        let ultra = generate_framed(
            &app,
            &anna,
            style,
            "b",
            ratio,
            "fal-ai/flux-pro/v1.1-ultra-finetuned",
        )
        .await;
        assert_eq!(
            ultra["aspect_ratio"], ratio,
            "{ratio} on the ultra endpoint"
        );
        assert!(ultra.get("image_size").is_none());
    }
    app.shutdown().await;
}
