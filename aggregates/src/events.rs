//! Events: what happened to an avatar, in the past tense. Each carries its own time and what the
//! read models need, so projections never have to load the aggregate.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::TrainedModel;
use crate::presets::{AvatarType, GenerationPreset, TrainerParams, TrainingPreset};
use crate::values::{Actor, AvatarName, Gender, GeneratedImage, PhotoMeta};

/// Everything that can happen to an avatar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum AvatarEvent {
    AvatarCreated {
        avatar_id: Uuid,
        owner: i64,
        name: AvatarName,
        gender: Gender,
        avatar_type: AvatarType,
        at: DateTime<Utc>,
    },
    AvatarRenamed {
        name: AvatarName,
        at: DateTime<Utc>,
    },
    PhotoUploaded {
        photo: PhotoMeta,
        photo_count: usize,
        at: DateTime<Utc>,
    },
    PhotoRemoved {
        photo_id: String,
        photo_count: usize,
        at: DateTime<Utc>,
    },
    TrainingStarted {
        /// The id the request gave the training (nil in events from before trainings had one).
        #[serde(default)]
        training_id: Uuid,
        owner: i64,
        avatar_type: AvatarType,
        preset: TrainingPreset,
        endpoint: String,
        params: TrainerParams,
        /// Storage keys of the photos trained on, in upload order.
        photo_keys: Vec<String>,
        at: DateTime<Utc>,
    },
    TrainingSubmitted {
        request_id: String,
        endpoint: String,
        status_url: String,
        response_url: String,
        cancel_url: String,
        /// `None` when the submission was adopted from FAL's webhook (see the command).
        archive_url: Option<String>,
        at: DateTime<Utc>,
    },
    TrainingCompleted {
        owner: i64,
        request_id: String,
        model: TrainedModel,
        at: DateTime<Utc>,
    },
    TrainingFailed {
        owner: i64,
        request_id: Option<String>,
        reason: String,
        /// A FAL job we gave up on while it may still run: cancel it (absent in old events).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cancel_url: Option<String>,
        at: DateTime<Utc>,
    },
    /// The retention period after a successful training passed and the photos it trained on
    /// were removed from the photo store; the model stays.
    TrainingPhotosDeleted {
        /// Storage keys of the photos removed, in upload order.
        photo_keys: Vec<String>,
        at: DateTime<Utc>,
    },
    GenerationRequested {
        owner: i64,
        generation_id: Uuid,
        /// The user's prompt as typed.
        prompt: String,
        preset: Option<GenerationPreset>,
        endpoint: String,
        /// The exact JSON input for `endpoint`, trigger already in front of the prompt.
        arguments: serde_json::Value,
        num_images: u32,
        /// The frame the user chose apart from the preset (already in `arguments`); absent in
        /// events written before the choice existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        aspect: Option<crate::presets::AspectRatio>,
        /// The prompt's place in a batch sent as one message, if it came in one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch: Option<crate::values::BatchItem>,
        /// A pack, the starter samples or an upscale; absent for a prompt the user typed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<crate::values::Origin>,
        at: DateTime<Utc>,
    },
    /// FAL accepted the generation job: from now on only its request id can finish it.
    GenerationSubmitted {
        generation_id: Uuid,
        request_id: String,
        status_url: String,
        response_url: String,
        cancel_url: String,
        at: DateTime<Utc>,
    },
    GenerationCompleted {
        owner: i64,
        generation_id: Uuid,
        images: Vec<GeneratedImage>,
        at: DateTime<Utc>,
    },
    GenerationFailed {
        owner: i64,
        generation_id: Uuid,
        reason: String,
        /// A FAL job we gave up on while it may still run: cancel it (absent in old events).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cancel_url: Option<String>,
        at: DateTime<Utc>,
    },
    AvatarDeleted {
        owner: i64,
        /// What must be cleaned up outside: stored photos, a running FAL job, the model.
        photo_keys: Vec<String>,
        running_training_cancel_url: Option<String>,
        /// FAL generation jobs still running when the avatar was deleted (absent in old events).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        running_generation_cancel_urls: Vec<String>,
        model: Option<TrainedModel>,
        at: DateTime<Utc>,
    },
    ModelDataCorrected {
        corrected_by: Actor,
        reason: String,
        previous_type: AvatarType,
        previous_model: Option<TrainedModel>,
        avatar_type: AvatarType,
        model: TrainedModel,
        at: DateTime<Utc>,
    },
}

impl AvatarEvent {
    /// When it happened.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::AvatarCreated { at, .. }
            | Self::AvatarRenamed { at, .. }
            | Self::PhotoUploaded { at, .. }
            | Self::PhotoRemoved { at, .. }
            | Self::TrainingStarted { at, .. }
            | Self::TrainingSubmitted { at, .. }
            | Self::TrainingCompleted { at, .. }
            | Self::TrainingFailed { at, .. }
            | Self::TrainingPhotosDeleted { at, .. }
            | Self::GenerationRequested { at, .. }
            | Self::GenerationSubmitted { at, .. }
            | Self::GenerationCompleted { at, .. }
            | Self::GenerationFailed { at, .. }
            | Self::AvatarDeleted { at, .. }
            | Self::ModelDataCorrected { at, .. } => *at,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::AvatarCreated { .. } => "AvatarCreated",
            Self::AvatarRenamed { .. } => "AvatarRenamed",
            Self::PhotoUploaded { .. } => "PhotoUploaded",
            Self::PhotoRemoved { .. } => "PhotoRemoved",
            Self::TrainingStarted { .. } => "TrainingStarted",
            Self::TrainingSubmitted { .. } => "TrainingSubmitted",
            Self::TrainingCompleted { .. } => "TrainingCompleted",
            Self::TrainingFailed { .. } => "TrainingFailed",
            Self::TrainingPhotosDeleted { .. } => "TrainingPhotosDeleted",
            Self::GenerationRequested { .. } => "GenerationRequested",
            Self::GenerationSubmitted { .. } => "GenerationSubmitted",
            Self::GenerationCompleted { .. } => "GenerationCompleted",
            Self::GenerationFailed { .. } => "GenerationFailed",
            Self::AvatarDeleted { .. } => "AvatarDeleted",
            Self::ModelDataCorrected { .. } => "ModelDataCorrected",
        }
    }
}

/// Version of every event shape today; bump one event's version (and add an upcaster in the
/// store) when its shape changes.
pub const EVENT_VERSION: &str = "1";

impl DomainEvent for AvatarEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}
