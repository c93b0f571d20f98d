//! Commands: what someone asks the avatar to do. Time and identity come with the command.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::presets::{AvatarType, GenerationPreset, StyleTrainer, TrainingPreset};
use crate::values::{Actor, Gender, GeneratedImage, PhotoMeta};

/// A command: who asks, when, and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub by: Actor,
    pub at: DateTime<Utc>,
    pub action: Action,
}

impl Command {
    pub fn new(by: Actor, at: DateTime<Utc>, action: Action) -> Self {
        Self { by, at, action }
    }

    /// The command's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        self.action.name()
    }
}

/// Model data as a trainer (or an operator) reports it, before the type rules have looked at it.
/// Every field is optional on purpose: wrongly shaped data must be representable to be refused.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TrainingOutput {
    pub lora_file_url: Option<String>,
    pub config_file_url: Option<String>,
    pub finetune_id: Option<String>,
}

/// Everything an avatar can be asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Create the avatar; the issuing Telegram user becomes its owner.
    Create {
        /// The avatar's own id (the same as its aggregate id); its trigger is derived from it.
        avatar_id: Uuid,
        name: String,
        gender: Gender,
        avatar_type: AvatarType,
    },
    /// Add a decoded and stored photo to the training set.
    UploadPhoto { photo: PhotoMeta },
    /// Give the avatar another name (the same rules as at creation); the same name is a no-op.
    Rename { name: String },
    /// Take a photo out of the training set.
    RemovePhoto { photo_id: String },
    /// Start the set over: every photo out of the training set at once.
    ClearPhotos,
    /// Ask for training with a quality preset; `style` picks the trainer of a style avatar
    /// (the operator's setting; ignored for portraits).
    StartTraining {
        /// Names this training, so the same request handled twice starts it once; a command
        /// recorded without one is a new training.
        #[serde(default = "Uuid::new_v4")]
        training_id: Uuid,
        preset: TrainingPreset,
        #[serde(default)]
        style: StyleTrainer,
    },
    /// The training actor submitted the job to FAL: record the request and its URLs.
    RecordTrainingSubmission {
        request_id: String,
        endpoint: String,
        status_url: String,
        response_url: String,
        cancel_url: String,
        /// Where FAL was given the photos; unknown when the submission is adopted from FAL's
        /// webhook after the submitting process died.
        archive_url: Option<String>,
    },
    /// FAL reported a finished training for `request_id`.
    CompleteTraining {
        request_id: String,
        output: TrainingOutput,
    },
    /// The training failed; `request_id` is `None` when it failed before reaching FAL.
    FailTraining {
        request_id: Option<String>,
        reason: String,
        /// We give up on a job FAL may still be running (deadline): it must be cancelled.
        #[serde(default)]
        abandon: bool,
    },
    /// The photos' retention after training has passed: take them out of the avatar (the
    /// caller has removed their bytes from the photo store); the model stays.
    DeleteTrainingPhotos,
    /// Ask for images from a prompt; `preset: None` uses seed 000's defaults.
    Generate {
        generation_id: Uuid,
        prompt: String,
        preset: Option<GenerationPreset>,
        num_images: u32,
        /// The frame chosen apart from the preset; `None`: the preset's own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        aspect: Option<crate::presets::AspectRatio>,
        /// This prompt's place when several came in one message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch: Option<crate::values::BatchItem>,
        /// A pack the prompt came from, or the starter samples (the system's, at training end).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<crate::values::Origin>,
    },
    /// Upscale image `image` (from 0) of the finished generation `of`; the result is a
    /// generation of its own (`generation_id`), on FAL's upscaler.
    Upscale {
        generation_id: Uuid,
        of: Uuid,
        image: u8,
        factor: crate::values::UpscaleFactor,
    },
    /// The generation actor submitted the job to FAL: record the request and its URLs.
    RecordGenerationSubmission {
        generation_id: Uuid,
        request_id: String,
        status_url: String,
        response_url: String,
        cancel_url: String,
    },
    /// The generator returned images.
    CompleteGeneration {
        generation_id: Uuid,
        images: Vec<GeneratedImage>,
    },
    /// The generation failed.
    FailGeneration {
        generation_id: Uuid,
        reason: String,
        /// We give up on a job FAL may still be running (deadline): it must be cancelled.
        #[serde(default)]
        abandon: bool,
    },
    /// Delete the avatar with its model, photos and generations.
    Delete,
    /// An operator fixes wrongly shaped model data (seed 000), optionally changing the type.
    CorrectModelData {
        avatar_type: AvatarType,
        output: TrainingOutput,
        reason: String,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::UploadPhoto { .. } => "upload_photo",
            Self::Rename { .. } => "rename",
            Self::RemovePhoto { .. } => "remove_photo",
            Self::ClearPhotos => "clear_photos",
            Self::StartTraining { .. } => "start_training",
            Self::RecordTrainingSubmission { .. } => "record_training_submission",
            Self::CompleteTraining { .. } => "complete_training",
            Self::FailTraining { .. } => "fail_training",
            Self::DeleteTrainingPhotos => "delete_training_photos",
            Self::Generate { .. } => "generate",
            Self::Upscale { .. } => "upscale",
            Self::RecordGenerationSubmission { .. } => "record_generation_submission",
            Self::CompleteGeneration { .. } => "complete_generation",
            Self::FailGeneration { .. } => "fail_generation",
            Self::Delete => "delete",
            Self::CorrectModelData { .. } => "correct_model_data",
        }
    }
}
