//! Photo intake under pressure, through the real application: a flood of huge images that
//! would each need ~200 MB decoded is refused from the header with a clear reason, and two
//! deliveries of one photo racing each other leave exactly one recorded photo whose bytes are
//! still stored (the refused one deletes nothing it did not create).

use std::io::Cursor;

use aggregates::avatar::MIN_PHOTOS;
use aisha::bot::photos::{IncomingFile, Intake, Refusal};
use aisha::bot::texts::Lang;
use aisha::photos::check::{decode_budget_in_use, MAX_DECODE_PIXELS};
use aisha::photos::{verify_archive, PhotoStore, TrainingArchive};
use aisha::store::Database;
use bytes::Bytes;
use fake_telegram::FakeUser;
use image::{ImageBuffer, Rgb};
use sha2::{Digest, Sha256};
use teloxide::types::FileId;
use uuid::Uuid;

use crate::steps::{photo, press_and_see, text};
use crate::support::{files_under, spawn_app, TestApp, BOT_TOKEN};

/// The image: 16384×3051 of one colour, a small PNG that decodes to ~150–200 MB.
fn huge_plain_png() -> Bytes {
    let pixels = ImageBuffer::from_pixel(16_384, 3_051, Rgb([200u8, 120, 40]));
    let mut out = Cursor::new(Vec::new());
    pixels
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode");
    Bytes::from(out.into_inner())
}

/// The next bot message's text (updates of one chat are handled in order).
async fn reply(user: &FakeUser) -> String {
    let message = user
        .next_bot_message()
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", user.render_transcript()));
    message.text().expect("a text reply").to_owned()
}

/// `/new` → type → gender → name, in any language; returns after "created".
async fn create_avatar(user: &FakeUser, name: &str) {
    user.send_command("/new");
    let types = text(user, "🎯").await;
    let genders = press_and_see(user, &types, "t:p", "👤").await;
    press_and_see(user, &genders, "g:p:f", "📝").await;
    user.send_text(name);
    let created = reply(user).await;
    assert!(created.starts_with('✅'), "{created}");
}

/// Every avatar created so far, oldest first.
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

#[tokio::test]
async fn eight_huge_pngs_at_once_are_each_refused_from_the_header_with_the_reason() {
    let app = spawn_app().await;
    let png = huge_plain_png();
    assert!(
        png.len() < 1024 * 1024,
        "the PNG is small: {} bytes",
        png.len()
    );
    let users: Vec<FakeUser> = (0..8)
        .map(|n| {
            let lang = if n % 2 == 0 { "en" } else { "ru" };
            app.user(7300 + n, &format!("User{n}"), lang)
        })
        .collect();
    futures::future::join_all(
        users
            .iter()
            .enumerate()
            .map(|(n, u)| create_avatar(u, if n % 2 == 0 { "Big" } else { "Большой" })),
    )
    .await;
    let avatars = created_avatars(&app).await;
    assert_eq!(avatars.len(), 8);

    // All eight at once, as uncompressed files (Telegram would shrink a "photo" to 2560 px).
    for user in &users {
        user.send_document(png.clone(), "huge.png", "image/png");
    }
    let replies = futures::future::join_all(users.iter().map(reply)).await;
    let en = "❌ Photo not accepted: the image is too large: 16384×3051, at most 25 megapixels. \
              Make it smaller or send it as a photo rather than a file.\nUploaded: 0 of 10–20.";
    let ru = "❌ Фото не принято: слишком большое изображение: 16384×3051, максимум 25 \
              мегапикселей. Уменьшите его или отправьте как фото, а не файлом.\nЗагружено: 0 \
              из 10–20.";
    for (n, got) in replies.iter().enumerate() {
        let want = if n % 2 == 0 { en } else { ru };
        assert_eq!(got, want, "user {n}");
    }
    assert_eq!(MAX_DECODE_PIXELS, 25_000_000);
    // Refused from the header: no decode took any of the budget, nothing was recorded.
    assert_eq!(decode_budget_in_use(), 0);
    for avatar in avatars {
        assert!(app.store.load(avatar).await.unwrap().photos.is_empty());
        assert_eq!(app.store.history(avatar).await.unwrap().len(), 1);
    }
    app.shutdown().await;
}

