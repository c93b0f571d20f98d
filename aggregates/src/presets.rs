//! Training and generation presets, and the exact FAL inputs they turn into.
//!
//! Field names are FAL's own (see `fal-api.md`); the structs serialize to the JSON bodies that are
//! submitted, so an event that carries them is also the record of what FAL was asked.

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

/// Generation presets (seeds 002 and 004).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GenerationPreset {
    Fast,
    Balanced,
    Quality,
    Ultra,
    Portrait,
    Landscape,
    Artistic,
    Photorealistic,
}

/// The numbers behind one generation preset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PresetValues {
    pub steps: u32,
    pub guidance: f64,
    pub image_size: &'static str,
    pub lora_scale: f64,
    pub finetune_strength: f64,
    /// FLUX ultra's `raw` mode: a less processed, more natural look.
    pub raw: bool,
    /// Expected wall time in seconds, for the progress message.
    pub expected_seconds: (u32, u32),
}

impl GenerationPreset {
    pub const ALL: [Self; 8] = [
        Self::Fast,
        Self::Balanced,
        Self::Quality,
        Self::Ultra,
        Self::Portrait,
        Self::Landscape,
        Self::Artistic,
        Self::Photorealistic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Balanced => "balanced",
            Self::Quality => "quality",
            Self::Ultra => "ultra",
            Self::Portrait => "portrait",
            Self::Landscape => "landscape",
            Self::Artistic => "artistic",
            Self::Photorealistic => "photorealistic",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The preset table. `artistic` and `photorealistic` are ours: artistic follows the prompt
    /// harder (higher guidance) with a lighter LoRA so the style can move; photorealistic uses
    /// lower guidance, which looks more natural on FLUX, a portrait frame and ultra's raw mode.
    pub fn values(self) -> PresetValues {
        let v = |steps, guidance, image_size, lora_scale, finetune_strength, raw, expected| {
            PresetValues {
                steps,
                guidance,
                image_size,
                lora_scale,
                finetune_strength,
                raw,
                expected_seconds: expected,
            }
        };
        match self {
            Self::Fast => v(20, 3.0, "square", 0.8, 0.8, false, (15, 25)),
            Self::Balanced => v(28, 3.5, "square_hd", 1.0, 1.0, false, (25, 35)),
            Self::Quality => v(50, 4.0, "square_hd", 1.2, 1.2, false, (40, 60)),
            Self::Ultra => v(35, 3.5, "square_hd", 1.1, 1.1, false, (60, 90)),
            Self::Portrait => v(35, 3.5, "portrait_4_3", 1.1, 1.0, false, (35, 50)),
            Self::Landscape => v(30, 3.5, "landscape_4_3", 1.0, 1.0, false, (30, 45)),
            Self::Artistic => v(40, 5.0, "square_hd", 0.9, 1.2, false, (35, 50)),
            Self::Photorealistic => v(40, 3.0, "portrait_4_3", 1.0, 1.0, true, (35, 50)),
        }
    }
}

/// The frame a user picks for a generation, apart from the preset: each endpoint names it its
/// own way (`image_size` on the LoRA endpoint, `aspect_ratio` on the ultra endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AspectRatio {
    Square,
    /// 3:4, upright.
    Portrait,
    /// 9:16, upright: phone screens, stories.
    Tall,
    /// 4:3.
    Landscape,
    /// 16:9.
    Wide,
}

impl AspectRatio {
    pub const ALL: [Self; 5] = [
        Self::Square,
        Self::Portrait,
        Self::Tall,
        Self::Landscape,
        Self::Wide,
    ];

    /// As people write it: `1:1`, `3:4`, `9:16`, `4:3`, `16:9` (also the ultra endpoint's value).
    pub fn ratio(self) -> &'static str {
        match self {
            Self::Square => "1:1",
            Self::Portrait => "3:4",
            Self::Tall => "9:16",
            Self::Landscape => "4:3",
            Self::Wide => "16:9",
        }
    }

    /// The LoRA endpoint's named size; a square keeps the preset's own square (`square` is the
    /// fast preset's smaller frame).
    pub fn image_size(self, preset_size: &'static str) -> &'static str {
        match self {
            Self::Square if preset_size.starts_with("square") => preset_size,
            Self::Square => "square_hd",
            Self::Portrait => "portrait_4_3",
            Self::Tall => "portrait_16_9",
            Self::Landscape => "landscape_4_3",
            Self::Wide => "landscape_16_9",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.ratio() == s)
    }
}

