//! The gallery: one row per avatar with everything its Telegram card shows, read a page at a
//! time by the bot.
//!
//! A deleted avatar's row is removed, not marked: it holds the owner, the name and the model's
//! URL, and a deletion must leave none of them behind (the events keep the history, with those
//! fields erased). Each row remembers the last event applied to it, so applying an event twice
//! is harmless.

use std::collections::{BTreeSet, HashMap, HashSet};

use aggregates::{AvatarEvent, AvatarStatus, AvatarType, TrainedModel};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use uuid::Uuid;

use crate::{FeedEvent, Projection, ProjectionError};
use db::{Arg, SqlRow, Tx};

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

    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        events: &'a [FeedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(apply_all(tx, events))
    }
}

/// The model reference a card may show: the LoRA file of a LoRA, the id of a pro finetune.
pub fn model_ref(model: &TrainedModel) -> &str {
    match model {
        TrainedModel::Portrait { lora_file_url, .. }
        | TrainedModel::StyleLora { lora_file_url, .. } => lora_file_url,
        TrainedModel::ProFinetune { finetune_id, .. } => finetune_id,
    }
}

/// Loads the batch's avatars once, applies every event to them in memory and writes each
/// changed row once: a rebuild's batch of many events per avatar costs a few statements.
async fn apply_all(tx: &mut Tx<'_>, events: &[FeedEvent]) -> Result<(), ProjectionError> {
    let mut ids: Vec<Uuid> = events.iter().map(|e| e.avatar_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let loaded = tx
        .fetch_in(
            &format!("SELECT {CARD_COLUMNS} FROM gallery_avatars WHERE avatar_id IN ({{keys}})"),
            ids.into_iter().map(Arg::from).collect(),
        )
        .await?;
    let mut rows: HashMap<Uuid, Option<AvatarCard>> = HashMap::new();
    for row in &loaded {
        let card = card_from(row)?;
        rows.insert(card.avatar_id, Some(card));
    }
    let mut changed: Vec<Uuid> = Vec::new();
    let mut seen = HashSet::new();
    let mut deleted = BTreeSet::new();
    for e in events {
        let row = rows.entry(e.avatar_id).or_default();
        if matches!(e.event, AvatarEvent::AvatarDeleted { .. }) {
            // Also when the batch created the row: an erased history replays into nothing.
            *row = None;
            deleted.insert(e.avatar_id);
        } else if apply_to(row, e) && seen.insert(e.avatar_id) {
            changed.push(e.avatar_id);
        }
    }
    tx.execute_in(
        "DELETE FROM gallery_avatars WHERE avatar_id IN ({keys})",
        deleted.into_iter().map(Arg::from).collect(),
    )
    .await?;
    let upserts: Vec<Vec<Arg>> = changed
        .iter()
        .filter_map(|id| rows.get(id).and_then(Option::as_ref))
        .map(card_args)
        .collect();
    tx.insert_rows(
        &format!("INSERT INTO gallery_avatars ({CARD_COLUMNS})"),
        upserts,
        UPSERT,
    )
    .await?;
    Ok(())
}

const UPSERT: &str = "ON CONFLICT (avatar_id) DO UPDATE SET
    owner = excluded.owner, name = excluded.name, avatar_type = excluded.avatar_type,
    gender = excluded.gender, status = excluded.status, photo_count = excluded.photo_count,
    has_model = excluded.has_model, model_ref = excluded.model_ref,
    trigger_word = excluded.trigger_word, training_preset = excluded.training_preset,
    training_started_at = excluded.training_started_at, trained_at = excluded.trained_at,
    generations_requested = excluded.generations_requested,
    generations_completed = excluded.generations_completed,
    generations_failed = excluded.generations_failed,
    images_generated = excluded.images_generated,
    last_generation_at = excluded.last_generation_at, created_at = excluded.created_at,
    updated_at = excluded.updated_at, last_sequence = excluded.last_sequence";

/// The values of a row, in [`CARD_COLUMNS`] order.
fn card_args(c: &AvatarCard) -> Vec<Arg> {
    vec![
        c.avatar_id.into(),
        c.owner.into(),
        c.name.clone().into(),
        c.avatar_type.clone().into(),
        c.gender.clone().into(),
        c.status.clone().into(),
        c.photo_count.into(),
        c.has_model.into(),
        c.model_ref.clone().into(),
        c.trigger_word.clone().into(),
        c.training_preset.clone().into(),
        c.training_started_at.into(),
        c.trained_at.into(),
        c.generations_requested.into(),
        c.generations_completed.into(),
        c.generations_failed.into(),
        c.images_generated.into(),
        c.last_generation_at.into(),
        c.created_at.into(),
        c.updated_at.into(),
        c.last_sequence.into(),
    ]
}

/// Applies one event (not the deletion, which removes the row) to an avatar's row; `false` when
/// the row did not change (an event already applied, or one for an avatar without a row).
fn apply_to(row: &mut Option<AvatarCard>, e: &FeedEvent) -> bool {
    let at = e.event.at();
    let sequence = e.sequence as i64;
    if let AvatarEvent::AvatarCreated {
        owner,
        name,
        gender,
        avatar_type,
        ..
    } = &e.event
    {
        if row.is_some() {
            return false;
        }
        *row = Some(AvatarCard {
            avatar_id: e.avatar_id,
            owner: *owner,
            name: name.as_str().to_owned(),
            avatar_type: avatar_type.as_str().to_owned(),
            gender: gender.as_str().to_owned(),
            status: AvatarStatus::Draft.as_str().to_owned(),
            photo_count: 0,
            has_model: false,
            model_ref: None,
            trigger_word: None,
            training_preset: None,
            training_started_at: None,
            trained_at: None,
            generations_requested: 0,
            generations_completed: 0,
            generations_failed: 0,
            images_generated: 0,
            last_generation_at: None,
            created_at: at,
            updated_at: at,
            last_sequence: sequence,
        });
        return true;
    }
    let Some(card) = row.as_mut() else {
        return false;
    };
    if sequence <= card.last_sequence {
        return false;
    }
    let status = |s: AvatarStatus| s.as_str().to_owned();
    match &e.event {
        AvatarEvent::AvatarCreated { .. }
        | AvatarEvent::TrainingSubmitted { .. }
        | AvatarEvent::GenerationSubmitted { .. } => {}
        AvatarEvent::AvatarRenamed { name, .. } => card.name = name.as_str().to_owned(),
        AvatarEvent::PhotoUploaded { photo_count, .. }
        | AvatarEvent::PhotoRemoved { photo_count, .. } => card.photo_count = *photo_count as i64,
        AvatarEvent::TrainingStarted { preset, .. } => {
            card.status = status(AvatarStatus::Training);
            card.training_preset = Some(preset.as_str().to_owned());
            card.training_started_at = Some(at);
        }
        AvatarEvent::TrainingCompleted { model, .. } => {
            card.status = status(AvatarStatus::Trained);
            card.has_model = true;
            card.model_ref = Some(model_ref(model).to_owned());
            card.trigger_word = Some(model.trigger().to_owned());
            card.trained_at = Some(at);
        }
        AvatarEvent::TrainingFailed { .. } => card.status = status(AvatarStatus::TrainingFailed),
        AvatarEvent::TrainingPhotosDeleted { .. } => card.photo_count = 0,
        AvatarEvent::GenerationRequested { .. } => card.generations_requested += 1,
        AvatarEvent::GenerationCompleted { images, .. } => {
            card.generations_completed += 1;
            card.images_generated += images.len() as i64;
            card.last_generation_at = Some(at);
        }
        AvatarEvent::GenerationFailed { .. } => card.generations_failed += 1,
        AvatarEvent::AvatarDeleted { .. } => return false,
        AvatarEvent::ModelDataCorrected {
            avatar_type, model, ..
        } => {
            card.avatar_type = avatar_type.as_str().to_owned();
            card.has_model = true;
            card.model_ref = Some(model_ref(model).to_owned());
            card.trigger_word = Some(model.trigger().to_owned());
        }
    }
    card.updated_at = at;
    card.last_sequence = sequence;
    true
}

/// One avatar as a gallery list shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GalleryItem {
    pub avatar_id: Uuid,
    pub name: String,
    /// `portrait` or `style`.
    pub avatar_type: String,
    /// An [`AvatarStatus`] name: `draft`, `training`, `trained`, `training_failed` (a deleted
    /// avatar has no row).
    pub status: String,
    pub photo_count: i64,
    /// A trained model is present (generation is possible).
    pub has_model: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the avatar's last generation returned images.
    pub last_generation_at: Option<DateTime<Utc>>,
}

