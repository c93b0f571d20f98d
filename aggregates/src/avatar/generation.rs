//! Generation rules: asking for images or an upscale, following the FAL job to its end, and
//! the exact generator input a model and preset produce.

use chrono::{DateTime, Utc};

use super::state::{Avatar, AvatarStatus};
use crate::commands::Action;
use crate::errors::{AvatarError, ModelDataProblem};
use crate::events::AvatarEvent;
use crate::model::TrainedModel;
use crate::presets::{
    self, aspect_ratio_for, AvatarType, FluxLoraInput, GenerationPreset, LoraWeight,
    UltraFinetunedInput, MAX_IMAGES_PER_GENERATION, MAX_PROMPT_CHARS,
};
use crate::values::{valid_pack_id, Origin, MAX_BATCH_SIZE};

impl Avatar {
    /// The events a generation action leads to; `decide` routes only these actions here, after
    /// the common checks.
    pub(super) fn decide_generation(
        &self,
        action: Action,
        owner: i64,
        at: DateTime<Utc>,
    ) -> Result<Vec<AvatarEvent>, AvatarError> {
        match action {
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

            _ => unreachable!("decide routes only generation actions here"),
        }
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
