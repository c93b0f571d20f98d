//! Training photos expire: `TRAINING_PHOTO_RETENTION_DAYS` after a training succeeds, the
//! photos it trained on (and any training archive of them) are removed from the photo store,
//! then the removal is recorded on the
//! avatar (`TrainingPhotosDeleted`). The sweeper finds them in the gallery read model (trained,
//! photos left, trained before the cutoff), so a crash, a restart or a changed setting loses
//! nothing; every instance sweeps, and the avatar records the removal once.

use std::time::Duration;

use aggregates::{Action, Actor, AvatarStatus, Command};
use chrono::Utc;
use uuid::Uuid;

use super::Services;
use crate::photos::StorageError;
use crate::store::StoreError;
use crate::telemetry;

/// Training photos are kept this long after a successful training unless configured.
pub const DEFAULT_PHOTO_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// Most avatars handled in one sweep; the rest follow in the next.
const SWEEP_LIMIT: i64 = 100;

/// Why one avatar's photos could not be expired now; the next sweep tries again.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("photo store: {0}")]
    Storage(#[from] StorageError),
}

/// Runs until the task is dropped; with no retention set (`off`) it never deletes anything.
pub async fn run(s: Services) {
    let Some(retention) = s.settings.training_photo_retention else {
        tracing::info!("training photos are kept until their avatar is deleted (TRAINING_PHOTO_RETENTION_DAYS=off)");
        return;
    };
    loop {
        if let Err(e) = sweep(&s, retention).await {
            tracing::warn!(error = %telemetry::chain(&e), "photo retention sweep failed; will try again");
        }
        tokio::time::sleep(s.settings.deadline_sweep_every).await;
    }
}

/// One pass: every avatar trained more than `retention` ago that still holds photos loses
/// them. Returns how many avatars' photos this pass removed and recorded.
pub async fn sweep(s: &Services, retention: Duration) -> Result<usize, StoreError> {
    let cutoff = Utc::now()
        - chrono::Duration::from_std(retention).unwrap_or_else(|_| chrono::Duration::days(36_500));
    let due = {
        let mut conn = s.store.database().acquire().await?;
        let mut tx = conn.tx();
        projections::gallery::trained_with_photos_before(&mut tx, cutoff, SWEEP_LIMIT).await?
    };
    let mut expired = 0;
    for avatar_id in due {
        match expire(s, avatar_id).await {
            Ok(true) => expired += 1,
            Ok(false) => {}
            // One avatar's trouble (a photo store hiccup) does not hold up the others.
            Err(e) => {
                tracing::warn!(%avatar_id, error = %telemetry::chain(&e), "could not delete expired training photos; will try again")
            }
        }
    }
    Ok(expired)
}

/// Removes one avatar's photos and records it; `false` when there was nothing (left) to do.
/// The bytes go first: a crash in between leaves the avatar listed, and the next sweep finds
/// the keys already gone (not an error) and records the removal then.
async fn expire(s: &Services, avatar_id: Uuid) -> Result<bool, RetentionError> {
    let avatar = s.store.load(avatar_id).await?;
    // The read model may lag behind the avatar: it decides.
    if avatar.status != AvatarStatus::Trained || avatar.photos.is_empty() {
        return Ok(false);
    }
    for photo in &avatar.photos {
        s.photos.delete(&photo.storage_key).await?;
    }
    // The zip of the same photos, kept to serve FAL's trainer, goes with them.
    s.photos
        .delete_prefix(&crate::photos::store::archives_prefix(avatar_id))
        .await?;
    let command = Command::new(
        Actor::System(super::by::RETENTION.into()),
        Utc::now(),
        Action::DeleteTrainingPhotos,
    );
    match s.store.execute(avatar_id, command, Uuid::new_v4()).await {
        Ok(done) if !done.events.is_empty() => {
            tracing::info!(%avatar_id, photos = avatar.photos.len(), "training photos deleted after their retention");
            Ok(true)
        }
        // Another instance recorded it first, or the avatar was deleted meanwhile.
        Ok(_) | Err(StoreError::Rejected(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
