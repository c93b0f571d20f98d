//! The gallery: one row per avatar with everything its Telegram card shows, read a page at a
//! time by the bot.
//!
//! A deleted avatar keeps its row with status `deleted` (and `deleted_at`): auditors and
//! analysts still see it, while [`page`] and [`count`] — what the bot lists — leave it out.
//! Every update is guarded by the avatar's event sequence, so applying an event twice is harmless.

use aggregates::{AvatarEvent, AvatarStatus, TrainedModel};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use uuid::Uuid;

use crate::sql::{Arg, SqlRow, Tx};
use crate::{FeedEvent, Projection, ProjectionError};

/// The projection's name and checkpoint key.
pub const NAME: &str = "gallery";
/// The one table it owns.
pub const TABLE: &str = "gallery_avatars";

/// Builds `gallery_avatars`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gallery;

impl Projection for Gallery {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        event: &'a FeedEvent,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(apply(tx, event))
    }
}

/// The model reference a card may show: the LoRA file for a portrait, the finetune id for a style.
pub fn model_ref(model: &TrainedModel) -> &str {
    match model {
        TrainedModel::Portrait { lora_file_url, .. } => lora_file_url,
        TrainedModel::Style { finetune_id, .. } => finetune_id,
    }
}

async fn apply(tx: &mut Tx<'_>, e: &FeedEvent) -> Result<(), ProjectionError> {
    let at = e.event.at();
    match &e.event {
        AvatarEvent::AvatarCreated {
            owner,
            name,
            gender,
            avatar_type,
            ..
        } => {
            tx.execute(
                "INSERT INTO gallery_avatars
                    (avatar_id, owner, name, avatar_type, gender, status, created_at, updated_at,
                     last_sequence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)
                 ON CONFLICT (avatar_id) DO NOTHING",
                vec![
                    e.avatar_id.into(),
                    (*owner).into(),
                    name.as_str().into(),
                    avatar_type.as_str().into(),
                    gender.as_str().into(),
                    AvatarStatus::Draft.as_str().into(),
                    at.into(),
                    seq(e),
                ],
            )
            .await?;
        }
        AvatarEvent::PhotoUploaded { photo_count, .. }
        | AvatarEvent::PhotoRemoved { photo_count, .. } => {
            update(tx, e, "photo_count = $4", vec![(*photo_count as i64).into()]).await?;
        }
        AvatarEvent::TrainingStarted { preset, .. } => {
            update(
                tx,
                e,
                "status = $4, training_preset = $5, training_started_at = $2",
                vec![
                    AvatarStatus::Training.as_str().into(),
                    preset.as_str().into(),
                ],
            )
            .await?;
        }
        AvatarEvent::TrainingCompleted { model, .. } => {
            update(
                tx,
                e,
                "status = $4, has_model = $5, model_ref = $6, trigger_word = $7, trained_at = $2",
                vec![
                    AvatarStatus::Trained.as_str().into(),
                    true.into(),
                    model_ref(model).into(),
                    model.trigger().into(),
                ],
            )
            .await?;
        }
        AvatarEvent::TrainingFailed { .. } => {
            update(
                tx,
                e,
                "status = $4",
                vec![AvatarStatus::TrainingFailed.as_str().into()],
            )
            .await?;
        }
        AvatarEvent::GenerationRequested { .. } => {
            update(tx, e, "generations_requested = generations_requested + 1", vec![]).await?;
        }
        AvatarEvent::GenerationCompleted { images, .. } => {
            update(
                tx,
                e,
                "generations_completed = generations_completed + 1,
                 images_generated = images_generated + $4, last_generation_at = $2",
                vec![(images.len() as i64).into()],
            )
            .await?;
        }
        AvatarEvent::GenerationFailed { .. } => {
            update(tx, e, "generations_failed = generations_failed + 1", vec![]).await?;
        }
        AvatarEvent::AvatarDeleted { .. } => {
            update(
                tx,
                e,
                "status = $4, deleted_at = $2",
                vec![AvatarStatus::Deleted.as_str().into()],
            )
            .await?;
        }
        AvatarEvent::ModelDataCorrected {
            avatar_type, model, ..
        } => {
            update(
                tx,
                e,
                "avatar_type = $4, has_model = $5, model_ref = $6, trigger_word = $7",
                vec![
                    avatar_type.as_str().into(),
                    true.into(),
                    model_ref(model).into(),
                    model.trigger().into(),
                ],
            )
            .await?;
        }
        // Nothing a card shows changes; only the row's time and sequence move on.
        AvatarEvent::TrainingSubmitted { .. } => update(tx, e, "", vec![]).await?,
    }
    Ok(())
}

