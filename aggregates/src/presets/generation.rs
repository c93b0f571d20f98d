//! Generation presets, frames and the generator and upscaler inputs they fill in: the exact
//! JSON a generation or upscale submits, with the limits FAL puts on it.

use serde::{Deserialize, Serialize};

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