#[tokio::test]
async fn the_same_photo_delivered_twice_at_once_is_kept_once_with_its_bytes() {
    let app = spawn_app().await;
    let anna = app.user(7401, "Anna", "en");
    // The files reach the fake Bot API while no avatar takes photos (the bot only says so), so
    // that intake below can be driven by hand, twice at once with the very same file.
    let the_photo = anna.send_photo(photo(1));
    assert!(reply(&anna)
        .await
        .starts_with("📸 I'm not collecting photos"));
    let others = anna.send_album((2..=MIN_PHOTOS as u8).map(photo).collect());
    assert!(reply(&anna)
        .await
        .starts_with("📸 I'm not collecting photos"));
    let incoming = |message_id: i32| {
        let size = anna
            .message(message_id)
            .and_then(|m| m.photo().cloned())
            .expect("a photo message");
        IncomingFile {
            file_id: FileId(size.file_id),
            unique_id: size.file_unique_id,
            size: Some(size.bytes.len() as u64),
        }
    };
    create_avatar(&anna, "Twice").await;
    let avatar = created_avatars(&app).await[0];

    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("photos");
    let photos = PhotoStore::local(&root).expect("photo store");
    let downloader = teloxide::Bot::new(BOT_TOKEN).set_api_url(app.telegram.api_url());
    let intake = Intake {
        downloader: &downloader,
        store: &app.store,
        photos: &photos,
    };
    let file = incoming(the_photo);
    let (first, second) = tokio::join!(
        intake.take(7401, avatar, &file),
        intake.take(7401, avatar, &file)
    );
    let (accepted, refused) = match (&first.outcome, &second.outcome) {
        (Ok(()), Err(refusal)) => (&first, refusal),
        (Err(refusal), Ok(())) => (&second, refusal),
        other => panic!("expected one accepted and one refused: {other:?}"),
    };
    assert_eq!(accepted.count, 1);
    assert!(matches!(
        refused,
        Refusal::Avatar(aggregates::AvatarError::DuplicatePhoto { .. })
    ));
    let t = Lang::En.texts();
    assert_eq!(
        t.photo_refused(&refused.sentence(t), 1),
        "❌ Photo not accepted: this photo was already uploaded.\nUploaded: 1 of 10–20."
    );

    // Exactly one photo recorded, and exactly its bytes in the store.
    let state = app.store.load(avatar).await.unwrap();
    assert_eq!(state.photos.len(), 1);
    let recorded = &state.photos[0];
    let stored = files_under(&root);
    assert_eq!(
        stored,
        vec![recorded.storage_key.clone()],
        "what the store holds"
    );
    let bytes = std::fs::read(root.join(&recorded.storage_key)).expect("the accepted bytes");
    assert_eq!(hex::encode(Sha256::digest(&bytes)), recorded.content_hash);
    assert_eq!(Bytes::from(bytes), photo(1));

    // A later delivery of the same photo is refused with the same words and changes nothing.
    let again = intake.take(7401, avatar, &file).await;
    assert!(matches!(
        &again.outcome,
        Err(Refusal::Avatar(
            aggregates::AvatarError::DuplicatePhoto { .. }
        ))
    ));
    assert_eq!(files_under(&root), stored);
    assert_eq!(app.store.load(avatar).await.unwrap().photos.len(), 1);

    // The rest of the photos, and the avatar can train: every photo's bytes are there, intact.
    for id in others {
        let result = intake.take(7401, avatar, &incoming(id)).await;
        assert!(result.outcome.is_ok(), "{:?}", result.outcome);
    }
    let state = app.store.load(avatar).await.unwrap();
    assert_eq!(state.photos.len(), MIN_PHOTOS);
    let archive = TrainingArchive::build_in(&photos, &state.photos, dir.path())
        .await
        .expect("the training archive builds from the stored photos");
    let path = archive.path().to_path_buf();
    let entries = tokio::task::spawn_blocking(move || verify_archive(&path))
        .await
        .unwrap()
        .expect("the archive verifies");
    assert_eq!(entries, MIN_PHOTOS);
    app.shutdown().await;
}
