//! Training photos expire (`TRAINING_PHOTO_RETENTION_DAYS`): a set time after a training
//! succeeds its photos leave the photo store — the folder or an S3 bucket — the deletion is
//! recorded once in the avatar's history, even with two sweepers at once, and the model still
//! generates.

use std::time::Duration;

use aggregates::{AvatarEvent, AvatarStatus, TrainingPreset};
use aisha::actors::retention;
use aisha::app::{AppOptions, Application};
use aisha::bot::callbacks::Callback;
use fake_telegram::{Entry, FakeUser};
use uuid::Uuid;

use crate::steps::{avatar_of, button, gallery_where, press_and_see, text, train, upload_album};
use crate::support::s3::S3Bucket;
use crate::support::{postgres_url, spawn_app_with, TestApp, TestAppSettings};

/// Waits until `check` holds, up to twenty seconds.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 20 s");
}

/// Photos kept one second after training: the sweeper removes them at its next pass.
fn short_retention(database_url: Option<String>) -> TestAppSettings {
    TestAppSettings {
        database_url,
        training_photo_retention: Some(Duration::from_secs(1)),
        ..TestAppSettings::default()
    }
}

/// Photos kept: only the test's own sweepers delete them.
fn kept(database_url: Option<String>) -> TestAppSettings {
    TestAppSettings {
        database_url,
        training_photo_retention: None,
        ..TestAppSettings::default()
    }
}

/// The `TrainingPhotosDeleted` events of an avatar, as photo keys.
async fn deletions(app: &TestApp, avatar: Uuid) -> Vec<Vec<String>> {
    app.store
        .history(avatar)
        .await
        .expect("history")
        .into_iter()
        .filter_map(|entry| match entry.event {
            AvatarEvent::TrainingPhotosDeleted { photo_keys, .. } => Some(photo_keys),
            _ => None,
        })
        .collect()
}

/// The storage keys the avatar's training was started with.
async fn trained_on(app: &TestApp, avatar: Uuid) -> Vec<String> {
    app.store
        .history(avatar)
        .await
        .expect("history")
        .into_iter()
        .find_map(|entry| match entry.event {
            AvatarEvent::TrainingStarted { photo_keys, .. } => Some(photo_keys),
            _ => None,
        })
        .expect("a training was started")
}

/// What is left in the folder store of the avatar's photos `keys` and of its training archives.
fn photos_left(app: &TestApp, avatar: Uuid, keys: &[String]) -> Vec<String> {
    let archives = format!("{}/", aisha::photos::store::archives_prefix(avatar));
    app.stored_photo_files()
        .into_iter()
        .filter(|file| keys.contains(file) || file.starts_with(&archives))
        .collect()
}

/// Sam creates a portrait, uploads ten photos and trains it; returns the avatar and the
/// upload screen's text.
async fn trained_portrait(user: &FakeUser, name: &str, seed: u8) -> (Uuid, String) {
    user.send_command("/new");
    let types = text(user, "avatar type").await;
    let genders = press_and_see(user, &types, "t:p", "gender").await;
    press_and_see(user, &genders, "g:p:m", "call the avatar").await;
    user.send_text(name);
    let created = text(user, "is created").await;
    let album = upload_album(user, seed, "Uploaded: 10 of 10–20").await;
    let avatar = avatar_of(&button(&album, "tr:"));
    train(
        user,
        &album,
        TrainingPreset::Fast,
        "3–15 minutes",
        "is ready!",
    )
    .await;
    (avatar, created.text().unwrap_or_default().to_owned())
}

/// From the gallery, one prompt on the balanced preset, until its images arrive.
async fn generates(user: &FakeUser, avatar: Uuid) {
    let card_button = Callback::Card(avatar).encode();
    let gallery = gallery_where(user, |page| page.contains("✅ Ready")).await;
    let card = press_and_see(user, &gallery, &card_button, "Type:").await;
    let presets = press_and_see(user, &card, &button(&card, "ge:"), "Choose a preset").await;
    press_and_see(
        user,
        &presets,
        &button(&presets, "gp:b:"),
        "Describe the image",
    )
    .await;
    user.send_text("a lighthouse at dawn");
    user.wait_until(|entries| {
        entries
            .iter()
            .any(|e| matches!(e, Entry::Bot(m) if m.text().is_some_and(|t| t.contains("Done!"))))
    })
    .await
    .expect("the images arrive");
}

