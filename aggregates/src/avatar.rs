//! The Avatar aggregate: its state, the rules that decide a command, and how events change it.

use std::collections::{BTreeMap, VecDeque};

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::commands::{Action, Command, TrainingOutput};
use crate::errors::{AvatarError, ModelDataProblem};
use crate::events::AvatarEvent;
use crate::model::TrainedModel;
use crate::presets::{
    self, aspect_ratio_for, AvatarType, FluxLoraInput, GenerationPreset, LoraWeight, ModelKind,
    TrainerParams, UltraFinetunedInput, MAX_IMAGES_PER_GENERATION, MAX_PROMPT_CHARS,
};
use crate::values::{
    valid_pack_id, Actor, AvatarName, BatchItem, Gender, GeneratedImage, Origin, PhotoMeta,
    MAX_BATCH_SIZE,
};

mod questions;

/// Fewest photos a training accepts (seed 001).
pub const MIN_PHOTOS: usize = 10;
/// Most photos an avatar may hold (seed 001).
pub const MAX_PHOTOS: usize = 20;
/// Smallest accepted photo side, in pixels.
pub const MIN_PHOTO_SIDE: u32 = 512;
/// How many finished generation ids are remembered to recognise late duplicate results; older
/// ones are forgotten so a long-lived avatar's state (and snapshot) stays small.
const REMEMBERED_FINISHED_GENERATIONS: usize = 256;
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

    fn require_type(&self) -> Result<AvatarType, AvatarError> {
        self.avatar_type.ok_or(AvatarError::NotFound)
    }

    /// Who may issue what: users act on their own avatars, the system reports outside results,
    /// operators correct data and may delete.
    fn authorize(&self, by: &Actor, action: &Action) -> Result<(), AvatarError> {
        let user_action = matches!(
            action,
            Action::Create { .. }
                | Action::Rename { .. }
                | Action::UploadPhoto { .. }
                | Action::RemovePhoto { .. }
                | Action::ClearPhotos
                | Action::StartTraining { .. }
                | Action::Generate {
                    origin: None | Some(Origin::Pack { .. } | Origin::Upscale { .. }),
                    ..
                }
                | Action::Upscale { .. }
                | Action::Delete
        );
        let system_action = matches!(
            action,
            Action::Generate {
                origin: Some(Origin::Starter { .. }),
                ..
            } | Action::RecordTrainingSubmission { .. }
                | Action::CompleteTraining { .. }
                | Action::FailTraining { .. }
                | Action::DeleteTrainingPhotos
                | Action::RecordGenerationSubmission { .. }
                | Action::CompleteGeneration { .. }
                | Action::FailGeneration { .. }
        );
        let operator_action = matches!(action, Action::CorrectModelData { .. } | Action::Delete);
        let (allowed, kind) = match by {
            Actor::User(_) => (user_action, "a Telegram user"),
            Actor::System(_) => (system_action, "the system"),
            Actor::Operator(_) => (operator_action, "an operator"),
        };
        if !allowed {
            return Err(AvatarError::NotPermitted {
                actor: kind,
                action: action.name(),
            });
        }
        if let (Actor::User(user), false) = (by, matches!(action, Action::Create { .. })) {
            if self.status != AvatarStatus::New && *user != self.owner {
                return Err(AvatarError::NotOwner);
            }
        }
        Ok(())
    }

    fn decide(&self, command: Command) -> Result<Vec<AvatarEvent>, AvatarError> {
        let Command { by, at, action } = command;
        match (self.status, &action) {
            (AvatarStatus::Deleted, _) => return Err(AvatarError::Deleted),
            (AvatarStatus::New, Action::Create { .. }) => {}
            (AvatarStatus::New, _) => return Err(AvatarError::NotFound),
            (_, Action::Create { .. }) => return Err(AvatarError::AlreadyExists),
            _ => {}
        }
        self.authorize(&by, &action)?;
        let owner = self.owner;

        match action {
            Action::Create {
                avatar_id,
                name,
                gender,
                avatar_type,
            } => {
                let Actor::User(owner) = by else {
                    unreachable!("authorize lets only users create")
                };
                Ok(vec![AvatarEvent::AvatarCreated {
                    avatar_id,
                    owner,
                    name: AvatarName::parse(&name)?,
                    gender,
                    avatar_type,
                    at,
                }])
            }

            Action::Rename { name } => {
                let name = AvatarName::parse(&name)?;
                if self.name.as_ref() == Some(&name) {
                    return Ok(vec![]);
                }
                Ok(vec![AvatarEvent::AvatarRenamed { name, at }])
            }

            Action::UploadPhoto { photo } => {
                self.require_photos_editable()?;
                if photo.byte_size == 0 {
                    return Err(AvatarError::EmptyPhoto);
                }
                if photo.width < MIN_PHOTO_SIDE || photo.height < MIN_PHOTO_SIDE {
                    return Err(AvatarError::PhotoTooSmall {
                        width: photo.width,
                        height: photo.height,
                        min: MIN_PHOTO_SIDE,
                    });
                }
                if let Some(existing) = self
                    .photos
                    .iter()
                    .find(|p| p.content_hash == photo.content_hash || p.photo_id == photo.photo_id)
                {
                    return Err(AvatarError::DuplicatePhoto {
                        existing: existing.photo_id.clone(),
                    });
                }
                if self.photos.len() >= MAX_PHOTOS {
                    return Err(AvatarError::TooManyPhotos { max: MAX_PHOTOS });
                }
                Ok(vec![AvatarEvent::PhotoUploaded {
                    photo,
                    photo_count: self.photos.len() + 1,
                    at,
                }])
            }

            Action::RemovePhoto { photo_id } => {
                self.require_photos_editable()?;
                if !self.photos.iter().any(|p| p.photo_id == photo_id) {
                    return Err(AvatarError::UnknownPhoto(photo_id));
                }
                Ok(vec![AvatarEvent::PhotoRemoved {
                    photo_id,
                    photo_count: self.photos.len() - 1,
                    at,
                }])
            }

            Action::ClearPhotos => {
                self.require_photos_editable()?;
                // With no photos left this emits nothing: a second tap changes nothing.
                // One event per photo, newest first, so the history says which photos went and
                // every reader of `PhotoRemoved` already understands it.
                let total = self.photos.len();
                Ok(self
                    .photos
                    .iter()
                    .rev()
                    .enumerate()
                    .map(|(removed, photo)| AvatarEvent::PhotoRemoved {
                        photo_id: photo.photo_id.clone(),
                        photo_count: total - removed - 1,
                        at,
                    })
                    .collect())
            }

            Action::StartTraining { preset, style } => {
                self.can_start_training()?;
                let avatar_type = self.require_type()?;
                let label = format!("aisha-{}", self.id.unwrap_or_default());
                let params =
                    TrainerParams::for_preset(avatar_type, style, preset, &self.trigger(), &label);
                Ok(vec![AvatarEvent::TrainingStarted {
                    owner,
                    avatar_type,
                    preset,
                    endpoint: params.endpoint().to_owned(),
                    params,
                    photo_keys: self.photos.iter().map(|p| p.storage_key.clone()).collect(),
                    at,
                }])
            }

            Action::RecordTrainingSubmission {
                request_id,
                endpoint,
                status_url,
                response_url,
                cancel_url,
                archive_url,
            } => {
                let run = match (&self.status, &self.training) {
                    (AvatarStatus::Training, Some(run)) => run,
                    _ if self.requests.contains_key(&request_id) => return Ok(vec![]),
                    _ => return Err(AvatarError::NoTrainingInProgress),
                };
                match &run.request_id {
                    Some(existing) if *existing == request_id => Ok(vec![]),
                    Some(existing) => Err(AvatarError::SubmissionAlreadyRecorded(existing.clone())),
                    None => Ok(vec![AvatarEvent::TrainingSubmitted {
                        request_id,
                        endpoint,
                        status_url,
                        response_url,
                        cancel_url,
                        archive_url,
                        at,
                    }]),
                }
            }

            Action::CompleteTraining { request_id, output } => {
                let outcome = *self
                    .requests
                    .get(&request_id)
                    .ok_or_else(|| AvatarError::UnknownTrainingRequest(request_id.clone()))?;
                let accept = match outcome {
                    RequestOutcome::Pending => true,
                    RequestOutcome::Completed => false,
                    // A success that arrives after we gave up on the request is still the
                    // model the user paid for, unless a newer training has superseded it.
                    RequestOutcome::Failed => self.status == AvatarStatus::TrainingFailed,
                };
                if !accept {
                    return Ok(vec![]);
                }
                let model =
                    TrainedModel::from_output(self.training_kind()?, &output, &self.trigger())?;
                Ok(vec![AvatarEvent::TrainingCompleted {
                    owner,
                    request_id,
                    model,
                    at,
                }])
            }

            Action::FailTraining {
                request_id,
                reason,
                abandon,
            } => match request_id {
                None => match (&self.status, &self.training) {
                    (AvatarStatus::Training, Some(run)) if run.request_id.is_none() => {
                        Ok(vec![AvatarEvent::TrainingFailed {
                            owner,
                            request_id: None,
                            reason,
                            cancel_url: None,
                            at,
                        }])
                    }
                    _ => Err(AvatarError::NoTrainingInProgress),
                },
                Some(id) => match self.requests.get(&id) {
                    None => Err(AvatarError::UnknownTrainingRequest(id)),
                    Some(RequestOutcome::Pending) => Ok(vec![AvatarEvent::TrainingFailed {
                        owner,
                        cancel_url: self
                            .training
                            .as_ref()
                            .filter(|run| abandon && run.request_id.as_ref() == Some(&id))
                            .and_then(|run| run.cancel_url.clone()),
                        request_id: Some(id),
                        reason,
                        at,
                    }]),
                    Some(_) => Ok(vec![]),
                },
            },

            Action::DeleteTrainingPhotos => {
                // Only a successful training ends the photos' use; after a failure the user
                // may train again on them.
                if self.status != AvatarStatus::Trained {
                    return Err(AvatarError::NotTrained);
                }
                // Already deleted: a second sweeper (or a retry) records nothing.
                if self.photos.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![AvatarEvent::TrainingPhotosDeleted {
                    photo_keys: self.photos.iter().map(|p| p.storage_key.clone()).collect(),
                    at,
                }])
            }

            Action::Generate {
                generation_id,
                prompt,
                preset,
                num_images,
                aspect,
                batch,
                origin,
            } => {
                self.can_generate()?;
                match &origin {
                    None => {}
                    Some(Origin::Upscale { .. }) => return Err(AvatarError::InvalidOrigin),
                    Some(Origin::Pack { pack } | Origin::Starter { pack }) => {
                        if !valid_pack_id(pack) {
                            return Err(AvatarError::InvalidPack(pack.clone()));
                        }
                    }
                }
                let avatar_type = self.require_type()?;
                let model = self.model.as_ref().ok_or(AvatarError::NotTrained)?;
                check_model_matches(avatar_type, model)?;
                let prompt = crate::values::clean_prompt(&prompt);
                if prompt.is_empty() {
                    return Err(AvatarError::EmptyPrompt);
                }
                let chars = prompt.chars().count();
                if chars > MAX_PROMPT_CHARS {
                    return Err(AvatarError::PromptTooLong {
                        max: MAX_PROMPT_CHARS,
                        actual: chars,
                    });
                }
                if !(1..=MAX_IMAGES_PER_GENERATION).contains(&num_images) {
                    return Err(AvatarError::InvalidImageCount {
                        requested: num_images,
                        max: MAX_IMAGES_PER_GENERATION,
                    });
                }
                if let Some(item) = batch {
                    if item.size == 0 || item.index >= item.size || item.size > MAX_BATCH_SIZE {
                        return Err(AvatarError::InvalidBatch {
                            index: item.index,
                            size: item.size,
                            max: MAX_BATCH_SIZE,
                        });
                    }
                }
                if self.pending_generations.contains_key(&generation_id)
                    || self.finished_generations.contains(&generation_id)
                {
                    return Err(AvatarError::DuplicateGeneration(generation_id));
                }
                let full_prompt = format!("{} {}", model.trigger(), prompt);
                let arguments =
                    generation_arguments(model, preset, aspect, full_prompt, num_images);
                Ok(vec![AvatarEvent::GenerationRequested {
                    owner,
                    generation_id,
                    prompt,
                    preset,
                    endpoint: model.kind().generator().to_owned(),
                    arguments,
                    num_images,
                    aspect,
                    batch,
                    origin,
                    at,
                }])
            }

            Action::Upscale {
                generation_id,
                of,
                image,
                factor,
            } => {
                if self.status != AvatarStatus::Trained {
                    return Err(AvatarError::NotTrained);
                }
                if self.pending_generations.contains_key(&generation_id)
                    || self.finished_generations.contains(&generation_id)
                {
                    return Err(AvatarError::DuplicateGeneration(generation_id));
                }
                let unavailable = AvatarError::ImageUnavailable {
                    generation_id: of,
                    image,
                };
                let source = self.generations.get(&of).ok_or(unavailable.clone())?;
                if matches!(source.origin, Some(Origin::Upscale { .. })) {
                    return Err(AvatarError::AlreadyUpscaled);
                }
                // Blacked-out (NSFW) images were never shown, so they cannot be chosen either.
                let picture = source
                    .images
                    .get(usize::from(image))
                    .filter(|i| !i.nsfw)
                    .ok_or(unavailable)?;
                let arguments = serde_json::to_value(presets::UpscaleInput {
                    image_url: picture.url.clone(),
                    upscale_mode: "factor".to_owned(),
                    upscale_factor: f64::from(factor.times()),
                })
                .unwrap_or_default();
                Ok(vec![AvatarEvent::GenerationRequested {
                    owner,
                    generation_id,
                    prompt: source.prompt.clone(),
                    preset: None,
                    endpoint: presets::UPSCALER.to_owned(),
                    arguments,
                    num_images: 1,
                    aspect: None,
                    batch: None,
                    origin: Some(Origin::Upscale { of, image, factor }),
                    at,
                }])
            }

            Action::RecordGenerationSubmission {
                generation_id,
                request_id,
                status_url,
                response_url,
                cancel_url,
            } => match self.pending_generations.get(&generation_id) {
                Some(Some(job)) if job.request_id == request_id => Ok(vec![]),
                Some(Some(job)) => Err(AvatarError::GenerationAlreadySubmitted {
                    generation_id,
                    request_id: job.request_id.clone(),
                }),
                Some(None) => Ok(vec![AvatarEvent::GenerationSubmitted {
                    generation_id,
                    request_id,
                    status_url,
                    response_url,
                    cancel_url,
                    at,
                }]),
                None if self.finished_generations.contains(&generation_id) => {
                    Err(AvatarError::GenerationFinished(generation_id))
                }
                None => Err(AvatarError::UnknownGeneration(generation_id)),
            },

            Action::CompleteGeneration {
                generation_id,
                images,
            } => {
                if self.finished_generations.contains(&generation_id) {
                    return Ok(vec![]);
                }
                if !self.pending_generations.contains_key(&generation_id) {
                    return Err(AvatarError::UnknownGeneration(generation_id));
                }
                Ok(vec![AvatarEvent::GenerationCompleted {
                    owner,
                    generation_id,
                    images,
                    at,
                }])
            }

            Action::FailGeneration {
                generation_id,
                reason,
                abandon,
            } => {
                if self.finished_generations.contains(&generation_id) {
                    return Ok(vec![]);
                }
                let Some(job) = self.pending_generations.get(&generation_id) else {
                    return Err(AvatarError::UnknownGeneration(generation_id));
                };
                Ok(vec![AvatarEvent::GenerationFailed {
                    owner,
                    generation_id,
                    reason,
                    cancel_url: job
                        .as_ref()
                        .filter(|_| abandon)
                        .map(|job| job.cancel_url.clone()),
                    at,
                }])
            }

            Action::Delete => {
                let running_training_cancel_url = match self.status {
                    AvatarStatus::Training => self
                        .training
                        .as_ref()
                        .and_then(|run| run.cancel_url.clone()),
                    _ => None,
                };
                Ok(vec![AvatarEvent::AvatarDeleted {
                    owner,
                    photo_keys: self.photos.iter().map(|p| p.storage_key.clone()).collect(),
                    running_training_cancel_url,
                    running_generation_cancel_urls: self
                        .pending_generations
                        .values()
                        .flatten()
                        .map(|job| job.cancel_url.clone())
                        .collect(),
                    model: self.model.clone(),
                    at,
                }])
            }

            Action::CorrectModelData {
                avatar_type,
                output,
                reason,
            } => {
                if reason.trim().is_empty() {
                    return Err(AvatarError::EmptyReason);
                }
                if self.status != AvatarStatus::Trained {
                    return Err(AvatarError::NotTrained);
                }
                let previous_type = self.require_type()?;
                let trigger = self
                    .model
                    .as_ref()
                    .map(|m| m.trigger().to_owned())
                    .unwrap_or_else(|| self.trigger());
                let model = TrainedModel::from_output(
                    correction_kind(avatar_type, &output),
                    &output,
                    &trigger,
                )?;
                Ok(vec![AvatarEvent::ModelDataCorrected {
                    corrected_by: by,
                    reason: reason.trim().to_owned(),
                    previous_type,
                    previous_model: self.model.clone(),
                    avatar_type,
                    model,
                    at,
                }])
            }
        }
    }

    /// The kind of model the current (or latest) training was to produce.
    fn training_kind(&self) -> Result<ModelKind, AvatarError> {
        if let Some(run) = &self.training {
            return Ok(run.params.model_kind());
        }
        if let Some(kind) = self.last_training_kind {
            return Ok(kind);
        }
        // Before model kinds were recorded, every style avatar trained a pro finetune.
        Ok(match self.require_type()? {
            AvatarType::Portrait => ModelKind::PortraitLora,
            AvatarType::Style => ModelKind::ProFinetune,
        })
    }

    fn require_photos_editable(&self) -> Result<(), AvatarError> {
        self.can_take_photos()
    }

    fn finish_generation(&mut self, generation_id: Uuid) {
        self.pending_generations.remove(&generation_id);
        if let Some(item) = self.batch_items.get(&generation_id) {
            *self.batches_finished.entry(item.batch_id).or_default() += 1;
        }
        self.finished_generations.push_back(generation_id);
        if let Some(old) = self
            .finished_generations
            .len()
            .checked_sub(UPSCALABLE_GENERATIONS + 1)
            .and_then(|i| self.finished_generations.get(i))
        {
            self.generations.remove(old);
        }
        while self.finished_generations.len() > REMEMBERED_FINISHED_GENERATIONS {
            let Some(forgotten) = self.finished_generations.pop_front() else {
                break;
            };
            // A batch is forgotten with its last remembered generation.
            if let Some(item) = self.batch_items.remove(&forgotten) {
                if !self
                    .batch_items
                    .values()
                    .any(|i| i.batch_id == item.batch_id)
                {
                    self.batches_finished.remove(&item.batch_id);
                }
            }
        }
    }
}

