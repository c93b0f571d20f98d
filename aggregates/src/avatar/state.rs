//! What an avatar remembers between commands; it doubles as the snapshot, so only what the
//! rules need is kept, and the read-only questions here never change it.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::errors::AvatarError;
use crate::model::TrainedModel;
use crate::presets::{AvatarType, ModelKind, TrainerParams};
use crate::values::{AvatarName, BatchItem, Gender, GeneratedImage, Origin, PhotoMeta};

/// Fewest photos a training accepts (seed 001).
pub const MIN_PHOTOS: usize = 10;
/// Most photos an avatar may hold (seed 001).
pub const MAX_PHOTOS: usize = 20;
/// Smallest accepted photo side, in pixels.
pub const MIN_PHOTO_SIDE: u32 = 512;
/// How many of the latest generations keep their prompt, origin and images in the state: the
/// ones whose images can still be upscaled.
pub const UPSCALABLE_GENERATIONS: usize = 64;

/// Where an avatar is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AvatarStatus {
    /// Not created yet (the state of an empty stream).
    #[default]
    New,
    /// Created, collecting photos.
    Draft,
    /// Training asked for; waiting for FAL.
    Training,
    Trained,
    TrainingFailed,
    Deleted,
}

impl AvatarStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Draft => "draft",
            Self::Training => "training",
            Self::Trained => "trained",
            Self::TrainingFailed => "training_failed",
            Self::Deleted => "deleted",
        }
    }

    /// The status [`AvatarStatus::as_str`] names, `None` for any other text.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::New,
            Self::Draft,
            Self::Training,
            Self::Trained,
            Self::TrainingFailed,
            Self::Deleted,
        ]
        .into_iter()
        .find(|status| status.as_str() == name)
    }
}

/// How a submitted training request ended, as far as this avatar knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    Pending,
    Completed,
    Failed,
}

/// The training currently asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRun {
    /// The id its request gave it (nil in snapshots from before trainings had one).
    #[serde(default)]
    pub training_id: Uuid,
    pub params: TrainerParams,
    /// The FAL request id once the submission is recorded.
    pub request_id: Option<String>,
    pub cancel_url: Option<String>,
}

/// A job FAL accepted: its request id and the URLs to follow and cancel it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FalJob {
    pub request_id: String,
    pub status_url: String,
    pub response_url: String,
    pub cancel_url: String,
}

/// The Avatar aggregate's state. It is also the snapshot, so it only keeps what rules need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Avatar {
    pub id: Option<Uuid>,
    pub status: AvatarStatus,
    pub owner: i64,
    pub name: Option<AvatarName>,
    pub gender: Option<Gender>,
    pub avatar_type: Option<AvatarType>,
    pub photos: Vec<PhotoMeta>,
    pub training: Option<TrainingRun>,
    /// Every FAL training request this avatar submitted, with its outcome.
    pub requests: BTreeMap<String, RequestOutcome>,
    pub model: Option<TrainedModel>,
    /// Generations asked for and not finished; the FAL job once its submission is recorded
    /// (older snapshots hold `null` for every entry, which reads as "not recorded").
    pub pending_generations: BTreeMap<Uuid, Option<FalJob>>,
    pub finished_generations: VecDeque<Uuid>,
    pub generations_completed: u64,
    pub generations_failed: u64,
    /// The kind of model the latest training was to produce (a late result of it is judged by
    /// it); absent in snapshots from before model kinds.
    #[serde(default)]
    pub last_training_kind: Option<ModelKind>,
    /// The batch item of each generation asked for in a batch (kept while the generation is
    /// pending or among the remembered finished ones).
    #[serde(default)]
    pub batch_items: BTreeMap<Uuid, BatchItem>,
    /// How many generations of each remembered batch have finished (completed or failed).
    #[serde(default)]
    pub batches_finished: BTreeMap<Uuid, u32>,
    /// The latest generations (pending, and the last [`UPSCALABLE_GENERATIONS`] finished):
    /// what was asked and what came back.
    #[serde(default)]
    pub generations: BTreeMap<Uuid, GenerationRecord>,
    /// The ids of the trainings started, oldest first: a request repeated after its training
    /// ended (failed) must not start another one.
    #[serde(default)]
    pub started_trainings: VecDeque<Uuid>,
}

/// A recent generation as the avatar remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRecord {
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Empty until it completes (and if it failed).
    #[serde(default)]
    pub images: Vec<GeneratedImage>,
}

impl Avatar {
    /// The avatar's trigger token: unique per avatar, derived from its id so the domain needs no
    /// randomness (seed 001's `PERSON_<8 hex>`).
    pub fn trigger(&self) -> String {
        let hex = self
            .id
            .map(|id| id.simple().to_string())
            .unwrap_or_default();
        let short = hex.get(..8).unwrap_or("00000000").to_uppercase();
        match self.avatar_type {
            Some(AvatarType::Style) => format!("STYLE_{short}"),
            _ => format!("PERSON_{short}"),
        }
    }

    /// The batch a generation belongs to and how many of that batch have finished so far.
    pub fn batch_progress(&self, generation_id: Uuid) -> Option<(BatchItem, u32)> {
        let item = *self.batch_items.get(&generation_id)?;
        let finished = self
            .batches_finished
            .get(&item.batch_id)
            .copied()
            .unwrap_or(0);
        Some((item, finished))
    }

    /// A recent generation: its prompt, origin and (once completed) images.
    pub fn generation(&self, generation_id: Uuid) -> Option<&GenerationRecord> {
        self.generations.get(&generation_id)
    }

    /// Whether photos may still be added or removed: before training starts, or after it failed.
    pub fn can_edit_photos(&self) -> bool {
        matches!(
            self.status,
            AvatarStatus::Draft | AvatarStatus::TrainingFailed
        )
    }

    /// The training that was asked for and whose FAL submission is not recorded yet.
    pub fn training_awaiting_submission(&self) -> Option<&TrainingRun> {
        self.training
            .as_ref()
            .filter(|run| self.status == AvatarStatus::Training && run.request_id.is_none())
    }

    /// Whether `request_id` is a training request of this avatar that has not finished.
    pub fn training_request_pending(&self, request_id: &str) -> bool {
        self.status != AvatarStatus::Deleted
            && self.requests.get(request_id) == Some(&RequestOutcome::Pending)
    }

    /// A generation that has not finished: `Some(None)` before its FAL job is recorded.
    pub fn pending_generation(&self, generation_id: Uuid) -> Option<Option<&FalJob>> {
        self.pending_generations
            .get(&generation_id)
            .map(Option::as_ref)
    }

    pub(super) fn require_type(&self) -> Result<AvatarType, AvatarError> {
        self.avatar_type.ok_or(AvatarError::NotFound)
    }
}
