//! Training and generation presets, and the exact FAL inputs they turn into.
//!
//! Field names are FAL's own (see `fal-api.md`); the structs serialize to the JSON bodies that are
//! submitted, so an event that carries them is also the record of what FAL was asked.
//!
//! Parts: `kinds` (avatar types, model kinds, endpoints), `training` (training presets and
//! trainer parameters) and `generation` (generation presets, frames and generator inputs).

mod generation;
mod kinds;
mod training;

pub use generation::{
    aspect_ratio_for, AspectRatio, FluxLoraInput, GenerationPreset, LoraWeight, PresetValues,
    UltraFinetunedInput, UpscaleInput, DEFAULT_ASPECT_RATIO, DEFAULT_FINETUNE_STRENGTH,
    DEFAULT_IMAGE_SIZE, DEFAULT_LORA_SCALE, MAX_IMAGES_PER_GENERATION, MAX_PROMPT_CHARS, UPSCALER,
};
pub use kinds::{
    trainer_for, AvatarType, ModelKind, StyleTrainer, PORTRAIT_GENERATOR, PORTRAIT_TRAINER,
    PRO_GENERATOR, PRO_TRAINER, STYLE_GENERATOR, STYLE_LORA_TRAINER, STYLE_TRAINER,
};
pub use training::{
    PortraitTrainerParams, StyleLoraTrainerParams, StyleTrainerParams, TrainerParams,
    TrainingPreset,
};

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
