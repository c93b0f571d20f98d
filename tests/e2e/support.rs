//! Shared test fixtures: fresh databases and avatars in a known state.

#![allow(dead_code)]

use aggregates::{Action, Actor, AvatarType, Command, Gender, ImageFormat, PhotoMeta, TrainingOutput, TrainingPreset};
use aisha::store::{AvatarStore, Database};
use chrono::Utc;
use tempfile::TempDir;
use uuid::Uuid;

pub const OWNER: i64 = 4242;

/// A fresh SQLite database in its own temporary folder (kept alive by the returned guard).
pub async fn sqlite() -> (Database, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Database::connect(&sqlite_url(&dir)).await.expect("open sqlite");
    db.migrate().await.expect("migrate sqlite");
    (db, dir)
}

pub fn sqlite_url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("aisha.db").display())
}

pub fn by_owner(action: Action) -> Command {
    Command::new(Actor::User(OWNER), Utc::now(), action)
}

pub fn by_system(action: Action) -> Command {
    Command::new(Actor::System("test".into()), Utc::now(), action)
}

pub fn photo(n: usize) -> PhotoMeta {
    PhotoMeta {
        photo_id: format!("photo-{n}"),
        content_hash: format!("{n:064x}"),
        byte_size: 50_000,
        width: 768,
        height: 1024,
        format: ImageFormat::Jpeg,
        storage_key: format!("photos/{n}.jpg"),
    }
}

pub async fn run(store: &AvatarStore, id: Uuid, command: Command) {
    let name = command.name();
    store
        .execute(id, command, Uuid::new_v4())
        .await
        .unwrap_or_else(|e| panic!("{name} failed: {e}"));
}

/// Creates a portrait avatar with `photos` photos.
pub async fn avatar_with_photos(store: &AvatarStore, photos: usize) -> Uuid {
    let id = Uuid::new_v4();
    run(
        store,
        id,
        by_owner(Action::Create {
            avatar_id: id,
            name: "Тест".into(),
            gender: Gender::Male,
            avatar_type: AvatarType::Portrait,
        }),
    )
    .await;
    for n in 1..=photos {
        run(store, id, by_owner(Action::UploadPhoto { photo: photo(n) })).await;
    }
    id
}

/// Creates a trained portrait avatar.
pub async fn trained_avatar(store: &AvatarStore) -> Uuid {
    let id = avatar_with_photos(store, 10).await;
    run(
        store,
        id,
        by_owner(Action::StartTraining {
            preset: TrainingPreset::Fast,
        }),
    )
    .await;
    run(
        store,
        id,
        by_system(Action::RecordTrainingSubmission {
            request_id: format!("req-{id}"),
            endpoint: "fal-ai/flux-lora-portrait-trainer".into(),
            status_url: "http://fal/status".into(),
            response_url: "http://fal/response".into(),
            cancel_url: "http://fal/cancel".into(),
            archive_url: "http://fal/files/photos.zip".into(),
        }),
    )
    .await;
    run(
        store,
        id,
        by_system(Action::CompleteTraining {
            request_id: format!("req-{id}"),
            output: TrainingOutput {
                lora_file_url: Some("http://fal/files/lora.safetensors".into()),
                config_file_url: None,
                finetune_id: None,
            },
        }),
    )
    .await;
    id
}

/// Adds `n` generation requests (each one event) to a trained avatar.
pub async fn generate_many(store: &AvatarStore, id: Uuid, n: usize) {
    for _ in 0..n {
        run(
            store,
            id,
            by_owner(Action::Generate {
                generation_id: Uuid::new_v4(),
                prompt: "a portrait in the rain".into(),
                preset: None,
                num_images: 1,
            }),
        )
        .await;
    }
}