fn seq(e: &FeedEvent) -> Arg {
    (e.sequence as i64).into()
}

/// Updates one avatar's row: `$1` is the avatar, `$2` the event time, `$3` its sequence, and
/// `set`'s own arguments start at `$4`. Rows that already saw this sequence are left alone.
async fn update(
    tx: &mut Tx<'_>,
    e: &FeedEvent,
    set: &str,
    extra: Vec<Arg>,
) -> Result<(), ProjectionError> {
    let separator = if set.is_empty() { "" } else { ", " };
    let sql = format!(
        "UPDATE gallery_avatars SET {set}{separator}updated_at = $2, last_sequence = $3
          WHERE avatar_id = $1 AND last_sequence < $3"
    );
    let mut args = vec![e.avatar_id.into(), e.event.at().into(), seq(e)];
    args.extend(extra);
    tx.execute(&sql, args).await?;
    Ok(())
}

/// One avatar as a gallery list shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GalleryItem {
    pub avatar_id: Uuid,
    pub name: String,
    /// `portrait` or `style`.
    pub avatar_type: String,
    /// An [`AvatarStatus`] name: `draft`, `training`, `trained`, `training_failed`, `deleted`.
    pub status: String,
    pub photo_count: i64,
    /// A trained model is present (generation is possible).
    pub has_model: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the avatar's last generation returned images.
    pub last_generation_at: Option<DateTime<Utc>>,
}

/// One page of a user's gallery, newest avatar first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GalleryPage {
    pub items: Vec<GalleryItem>,
    /// How many avatars the user has in all (deleted ones excluded), for "page 2 of 5".
    pub total: i64,
    pub offset: i64,
    pub limit: i64,
}

impl GalleryPage {
    pub fn has_next(&self) -> bool {
        self.offset + (self.items.len() as i64) < self.total
    }

    pub fn has_previous(&self) -> bool {
        self.offset > 0
    }
}

/// Everything an avatar's card shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AvatarCard {
    pub avatar_id: Uuid,
    pub owner: i64,
    pub name: String,
    pub avatar_type: String,
    pub gender: String,
    pub status: String,
    pub photo_count: i64,
    pub has_model: bool,
    /// The LoRA file URL (portrait) or finetune id (style), when trained.
    pub model_ref: Option<String>,
    pub trigger_word: Option<String>,
    pub training_preset: Option<String>,
    pub training_started_at: Option<DateTime<Utc>>,
    pub trained_at: Option<DateTime<Utc>>,
    pub generations_requested: i64,
    pub generations_completed: i64,
    pub generations_failed: i64,
    pub images_generated: i64,
    pub last_generation_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// The last event of the avatar this row reflects.
    pub last_sequence: i64,
}

impl AvatarCard {
    pub fn is_deleted(&self) -> bool {
        self.status == AvatarStatus::Deleted.as_str()
    }
}

const ITEM_COLUMNS: &str = "avatar_id, name, avatar_type, status, photo_count, has_model, \
                            created_at, updated_at, last_generation_at";

const CARD_COLUMNS: &str = "avatar_id, owner, name, avatar_type, gender, status, photo_count, \
    has_model, model_ref, trigger_word, training_preset, training_started_at, trained_at, \
    generations_requested, generations_completed, generations_failed, images_generated, \
    last_generation_at, created_at, updated_at, deleted_at, last_sequence";

/// Largest page the bot may ask for; larger requests are clamped.
pub const MAX_PAGE: i64 = 100;