/// The ultra endpoint takes an aspect ratio where the LoRA endpoint takes a named size.
pub fn aspect_ratio_for(image_size: &str) -> &'static str {
    match image_size {
        "portrait_4_3" => "3:4",
        "portrait_16_9" => "9:16",
        "landscape_4_3" => "4:3",
        "landscape_16_9" => "16:9",
        _ => "1:1",
    }
}

/// One LoRA in `fal-ai/flux-lora`'s `loras` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraWeight {
    pub path: String,
    pub scale: f64,
}

/// Input of `fal-ai/flux-lora`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FluxLoraInput {
    pub prompt: String,
    pub loras: Vec<LoraWeight>,
    pub image_size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_inference_steps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<f64>,
    pub num_images: u32,
}

/// Input of `fal-ai/flux-pro/v1.1-ultra-finetuned`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UltraFinetunedInput {
    pub prompt: String,
    pub finetune_id: String,
    pub finetune_strength: f64,
    pub aspect_ratio: String,
    pub num_images: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw: bool,
}

/// Seed 000's arguments when the user picks no preset.
pub const DEFAULT_LORA_SCALE: f64 = 1.0;
pub const DEFAULT_IMAGE_SIZE: &str = "square_hd";
pub const DEFAULT_FINETUNE_STRENGTH: f64 = 1.1;
pub const DEFAULT_ASPECT_RATIO: &str = "1:1";

/// Longest user prompt accepted, in characters. FAL's generators take long prompts, but the
/// text encoder keeps only its first 512 tokens; past roughly this many characters the end of a
/// prompt would be silently dropped, so we refuse instead.
pub const MAX_PROMPT_CHARS: usize = 1500;
/// FAL's image upscaler (SeedVR2): `image_url` and an `upscale_factor`, one image back.
pub const UPSCALER: &str = "fal-ai/seedvr/upscale/image";

/// Input of [`UPSCALER`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpscaleInput {
    pub image_url: String,
    /// `factor`: multiply both sides by `upscale_factor` (the other mode aims at a resolution).
    pub upscale_mode: String,
    pub upscale_factor: f64,
}

/// Images per generation request, as both generators allow.
pub const MAX_IMAGES_PER_GENERATION: u32 = 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trainer_inputs_put_the_archive_under_each_trainers_own_field() {
        let portrait = TrainerParams::for_preset(
            AvatarType::Portrait,
            StyleTrainer::Lora,
            TrainingPreset::Quality,
            "PERSON_1",
            "x",
        );
        let body = portrait.to_fal_input("https://files/a.zip");
        assert_eq!(body["images_data_url"], "https://files/a.zip");
        assert_eq!(body["steps"], 1000);
        assert_eq!(body["learning_rate"], 0.0001);
        assert!(body.get("trainer").is_none());

        let style = TrainerParams::for_preset(
            AvatarType::Style,
            StyleTrainer::Lora,
            TrainingPreset::Fast,
            "STYLE_1",
            "x",
        );
        let body = style.to_fal_input("https://files/c.zip");
        assert_eq!(
            body,
            serde_json::json!({"images_data_url": "https://files/c.zip", "trigger_word": "STYLE_1",
                "steps": 500, "is_style": true, "create_masks": false})
        );

        let pro = TrainerParams::for_preset(
            AvatarType::Style,
            StyleTrainer::ProFinetune,
            TrainingPreset::Fast,
            "STYLE_1",
            "x",
        );
        let body = pro.to_fal_input("https://files/b.zip");
        assert_eq!(body["data_url"], "https://files/b.zip");
        assert_eq!(body["trigger_word"], "STYLE_1");
        assert_eq!(body["finetune_comment"], "x");
    }

    #[test]
    fn trainer_params_of_old_events_read_as_the_pro_finetune_trainer() {
        let old = serde_json::json!({"trainer": "style", "trigger_word": "STYLE_1", "mode": "general",
            "iterations": 300, "learning_rate": 0.0001, "priority": "speed", "captioning": true,
            "lora_rank": 16, "finetune_type": "lora", "finetune_comment": "x"});
        let params: TrainerParams = serde_json::from_value(old).unwrap();
        assert_eq!(params.model_kind(), ModelKind::ProFinetune);
        assert_eq!(params.endpoint(), PRO_TRAINER);
    }

    #[test]
    fn every_preset_has_a_name_that_parses_back() {
        for p in GenerationPreset::ALL {
            assert_eq!(GenerationPreset::parse(p.as_str()), Some(p));
        }
        for p in TrainingPreset::ALL {
            assert_eq!(TrainingPreset::parse(p.as_str()), Some(p));
        }
    }
}