async fn photos_expire_after_a_successful_training(app: TestApp) {
    // Given an upload screen that says when the photos go
    let sam = app.user(5101, "Sam", "en");
    let (avatar, upload_screen) = trained_portrait(&sam, "Sam expiring", 80).await;
    assert!(
        upload_screen.contains("they are deleted as soon as it succeeds"),
        "{upload_screen}"
    );
    let keys = trained_on(&app, avatar).await;
    assert_eq!(keys.len(), 10);

    // When the retention has passed, the photos (and any archive of them) leave the store
    until("the photos leaving the folder", || async {
        photos_left(&app, avatar, &keys).is_empty()
    })
    .await;

    // Then the deletion is on record, once, naming every photo trained on
    until("the deletion being recorded", || async {
        !deletions(&app, avatar).await.is_empty()
    })
    .await;
    assert_eq!(deletions(&app, avatar).await, vec![keys]);
    let state = app.store.load(avatar).await.expect("load");
    assert_eq!(state.status, AvatarStatus::Trained);
    assert!(state.photos.is_empty());
    // The card counts no photos once the read model has caught up; sweeps after that find
    // nothing to do, and the history still holds the one deletion.
    gallery_where(&sam, |page| {
        page.contains("Sam expiring — ✅ Ready, 0 photos")
    })
    .await;
    assert_eq!(deletions(&app, avatar).await.len(), 1);

    // And the model still generates
    generates(&sam, avatar).await;
    assert_eq!(deletions(&app, avatar).await.len(), 1);
    app.shutdown().await;
}

async fn two_sweepers_at_once_record_the_deletion_once(app: TestApp) {
    // Given a trained avatar whose photos the running instance keeps
    let sam = app.user(5102, "Sam", "en");
    let (avatar, upload_screen) = trained_portrait(&sam, "Sam twice", 90).await;
    assert!(
        upload_screen.contains("kept until you delete the avatar"),
        "{upload_screen}"
    );
    gallery_where(&sam, |page| {
        page.contains("Sam twice — ✅ Ready, 10 photos")
    })
    .await;
    let keys = trained_on(&app, avatar).await;
    let left = photos_left(&app, avatar, &keys);
    assert!(keys.iter().all(|key| left.contains(key)), "{left:?}");

    // When two more instances on the same database and photos sweep at the same moment
    let instance = || async {
        Application::build(app.config().clone(), AppOptions::default())
            .await
            .expect("another instance")
    };
    let (first, second) = (instance().await, instance().await);
    let (a, b) = tokio::join!(
        retention::sweep(&first.services, Duration::ZERO),
        retention::sweep(&second.services, Duration::ZERO),
    );

    // Then one of them recorded the deletion, and the photos are gone
    let (a, b) = (a.expect("first sweep"), b.expect("second sweep"));
    assert_eq!(a + b, 1, "recorded {a} + {b} times");
    assert_eq!(deletions(&app, avatar).await, vec![keys.clone()]);
    assert_eq!(photos_left(&app, avatar, &keys), Vec::<String>::new());
    // A later sweep finds nothing left to do.
    assert_eq!(
        retention::sweep(&first.services, Duration::ZERO)
            .await
            .expect("a later sweep"),
        0
    );
    assert_eq!(deletions(&app, avatar).await.len(), 1);
    drop((first, second));

    // And the model still generates
    generates(&sam, avatar).await;
    app.shutdown().await;
}

on_both_backends_with_app! {
    photos_expire_after_a_successful_training => short_retention,
    two_sweepers_at_once_record_the_deletion_once => kept,
}

#[tokio::test]
async fn photos_in_an_s3_bucket_expire_too_and_their_addresses_answer_not_found() {
    // Given the application on STORAGE_URL=s3://BUCKET/aisha with photos kept for a second
    let bucket = S3Bucket::fresh().await;
    let app = spawn_app_with(TestAppSettings {
        s3_photos: Some(bucket.photos("aisha")),
        ..short_retention(None)
    })
    .await;
    let sam = app.user(5103, "Sam", "en");

    // When a training succeeds
    let (avatar, _) = trained_portrait(&sam, "Sam in a bucket", 100).await;
    let keys = trained_on(&app, avatar).await;

    // Then the photos leave the bucket, every photo's address answers 404, and it is on record
    let archives = format!("aisha/{}/", aisha::photos::store::archives_prefix(avatar));
    until("the photos leaving the bucket", || async {
        !bucket.object_names().await.iter().any(|name| {
            name.starts_with(&archives) || keys.iter().any(|key| name == &format!("aisha/{key}"))
        })
    })
    .await;
    for key in &keys {
        assert_eq!(
            bucket.status_of(&format!("aisha/{key}")).await,
            404,
            "{key}"
        );
    }
    until("the deletion being recorded", || async {
        !deletions(&app, avatar).await.is_empty()
    })
    .await;
    assert_eq!(deletions(&app, avatar).await, vec![keys]);
    generates(&sam, avatar).await;
    app.shutdown().await;
}