/// One page of `owner`'s avatars that are not deleted, newest first.
pub async fn page(
    tx: &mut Tx<'_>,
    owner: i64,
    offset: i64,
    limit: i64,
) -> Result<GalleryPage, ProjectionError> {
    let offset = offset.max(0);
    let limit = limit.clamp(1, MAX_PAGE);
    let total = count(tx, owner).await?;
    let rows = tx
        .fetch_all(
            &format!(
                "SELECT {ITEM_COLUMNS} FROM gallery_avatars
                  WHERE owner = $1 AND status <> 'deleted'
                  ORDER BY created_at DESC, avatar_id
                  LIMIT $2 OFFSET $3"
            ),
            vec![owner.into(), limit.into(), offset.into()],
        )
        .await?;
    let items = rows.iter().map(item).collect::<Result<_, _>>()?;
    Ok(GalleryPage {
        items,
        total,
        offset,
        limit,
    })
}

/// How many avatars `owner` has that are not deleted.
pub async fn count(tx: &mut Tx<'_>, owner: i64) -> Result<i64, ProjectionError> {
    Ok(tx
        .fetch_i64(
            "SELECT count(*) FROM gallery_avatars WHERE owner = $1 AND status <> 'deleted'",
            vec![owner.into()],
        )
        .await?
        .unwrap_or(0))
}

/// The card of one avatar, deleted ones included (the bot tells the user it is gone).
pub async fn card(tx: &mut Tx<'_>, avatar_id: Uuid) -> Result<Option<AvatarCard>, ProjectionError> {
    let row = tx
        .fetch_optional(
            &format!("SELECT {CARD_COLUMNS} FROM gallery_avatars WHERE avatar_id = $1"),
            vec![avatar_id.into()],
        )
        .await?;
    row.as_ref().map(card_from).transpose()
}

/// Every card, deleted ones included, in avatar id order (for audits and exports).
pub async fn all_cards(tx: &mut Tx<'_>) -> Result<Vec<AvatarCard>, ProjectionError> {
    let rows = tx
        .fetch_all(
            &format!("SELECT {CARD_COLUMNS} FROM gallery_avatars ORDER BY avatar_id"),
            vec![],
        )
        .await?;
    rows.iter().map(card_from).collect()
}

pub(crate) fn uuid(row: &SqlRow, column: &str) -> Result<Uuid, ProjectionError> {
    let text: String = row.get(column)?;
    Uuid::parse_str(&text)
        .map_err(|e| ProjectionError::Invalid(format!("{column} `{text}` is not a UUID: {e}")))
}

fn item(row: &SqlRow) -> Result<GalleryItem, ProjectionError> {
    Ok(GalleryItem {
        avatar_id: uuid(row, "avatar_id")?,
        name: row.get("name")?,
        avatar_type: row.get("avatar_type")?,
        status: row.get("status")?,
        photo_count: row.get("photo_count")?,
        has_model: row.get("has_model")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        last_generation_at: row.get("last_generation_at")?,
    })
}

fn card_from(row: &SqlRow) -> Result<AvatarCard, ProjectionError> {
    Ok(AvatarCard {
        avatar_id: uuid(row, "avatar_id")?,
        owner: row.get("owner")?,
        name: row.get("name")?,
        avatar_type: row.get("avatar_type")?,
        gender: row.get("gender")?,
        status: row.get("status")?,
        photo_count: row.get("photo_count")?,
        has_model: row.get("has_model")?,
        model_ref: row.get("model_ref")?,
        trigger_word: row.get("trigger_word")?,
        training_preset: row.get("training_preset")?,
        training_started_at: row.get("training_started_at")?,
        trained_at: row.get("trained_at")?,
        generations_requested: row.get("generations_requested")?,
        generations_completed: row.get("generations_completed")?,
        generations_failed: row.get("generations_failed")?,
        images_generated: row.get("images_generated")?,
        last_generation_at: row.get("last_generation_at")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        deleted_at: row.get("deleted_at")?,
        last_sequence: row.get("last_sequence")?,
    })
}
