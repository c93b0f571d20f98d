//! The kinds every preset hangs on: avatar type, model kind and the FAL endpoints that train
//! and serve each, so trainer and generator choices stay in one table.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The two kinds of avatar; the kind decides trainer, model data and generation endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AvatarType {
    /// A person's likeness, trained with the LoRA portrait trainer.
    Portrait,
    /// An art style or object, trained with the FLUX pro finetune trainer.
    Style,
}

impl AvatarType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Portrait => "portrait",
            Self::Style => "style",
        }
    }
}

impl fmt::Display for AvatarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Trainer for portrait avatars.
pub const PORTRAIT_TRAINER: &str = "fal-ai/flux-lora-portrait-trainer";
/// Trainer for new style avatars: FLUX LoRA training in its style mode.
pub const STYLE_LORA_TRAINER: &str = "fal-ai/flux-lora-fast-training";
/// The pro finetune trainer of the seeds. FAL has deprecated it ("This endpoint is deprecated.
/// This model is no longer supported."); it stays for accounts where FAL still serves it.
pub const PRO_TRAINER: &str = "fal-ai/flux-pro-trainer";
/// The seeds' name for [`PRO_TRAINER`].
pub const STYLE_TRAINER: &str = PRO_TRAINER;
/// Generator for LoRA models, portrait and style alike.
pub const PORTRAIT_GENERATOR: &str = "fal-ai/flux-lora";
/// Generator for pro finetunes (FLUX1.1 ultra with a `finetune_id`).
pub const PRO_GENERATOR: &str = "fal-ai/flux-pro/v1.1-ultra-finetuned";
/// The seeds' name for [`PRO_GENERATOR`].
pub const STYLE_GENERATOR: &str = PRO_GENERATOR;

/// Which trainer a style avatar trains on: the LoRA trainer FAL supports today, or the
/// deprecated pro finetune trainer (an operator's choice, for accounts where FAL still runs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StyleTrainer {
    #[default]
    Lora,
    ProFinetune,
}

impl StyleTrainer {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "lora" => Some(Self::Lora),
            "pro_finetune" | "pro" => Some(Self::ProFinetune),
            _ => None,
        }
    }
}

/// The kind of model a training produces, fixed by its trainer; the generation endpoint and its
/// arguments follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A LoRA of a person (portrait trainer).
    PortraitLora,
    /// A LoRA of a style (LoRA trainer in style mode).
    StyleLora,
    /// A FLUX pro finetune, known by its `finetune_id`.
    ProFinetune,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PortraitLora => "portrait_lora",
            Self::StyleLora => "style_lora",
            Self::ProFinetune => "pro_finetune",
        }
    }

    /// The generation endpoint for this kind of model.
    pub fn generator(self) -> &'static str {
        match self {
            Self::PortraitLora | Self::StyleLora => PORTRAIT_GENERATOR,
            Self::ProFinetune => PRO_GENERATOR,
        }
    }

    /// The avatar type this kind of model belongs to.
    pub fn avatar_type(self) -> AvatarType {
        match self {
            Self::PortraitLora => AvatarType::Portrait,
            Self::StyleLora | Self::ProFinetune => AvatarType::Style,
        }
    }
}

/// The trainer endpoint for an avatar type.
pub fn trainer_for(avatar_type: AvatarType, style: StyleTrainer) -> &'static str {
    match (avatar_type, style) {
        (AvatarType::Portrait, _) => PORTRAIT_TRAINER,
        (AvatarType::Style, StyleTrainer::Lora) => STYLE_LORA_TRAINER,
        (AvatarType::Style, StyleTrainer::ProFinetune) => PRO_TRAINER,
    }
}