/// The kind an operator's correction sets: a portrait is a LoRA; a style is a pro finetune when
/// given a `finetune_id`, else a style LoRA (the shape checks then explain what is missing).
fn correction_kind(avatar_type: AvatarType, output: &TrainingOutput) -> ModelKind {
    let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    match avatar_type {
        AvatarType::Portrait => ModelKind::PortraitLora,
        AvatarType::Style if has(&output.finetune_id) => ModelKind::ProFinetune,
        AvatarType::Style => ModelKind::StyleLora,
    }
}

/// Seed 000's generation-time check: the recorded model must match the avatar's type.
fn check_model_matches(avatar_type: AvatarType, model: &TrainedModel) -> Result<(), AvatarError> {
    if model.avatar_type() == avatar_type {
        return Ok(());
    }
    Err(AvatarError::ModelDataMismatch {
        avatar_type,
        problem: match avatar_type {
            AvatarType::Portrait => ModelDataProblem::PortraitWithoutLoraFile,
            AvatarType::Style => ModelDataProblem::StyleWithoutModel,
        },
    })
}

/// The exact generator input for a model, preset, frame and prompt (preset table and seed 000).
pub fn generation_arguments(
    model: &TrainedModel,
    preset: Option<GenerationPreset>,
    aspect: Option<presets::AspectRatio>,
    full_prompt: String,
    num_images: u32,
) -> serde_json::Value {
    let values = preset.map(GenerationPreset::values);
    let preset_size = values.map_or(presets::DEFAULT_IMAGE_SIZE, |v| v.image_size);
    let image_size = aspect.map_or(preset_size, |a| a.image_size(preset_size));
    let json = match model {
        TrainedModel::Portrait { lora_file_url, .. }
        | TrainedModel::StyleLora { lora_file_url, .. } => serde_json::to_value(FluxLoraInput {
            prompt: full_prompt,
            loras: vec![LoraWeight {
                path: lora_file_url.clone(),
                scale: values.map_or(presets::DEFAULT_LORA_SCALE, |v| v.lora_scale),
            }],
            image_size: image_size.to_owned(),
            num_inference_steps: values.map(|v| v.steps),
            guidance_scale: values.map(|v| v.guidance),
            num_images,
        }),
        TrainedModel::ProFinetune { finetune_id, .. } => {
            serde_json::to_value(UltraFinetunedInput {
                prompt: full_prompt,
                finetune_id: finetune_id.clone(),
                finetune_strength: values
                    .map_or(presets::DEFAULT_FINETUNE_STRENGTH, |v| v.finetune_strength),
                aspect_ratio: match (aspect, values) {
                    (Some(a), _) => a.ratio(),
                    (None, Some(v)) => aspect_ratio_for(v.image_size),
                    (None, None) => presets::DEFAULT_ASPECT_RATIO,
                }
                .to_owned(),
                num_images,
                raw: values.is_some_and(|v| v.raw),
            })
        }
    };
    json.unwrap_or_default()
}

