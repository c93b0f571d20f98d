//! The model a training leaves behind, typed per kind of model: the avatar keeps it and its
//! events record it, so it lives beside both rather than inside either.

use serde::{Deserialize, Serialize};

use crate::commands::TrainingOutput;
use crate::errors::{AvatarError, ModelDataProblem};
use crate::presets::{AvatarType, ModelKind};

/// The model data kept after training, typed per model kind so a wrong shape cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TrainedModel {
    Portrait {
        lora_file_url: String,
        config_file_url: Option<String>,
        trigger_phrase: String,
    },
    /// A style LoRA from the LoRA trainer's style mode.
    StyleLora {
        lora_file_url: String,
        config_file_url: Option<String>,
        trigger_word: String,
    },
    /// A FLUX pro finetune; model data recorded before style LoRAs existed is of this kind
    /// (its old tag `style` reads as this variant).
    #[serde(alias = "style")]
    ProFinetune {
        finetune_id: String,
        trigger_word: String,
    },
}

impl TrainedModel {
    /// Checks reported model data against the kind of model the trainer makes (seed 000's
    /// type rules, made exact) and types it.
    pub fn from_output(
        kind: ModelKind,
        output: &TrainingOutput,
        trigger: &str,
    ) -> Result<Self, AvatarError> {
        fn non_empty(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|s| !s.trim().is_empty())
        }
        let mismatch = |problem| AvatarError::ModelDataMismatch {
            avatar_type: kind.avatar_type(),
            problem,
        };
        let lora = non_empty(&output.lora_file_url);
        let finetune = non_empty(&output.finetune_id);
        let config = non_empty(&output.config_file_url).map(str::to_owned);
        match kind {
            ModelKind::PortraitLora => {
                if finetune.is_some() {
                    return Err(mismatch(ModelDataProblem::PortraitWithFinetuneId));
                }
                let lora =
                    lora.ok_or_else(|| mismatch(ModelDataProblem::PortraitWithoutLoraFile))?;
                Ok(Self::Portrait {
                    lora_file_url: lora.to_owned(),
                    config_file_url: config,
                    trigger_phrase: trigger.to_owned(),
                })
            }
            ModelKind::StyleLora => {
                if finetune.is_some() {
                    return Err(mismatch(ModelDataProblem::StyleLoraWithFinetuneId));
                }
                let lora =
                    lora.ok_or_else(|| mismatch(ModelDataProblem::StyleLoraWithoutLoraFile))?;
                Ok(Self::StyleLora {
                    lora_file_url: lora.to_owned(),
                    config_file_url: config,
                    trigger_word: trigger.to_owned(),
                })
            }
            ModelKind::ProFinetune => {
                if lora.is_some() {
                    return Err(mismatch(ModelDataProblem::StyleWithLoraFile));
                }
                let finetune =
                    finetune.ok_or_else(|| mismatch(ModelDataProblem::StyleWithoutFinetuneId))?;
                Ok(Self::ProFinetune {
                    finetune_id: finetune.to_owned(),
                    trigger_word: trigger.to_owned(),
                })
            }
        }
    }

    pub fn kind(&self) -> ModelKind {
        match self {
            Self::Portrait { .. } => ModelKind::PortraitLora,
            Self::StyleLora { .. } => ModelKind::StyleLora,
            Self::ProFinetune { .. } => ModelKind::ProFinetune,
        }
    }

    pub fn avatar_type(&self) -> AvatarType {
        self.kind().avatar_type()
    }

    pub fn trigger(&self) -> &str {
        match self {
            Self::Portrait { trigger_phrase, .. } => trigger_phrase,
            Self::StyleLora { trigger_word, .. } | Self::ProFinetune { trigger_word, .. } => {
                trigger_word
            }
        }
    }

    /// The LoRA file, for the kinds that have one.
    pub fn lora_file_url(&self) -> Option<&str> {
        match self {
            Self::Portrait { lora_file_url, .. } | Self::StyleLora { lora_file_url, .. } => {
                Some(lora_file_url)
            }
            Self::ProFinetune { .. } => None,
        }
    }
}