impl GalleryItem {
    /// The avatar's type; a value no [`AvatarType`] writes is an error, never a guess.
    pub fn parsed_type(&self) -> Result<AvatarType, ProjectionError> {
        avatar_type_named(&self.avatar_type)
    }

    /// The avatar's status; a value no [`AvatarStatus`] writes is an error, never a guess.
    pub fn parsed_status(&self) -> Result<AvatarStatus, ProjectionError> {
        status_named(&self.status)
    }
}

/// The [`AvatarType`] whose `as_str` is `name`.
pub fn avatar_type_named(name: &str) -> Result<AvatarType, ProjectionError> {
    [AvatarType::Portrait, AvatarType::Style]
        .into_iter()
        .find(|t| t.as_str() == name)
        .ok_or_else(|| ProjectionError::Invalid(format!("unknown avatar type `{name}`")))
}

/// The [`AvatarStatus`] whose `as_str` is `name`.
pub fn status_named(name: &str) -> Result<AvatarStatus, ProjectionError> {
    AvatarStatus::parse(name)
        .ok_or_else(|| ProjectionError::Invalid(format!("unknown avatar status `{name}`")))
}

/// One page of a user's gallery, newest avatar first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GalleryPage {
    pub items: Vec<GalleryItem>,
    /// How many avatars the user has in all, for "page 2 of 5".
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
    /// The last event of the avatar this row reflects.
    pub last_sequence: i64,
}

