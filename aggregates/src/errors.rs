//! Every way a command can be refused, one variant per rule.

use thiserror::Error;
use uuid::Uuid;

use crate::presets::AvatarType;

/// Which type rule (seed 000) a piece of model data breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelDataProblem {
    PortraitWithoutLoraFile,
    PortraitWithFinetuneId,
    StyleWithoutFinetuneId,
    StyleWithLoraFile,
    StyleLoraWithoutLoraFile,
    StyleLoraWithFinetuneId,
    /// Generation-time check: a style avatar holding a portrait model.
    StyleWithoutModel,
}

impl std::fmt::Display for ModelDataProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PortraitWithoutLoraFile => "a portrait avatar must have a LoRA file URL",
            Self::PortraitWithFinetuneId => "a portrait avatar must not have a finetune_id",
            Self::StyleWithoutFinetuneId => "a pro-finetune style avatar must have a finetune_id",
            Self::StyleWithLoraFile => "a pro-finetune style avatar must not have a LoRA file URL",
            Self::StyleLoraWithoutLoraFile => "a style LoRA avatar must have a LoRA file URL",
            Self::StyleLoraWithFinetuneId => "a style LoRA avatar must not have a finetune_id",
            Self::StyleWithoutModel => "a style avatar must have a style LoRA or a finetune_id",
        })
    }
}

/// Why the Avatar aggregate refused a command.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AvatarError {
    #[error("the avatar already exists")]
    AlreadyExists,
    #[error("there is no such avatar")]
    NotFound,
    #[error("the avatar was deleted")]
    Deleted,
    #[error("the avatar belongs to another user")]
    NotOwner,
    #[error("{actor} may not {action}")]
    NotPermitted {
        actor: &'static str,
        action: &'static str,
    },
    #[error("the name is empty")]
    EmptyName,
    #[error("the name has {actual} characters; at most {max} are allowed")]
    NameTooLong { max: usize, actual: usize },
    #[error("the name contains control characters")]
    NameHasControlCharacters,
    #[error("the name contains an invisible character ({code_point}) that can disguise it")]
    NameHasInvisibleCharacters { code_point: String },
    #[error("photos can no longer change: training has started")]
    PhotosLocked,
    #[error("the avatar already has the maximum of {max} photos")]
    TooManyPhotos { max: usize },
    #[error("the photo is {width}x{height}; at least {min}x{min} is required")]
    PhotoTooSmall { width: u32, height: u32, min: u32 },
    #[error("the photo is empty")]
    EmptyPhoto,
    #[error("the image format `{0}` is not accepted (JPEG, PNG or WebP)")]
    UnsupportedFormat(String),
    #[error("this photo was already uploaded as {existing}")]
    DuplicatePhoto { existing: String },
    #[error("there is no photo {0}")]
    UnknownPhoto(String),
    #[error("training needs at least {min} photos; the avatar has {have}")]
    NotEnoughPhotos { have: usize, min: usize },
    #[error("training has already started")]
    TrainingAlreadyStarted,
    #[error("the avatar is already trained")]
    AlreadyTrained,
    #[error("no training is waiting for this")]
    NoTrainingInProgress,
    #[error("training was already submitted as {0}")]
    SubmissionAlreadyRecorded(String),
    #[error("training request {0} was never submitted for this avatar")]
    UnknownTrainingRequest(String),
    #[error("❌ ОШИБКА ДАННЫХ: {problem} ({avatar_type} avatar)")]
    ModelDataMismatch {
        avatar_type: AvatarType,
        problem: ModelDataProblem,
    },
    #[error("the avatar is not trained yet")]
    NotTrained,
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the prompt has {actual} characters; at most {max} are allowed")]
    PromptTooLong { max: usize, actual: usize },
    #[error("{requested} images were asked for; 1 to {max} are allowed")]
    InvalidImageCount { requested: u32, max: u32 },
    #[error("item {index} of a batch of {size} is not a valid place in a batch of at most {max}")]
    InvalidBatch { index: u32, size: u32, max: u32 },
    #[error("training {0} was already requested")]
    DuplicateTraining(Uuid),
    #[error("generation {0} was already requested")]
    DuplicateGeneration(Uuid),
    #[error("generation {0} is unknown for this avatar")]
    UnknownGeneration(Uuid),
    #[error("generation {0} has already finished")]
    GenerationFinished(Uuid),
    #[error("generation {generation_id} was already submitted as {request_id}")]
    GenerationAlreadySubmitted {
        generation_id: Uuid,
        request_id: String,
    },
    #[error("`{0}` is not a pack id (1 to 64 of a-z, 0-9, - and _)")]
    InvalidPack(String),
    #[error("a generation's origin must be a pack here; upscales are asked for on their own")]
    InvalidOrigin,
    #[error("image {image} of generation {generation_id} is not available to upscale")]
    ImageUnavailable { generation_id: Uuid, image: u8 },
    #[error("an upscaled image cannot be upscaled again")]
    AlreadyUpscaled,
    #[error("a correction needs a reason")]
    EmptyReason,
}
