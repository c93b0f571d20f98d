//! Training presets and the trainer parameters they produce; these are stored in events, so
//! their serialized shape (and old names) must keep reading.

use serde::{Deserialize, Serialize};

use super::kinds::{
    AvatarType, ModelKind, StyleTrainer, PORTRAIT_TRAINER, PRO_TRAINER, STYLE_LORA_TRAINER,
};

/// Training quality presets (seed 001).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TrainingPreset {
    Fast,
    #[default]
    Balanced,
    Quality,
}

impl TrainingPreset {
    pub const ALL: [Self; 3] = [Self::Fast, Self::Balanced, Self::Quality];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Balanced => "balanced",
            Self::Quality => "quality",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Parameters of `fal-ai/flux-lora-portrait-trainer`, without the archive URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortraitTrainerParams {
    pub trigger_phrase: String,
    pub steps: u32,
    pub learning_rate: f64,
    pub multiresolution_training: bool,
    pub subject_crop: bool,
    pub create_masks: bool,
}

/// Parameters of `fal-ai/flux-lora-fast-training` in style mode, without the archive URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StyleLoraTrainerParams {
    pub trigger_word: String,
    pub steps: u32,
    /// Style mode: no segmentation or captioning; the trigger word stands for the style.
    pub is_style: bool,
    pub create_masks: bool,
}

/// Parameters of `fal-ai/flux-pro-trainer`, without the archive URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StyleTrainerParams {
    pub trigger_word: String,
    pub mode: String,
    pub iterations: u32,
    pub learning_rate: f64,
    pub priority: String,
    pub captioning: bool,
    pub lora_rank: u32,
    pub finetune_type: String,
    pub finetune_comment: String,
}

/// What a trainer is asked to do: one variant per trainer endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "trainer", rename_all = "snake_case")]
pub enum TrainerParams {
    Portrait(PortraitTrainerParams),
    StyleLora(StyleLoraTrainerParams),
    /// The pro finetune trainer; events written before the LoRA trainer call it `style`.
    #[serde(alias = "style")]
    ProFinetune(StyleTrainerParams),
}

impl TrainerParams {
    /// The parameters for an avatar type and preset; `trigger` is the avatar's trigger token and
    /// `label` names the finetune on FAL's side.
    pub fn for_preset(
        avatar_type: AvatarType,
        style: StyleTrainer,
        preset: TrainingPreset,
        trigger: &str,
        label: &str,
    ) -> Self {
        match (avatar_type, style) {
            (AvatarType::Style, StyleTrainer::Lora) => {
                // A style needs fewer steps than a face; FAL's default for this trainer is 1000.
                let steps = match preset {
                    TrainingPreset::Fast => 500,
                    TrainingPreset::Balanced => 1000,
                    TrainingPreset::Quality => 1500,
                };
                Self::StyleLora(StyleLoraTrainerParams {
                    trigger_word: trigger.to_owned(),
                    steps,
                    is_style: true,
                    create_masks: false,
                })
            }
            (AvatarType::Portrait, _) => {
                let (steps, learning_rate) = match preset {
                    TrainingPreset::Fast => (300, 0.0003),
                    TrainingPreset::Balanced => (600, 0.0002),
                    TrainingPreset::Quality => (1000, 0.0001),
                };
                Self::Portrait(PortraitTrainerParams {
                    trigger_phrase: trigger.to_owned(),
                    steps,
                    learning_rate,
                    multiresolution_training: true,
                    subject_crop: true,
                    create_masks: false,
                })
            }
            (AvatarType::Style, StyleTrainer::ProFinetune) => {
                // fast trains a raw LoRA (FAL's LoRA default rate 1e-4) for speed; the others a
                // full finetune (default rate 1e-5) with more iterations.
                let (iterations, learning_rate, priority, finetune_type, lora_rank) = match preset {
                    TrainingPreset::Fast => (300, 0.0001, "speed", "lora", 16),
                    TrainingPreset::Balanced => (600, 0.00001, "quality", "full", 32),
                    TrainingPreset::Quality => (1000, 0.00001, "quality", "full", 32),
                };
                Self::ProFinetune(StyleTrainerParams {
                    trigger_word: trigger.to_owned(),
                    mode: "general".to_owned(),
                    iterations,
                    learning_rate,
                    priority: priority.to_owned(),
                    captioning: true,
                    lora_rank,
                    finetune_type: finetune_type.to_owned(),
                    finetune_comment: label.to_owned(),
                })
            }
        }
    }

    pub fn endpoint(&self) -> &'static str {
        match self {
            Self::Portrait(_) => PORTRAIT_TRAINER,
            Self::StyleLora(_) => STYLE_LORA_TRAINER,
            Self::ProFinetune(_) => PRO_TRAINER,
        }
    }

    /// The kind of model this trainer produces.
    pub fn model_kind(&self) -> ModelKind {
        match self {
            Self::Portrait(_) => ModelKind::PortraitLora,
            Self::StyleLora(_) => ModelKind::StyleLora,
            Self::ProFinetune(_) => ModelKind::ProFinetune,
        }
    }

    /// The trigger token the trainer was given.
    pub fn trigger(&self) -> &str {
        match self {
            Self::Portrait(p) => &p.trigger_phrase,
            Self::StyleLora(p) => &p.trigger_word,
            Self::ProFinetune(p) => &p.trigger_word,
        }
    }

    /// The full JSON body to submit, with the archive URL under the field each trainer expects.
    pub fn to_fal_input(&self, archive_url: &str) -> serde_json::Value {
        let (body, field) = match self {
            Self::Portrait(p) => (serde_json::to_value(p), "images_data_url"),
            Self::StyleLora(p) => (serde_json::to_value(p), "images_data_url"),
            Self::ProFinetune(p) => (serde_json::to_value(p), "data_url"),
        };
        let mut body = body.unwrap_or_default();
        if let Some(map) = body.as_object_mut() {
            map.insert(field.to_owned(), archive_url.into());
        }
        body
    }
}