const ITEM_COLUMNS: &str = "avatar_id, name, avatar_type, status, photo_count, has_model, \
                            created_at, updated_at, last_generation_at";

const CARD_COLUMNS: &str = "avatar_id, owner, name, avatar_type, gender, status, photo_count, \
    has_model, model_ref, trigger_word, training_preset, training_started_at, trained_at, \
    generations_requested, generations_completed, generations_failed, images_generated, \
    last_generation_at, created_at, updated_at, last_sequence";

/// Largest page the bot may ask for; larger requests are clamped.
pub const MAX_PAGE: i64 = 100;

/// One page of `owner`'s avatars, newest first.
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
                  WHERE owner = $1
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

/// How many avatars `owner` has.
pub async fn count(tx: &mut Tx<'_>, owner: i64) -> Result<i64, ProjectionError> {
    Ok(tx
        .fetch_i64(
            "SELECT count(*) FROM gallery_avatars WHERE owner = $1",
            vec![owner.into()],
        )
        .await?
        .unwrap_or(0))
}

/// The card of one avatar; `None` once it is deleted (or before its creation is applied).
pub async fn card(tx: &mut Tx<'_>, avatar_id: Uuid) -> Result<Option<AvatarCard>, ProjectionError> {
    let row = tx
        .fetch_optional(
            &format!("SELECT {CARD_COLUMNS} FROM gallery_avatars WHERE avatar_id = $1"),
            vec![avatar_id.into()],
        )
        .await?;
    row.as_ref().map(card_from).transpose()
}

/// Avatars trained before `cutoff` that still hold photos, longest trained first: those whose
/// training photos the retention sweeper deletes.
pub async fn trained_with_photos_before(
    tx: &mut Tx<'_>,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, ProjectionError> {
    let rows = tx
        .fetch_all(
            "SELECT avatar_id FROM gallery_avatars
              WHERE status = $1 AND photo_count > 0 AND trained_at < $2
              ORDER BY trained_at, avatar_id LIMIT $3",
            vec![
                AvatarStatus::Trained.as_str().into(),
                cutoff.into(),
                limit.into(),
            ],
        )
        .await?;
    rows.iter().map(|row| uuid(row, "avatar_id")).collect()
}

/// Every card, in avatar id order (for audits and exports).
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
        last_sequence: row.get("last_sequence")?,
    })
}