impl Aggregate for Avatar {
    const TYPE: &'static str = "Avatar";
    type Command = Command;
    type Event = AvatarEvent;
    type Error = AvatarError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AvatarEvent::AvatarCreated {
                avatar_id,
                owner,
                name,
                gender,
                avatar_type,
                ..
            } => {
                self.id = Some(avatar_id);
                self.status = AvatarStatus::Draft;
                self.owner = owner;
                self.name = Some(name);
                self.gender = Some(gender);
                self.avatar_type = Some(avatar_type);
            }
            AvatarEvent::AvatarRenamed { name, .. } => self.name = Some(name),
            AvatarEvent::PhotoUploaded { photo, .. } => self.photos.push(photo),
            AvatarEvent::PhotoRemoved { photo_id, .. } => {
                self.photos.retain(|p| p.photo_id != photo_id)
            }
            AvatarEvent::TrainingStarted { params, .. } => {
                self.status = AvatarStatus::Training;
                self.last_training_kind = Some(params.model_kind());
                self.training = Some(TrainingRun {
                    params,
                    request_id: None,
                    cancel_url: None,
                });
            }
            AvatarEvent::TrainingSubmitted {
                request_id,
                cancel_url,
                ..
            } => {
                self.requests
                    .insert(request_id.clone(), RequestOutcome::Pending);
                if let Some(run) = self.training.as_mut() {
                    run.request_id = Some(request_id);
                    run.cancel_url = Some(cancel_url);
                }
            }
            AvatarEvent::TrainingCompleted {
                request_id, model, ..
            } => {
                self.requests.insert(request_id, RequestOutcome::Completed);
                self.status = AvatarStatus::Trained;
                self.model = Some(model);
                self.training = None;
            }
            AvatarEvent::TrainingFailed { request_id, .. } => {
                if let Some(id) = request_id {
                    self.requests.insert(id, RequestOutcome::Failed);
                }
                self.status = AvatarStatus::TrainingFailed;
                self.training = None;
            }
            AvatarEvent::TrainingPhotosDeleted { .. } => self.photos.clear(),
            AvatarEvent::GenerationRequested {
                generation_id,
                batch,
                prompt,
                origin,
                ..
            } => {
                self.pending_generations.insert(generation_id, None);
                self.generations.insert(
                    generation_id,
                    GenerationRecord {
                        prompt,
                        origin,
                        images: Vec::new(),
                    },
                );
                if let Some(item) = batch {
                    self.batch_items.insert(generation_id, item);
                }
            }
            AvatarEvent::GenerationSubmitted {
                generation_id,
                request_id,
                status_url,
                response_url,
                cancel_url,
                ..
            } => {
                if let Some(pending) = self.pending_generations.get_mut(&generation_id) {
                    *pending = Some(FalJob {
                        request_id,
                        status_url,
                        response_url,
                        cancel_url,
                    });
                }
            }
            AvatarEvent::GenerationCompleted {
                generation_id,
                images,
                ..
            } => {
                if let Some(record) = self.generations.get_mut(&generation_id) {
                    record.images = images;
                }
                self.generations_completed += 1;
                self.finish_generation(generation_id);
            }
            AvatarEvent::GenerationFailed { generation_id, .. } => {
                self.generations_failed += 1;
                self.finish_generation(generation_id);
            }
            AvatarEvent::AvatarDeleted { .. } => {
                self.status = AvatarStatus::Deleted;
                self.training = None;
                self.pending_generations.clear();
                self.generations.clear();
            }
            AvatarEvent::ModelDataCorrected {
                avatar_type, model, ..
            } => {
                self.avatar_type = Some(avatar_type);
                self.model = Some(model);
            }
        }
    }
}
