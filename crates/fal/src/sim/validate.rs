//! Input checks for the endpoints Aisha uses, answering in FAL's 422 shape: a `detail` list of
//! `{"loc", "msg", "type"}` entries, as FAL's (pydantic) validation writes them.
//!
//! As on FAL, these run when a runner picks the job up, not at submit: an invalid input is
//! accepted into the queue and fails there (see `jobs::work`).

use serde_json::{json, Map, Value};

/// `fal-ai/flux-lora-portrait-trainer`.
pub(super) const PORTRAIT_TRAINER_ID: &str = "fal-ai/flux-lora-portrait-trainer";
/// `fal-ai/flux-lora-fast-training`: the LoRA trainer, used in its style mode for style avatars.
pub(super) const FAST_TRAINER_ID: &str = "fal-ai/flux-lora-fast-training";
/// `fal-ai/flux-pro-trainer`: deprecated by FAL, served only when the simulator is told to.
pub(super) const PRO_TRAINER_ID: &str = "fal-ai/flux-pro-trainer";
/// `fal-ai/flux-lora`.
pub(super) const FLUX_LORA_ID: &str = "fal-ai/flux-lora";
/// `fal-ai/flux-pro/v1.1-ultra-finetuned`.
pub(super) const ULTRA_ID: &str = "fal-ai/flux-pro/v1.1-ultra-finetuned";
/// `fal-ai/seedvr/upscale/image`: SeedVR2, the image upscaler.
pub(super) const UPSCALER_ID: &str = "fal-ai/seedvr/upscale/image";

/// The endpoints the simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    PortraitTrainer,
    /// The LoRA trainer (`fal-ai/flux-lora-fast-training`).
    FastTrainer,
    /// The deprecated pro finetune trainer (`fal-ai/flux-pro-trainer`).
    ProTrainer,
    PortraitGenerator,
    StyleGenerator,
    /// The upscaler (`fal-ai/seedvr/upscale/image`).
    Upscaler,
}

impl Endpoint {
    pub(super) fn from_model_id(model_id: &str) -> Option<Self> {
        match model_id {
            PORTRAIT_TRAINER_ID => Some(Self::PortraitTrainer),
            FAST_TRAINER_ID => Some(Self::FastTrainer),
            PRO_TRAINER_ID => Some(Self::ProTrainer),
            FLUX_LORA_ID => Some(Self::PortraitGenerator),
            ULTRA_ID => Some(Self::StyleGenerator),
            UPSCALER_ID => Some(Self::Upscaler),
            _ => None,
        }
    }

    pub(super) fn is_trainer(self) -> bool {
        matches!(
            self,
            Self::PortraitTrainer | Self::FastTrainer | Self::ProTrainer
        )
    }

    /// The field holding the training archive's URL.
    pub(super) fn archive_field(self) -> Option<&'static str> {
        match self {
            Self::PortraitTrainer | Self::FastTrainer => Some("images_data_url"),
            Self::ProTrainer => Some("data_url"),
            _ => None,
        }
    }

    fn fields(self) -> &'static [Field] {
        match self {
            Self::PortraitTrainer => PORTRAIT_TRAINER_FIELDS,
            Self::FastTrainer => FAST_TRAINER_FIELDS,
            Self::ProTrainer => PRO_TRAINER_FIELDS,
            Self::PortraitGenerator => FLUX_LORA_FIELDS,
            Self::StyleGenerator => ULTRA_FIELDS,
            Self::Upscaler => UPSCALER_FIELDS,
        }
    }
}

/// What a field must hold.
enum Kind {
    Str,
    Int {
        min: i64,
        max: i64,
    },
    Num {
        min: f64,
        max: f64,
    },
    /// A number strictly above zero.
    Positive,
    Bool,
    StrChoice(&'static [&'static str]),
    IntChoice(&'static [i64]),
    /// A named size or `{"width", "height"}`.
    ImageSize,
    /// `[{"path", "scale"}]`.
    Loras,
}

struct Field {
    name: &'static str,
    required: bool,
    kind: Kind,
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        required: true,
        kind,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        required: false,
        kind,
    }
}

const PORTRAIT_TRAINER_FIELDS: &[Field] = &[
    req("images_data_url", Kind::Str),
    opt("trigger_phrase", Kind::Str),
    opt("learning_rate", Kind::Positive),
    opt(
        "steps",
        Kind::Int {
            min: 1,
            max: 10_000,
        },
    ),
    opt("multiresolution_training", Kind::Bool),
    opt("subject_crop", Kind::Bool),
    opt("create_masks", Kind::Bool),
    opt("data_archive_format", Kind::Str),
    opt("resume_from_checkpoint", Kind::Str),
];

/// The input of `fal-ai/flux-lora-fast-training`, per FAL's generated types.
const FAST_TRAINER_FIELDS: &[Field] = &[
    req("images_data_url", Kind::Str),
    opt("trigger_word", Kind::Str),
    opt("create_masks", Kind::Bool),
    opt(
        "steps",
        Kind::Int {
            min: 1,
            max: 10_000,
        },
    ),
    opt("is_style", Kind::Bool),
    opt("is_input_format_already_preprocessed", Kind::Bool),
    opt("data_archive_format", Kind::Str),
];

/// The deprecated pro trainer's input: `finetune_comment` was required.
const PRO_TRAINER_FIELDS: &[Field] = &[
    req("data_url", Kind::Str),
    opt(
        "mode",
        Kind::StrChoice(&["character", "product", "style", "general"]),
    ),
    opt(
        "iterations",
        Kind::Int {
            min: 1,
            max: 10_000,
        },
    ),
    opt("learning_rate", Kind::Positive),
    opt(
        "priority",
        Kind::StrChoice(&["speed", "quality", "high_res_only"]),
    ),
    opt("captioning", Kind::Bool),
    opt("trigger_word", Kind::Str),
    opt("lora_rank", Kind::IntChoice(&[16, 32])),
    opt("finetune_type", Kind::StrChoice(&["full", "lora"])),
    req("finetune_comment", Kind::Str),
];

const OUTPUT_FORMATS: &[&str] = &["jpeg", "png"];

const FLUX_LORA_FIELDS: &[Field] = &[
    req("prompt", Kind::Str),
    opt("loras", Kind::Loras),
    opt("image_size", Kind::ImageSize),
    opt("num_inference_steps", Kind::Int { min: 1, max: 50 }),
    opt(
        "guidance_scale",
        Kind::Num {
            min: 0.0,
            max: 35.0,
        },
    ),
    opt("num_images", Kind::Int { min: 1, max: 4 }),
    opt(
        "seed",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
    ),
    opt("enable_safety_checker", Kind::Bool),
    opt("output_format", Kind::StrChoice(OUTPUT_FORMATS)),
    opt("sync_mode", Kind::Bool),
    // FAL's current schema; its values are FAL's business, any string is passed on.
    opt("acceleration", Kind::Str),
];

const ULTRA_FIELDS: &[Field] = &[
    req("prompt", Kind::Str),
    req("finetune_id", Kind::Str),
    req("finetune_strength", Kind::Num { min: 0.0, max: 2.0 }),
    // Any string: FAL's schema types it as a string, not a list of ratios.
    opt("aspect_ratio", Kind::Str),
    opt("num_images", Kind::Int { min: 1, max: 4 }),
    opt("raw", Kind::Bool),
    opt(
        "safety_tolerance",
        Kind::StrChoice(&["1", "2", "3", "4", "5", "6"]),
    ),
    // `enable_safety_checker` is gone from the current schema; like any unknown field, it is
    // ignored.
    opt("output_format", Kind::StrChoice(OUTPUT_FORMATS)),
    opt(
        "seed",
        Kind::Int {
            min: 0,
            max: i64::MAX,
        },
    ),
    opt("sync_mode", Kind::Bool),
];

/// The upscaler's input, per its model page and FAL's generated client types: only `image_url`
/// is required; the factor is a float from 1 to 10.
const UPSCALER_FIELDS: &[Field] = &[
    req("image_url", Kind::Str),
    opt("upscale_mode", Kind::StrChoice(&["target", "factor"])),
    opt(
        "upscale_factor",
        Kind::Num {
            min: 1.0,
            max: 10.0,
        },
    ),
    opt(
        "target_resolution",
        Kind::StrChoice(&["720p", "1080p", "1440p", "2160p"]),
    ),
    // Unbounded in FAL's schema (an integer or null).
    opt(
        "seed",
        Kind::Int {
            min: i64::MIN,
            max: i64::MAX,
        },
    ),
    opt("noise_scale", Kind::Num { min: 0.0, max: 1.0 }),
    // Not the generators' `jpeg`: this model spells it `jpg`.
    opt("output_format", Kind::StrChoice(&["png", "jpg", "webp"])),
    opt("sync_mode", Kind::Bool),
];

/// The side FAL uses when an `image_size` object leaves one out.
pub(super) const DEFAULT_IMAGE_SIDE: u32 = 512;

/// Named sizes of `fal-ai/flux-lora`, with their pixel sizes.
pub(super) const IMAGE_SIZES: &[(&str, u32, u32)] = &[
    ("square_hd", 1024, 1024),
    ("square", 512, 512),
    ("portrait_4_3", 768, 1024),
    ("portrait_16_9", 576, 1024),
    ("landscape_4_3", 1024, 768),
    ("landscape_16_9", 1024, 576),
];

/// One validation error entry.
pub(super) fn issue(loc: &[Value], msg: &str, kind: &str, input: Option<&Value>) -> Value {
    let mut entry = json!({ "loc": loc, "msg": msg, "type": kind });
    if let Some(input) = input {
        entry["input"] = input.clone();
    }
    entry
}

/// Every problem with `input` for `endpoint`; empty when it is acceptable.
pub(super) fn check(endpoint: Endpoint, input: &Value) -> Vec<Value> {
    let Some(body) = input.as_object() else {
        return vec![issue(
            &[json!("body")],
            "Input should be a valid dictionary",
            "dict_type",
            Some(input),
        )];
    };
    let mut issues = Vec::new();
    for field in endpoint.fields() {
        let loc = [json!("body"), json!(field.name)];
        match body.get(field.name) {
            None if field.required => {
                issues.push(issue(&loc, "Field required", "missing", None));
            }
            // Optional fields may be null: FAL's models declare them `Optional`.
            None | Some(Value::Null) if !field.required => {}
            Some(value) => check_value(&field.kind, value, &loc, &mut issues),
            None => {}
        }
    }
    issues
}

fn check_value(kind: &Kind, value: &Value, loc: &[Value], issues: &mut Vec<Value>) {
    let mut fail = |msg: String, kind: &str| issues.push(issue(loc, &msg, kind, Some(value)));
    match kind {
        Kind::Str => {
            if !value.is_string() {
                fail("Input should be a valid string".into(), "string_type");
            }
        }
        Kind::Bool => {
            if !value.is_boolean() {
                fail("Input should be a valid boolean".into(), "bool_type");
            }
        }
        Kind::Int { min, max } => match value.as_i64() {
            None if value.is_u64() => fail(
                format!("Input should be less than or equal to {max}"),
                "less_than_equal",
            ),
            None => fail("Input should be a valid integer".into(), "int_type"),
            Some(n) if n < *min => fail(
                format!("Input should be greater than or equal to {min}"),
                "greater_than_equal",
            ),
            Some(n) if n > *max => fail(
                format!("Input should be less than or equal to {max}"),
                "less_than_equal",
            ),
            Some(_) => {}
        },
        Kind::Num { min, max } => match value.as_f64() {
            None => fail("Input should be a valid number".into(), "float_type"),
            Some(n) if n < *min => fail(
                format!("Input should be greater than or equal to {min}"),
                "greater_than_equal",
            ),
            Some(n) if n > *max => fail(
                format!("Input should be less than or equal to {max}"),
                "less_than_equal",
            ),
            Some(_) => {}
        },
        Kind::Positive => match value.as_f64() {
            None => fail("Input should be a valid number".into(), "float_type"),
            Some(n) if n <= 0.0 => fail("Input should be greater than 0".into(), "greater_than"),
            Some(_) => {}
        },
        Kind::StrChoice(choices) => {
            if !value.as_str().is_some_and(|s| choices.contains(&s)) {
                fail(
                    format!(
                        "Input should be {}",
                        list(choices.iter().map(|c| format!("'{c}'")))
                    ),
                    "literal_error",
                );
            }
        }
        Kind::IntChoice(choices) => {
            if !value.as_i64().is_some_and(|n| choices.contains(&n)) {
                fail(
                    format!(
                        "Input should be {}",
                        list(choices.iter().map(i64::to_string))
                    ),
                    "literal_error",
                );
            }
        }
        Kind::ImageSize => check_image_size(value, loc, issues),
        Kind::Loras => check_loras(value, loc, issues),
    }
}

/// `a`, `a or b`, `a, b or c`: pydantic's way of listing choices.
fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

fn check_image_size(value: &Value, loc: &[Value], issues: &mut Vec<Value>) {
    match value {
        Value::String(name) if IMAGE_SIZES.iter().any(|(n, _, _)| n == name) => {}
        // Either side may be left out: FAL fills it with its default (512).
        Value::Object(size) => {
            for side in ["width", "height"] {
                let side_loc = [loc, &[json!(side)]].concat();
                match size.get(side) {
                    None | Some(Value::Null) => {}
                    Some(v) => check_value(
                        &Kind::Int {
                            min: 1,
                            max: 14_142,
                        },
                        v,
                        &side_loc,
                        issues,
                    ),
                }
            }
        }
        other => {
            let names = list(IMAGE_SIZES.iter().map(|(n, _, _)| format!("'{n}'")));
            issues.push(issue(
                loc,
                &format!("Input should be {names}, or an object with width and height"),
                "literal_error",
                Some(other),
            ));
        }
    }
}

fn check_loras(value: &Value, loc: &[Value], issues: &mut Vec<Value>) {
    let Some(loras) = value.as_array() else {
        issues.push(issue(
            loc,
            "Input should be a valid list",
            "list_type",
            Some(value),
        ));
        return;
    };
    for (index, lora) in loras.iter().enumerate() {
        let lora_loc = [loc, &[json!(index)]].concat();
        let Some(lora) = lora.as_object() else {
            issues.push(issue(
                &lora_loc,
                "Input should be a valid dictionary",
                "dict_type",
                Some(lora),
            ));
            continue;
        };
        check_fields(
            lora,
            &[
                req("path", Kind::Str),
                opt(
                    "scale",
                    Kind::Num {
                        min: -4.0,
                        max: 4.0,
                    },
                ),
                opt("force", Kind::Bool),
            ],
            &lora_loc,
            issues,
        );
    }
}

fn check_fields(
    body: &Map<String, Value>,
    fields: &[Field],
    loc: &[Value],
    issues: &mut Vec<Value>,
) {
    for field in fields {
        let field_loc = [loc, &[json!(field.name)]].concat();
        match body.get(field.name) {
            None if field.required => {
                issues.push(issue(&field_loc, "Field required", "missing", None))
            }
            None => {}
            Some(Value::Null) if !field.required => {}
            Some(value) => check_value(&field.kind, value, &field_loc, issues),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::presets::{
        FluxLoraInput, LoraWeight, TrainerParams, TrainingPreset, UltraFinetunedInput,
    };
    use aggregates::AvatarType;

    #[test]
    fn the_inputs_aisha_builds_pass() {
        let style_trainers = [
            aggregates::StyleTrainer::Lora,
            aggregates::StyleTrainer::ProFinetune,
        ];
        for avatar_type in [AvatarType::Portrait, AvatarType::Style] {
            for style in style_trainers {
                for preset in TrainingPreset::ALL {
                    let params =
                        TrainerParams::for_preset(avatar_type, style, preset, "TOK_1", "label");
                    let endpoint = Endpoint::from_model_id(params.endpoint()).unwrap();
                    let issues = check(endpoint, &params.to_fal_input("http://x/files/a/b.zip"));
                    assert!(issues.is_empty(), "{avatar_type:?} {preset:?}: {issues:?}");
                }
            }
        }
        let lora = FluxLoraInput {
            prompt: "TOK a portrait".into(),
            loras: vec![LoraWeight {
                path: "http://x/l.safetensors".into(),
                scale: 1.0,
            }],
            image_size: "square_hd".into(),
            num_inference_steps: Some(28),
            guidance_scale: Some(3.5),
            num_images: 2,
        };
        let issues = check(
            Endpoint::PortraitGenerator,
            &serde_json::to_value(lora).unwrap(),
        );
        assert!(issues.is_empty(), "{issues:?}");
        let ultra = UltraFinetunedInput {
            prompt: "TOK a castle".into(),
            finetune_id: "f".into(),
            finetune_strength: 1.1,
            aspect_ratio: "1:1".into(),
            num_images: 1,
            raw: true,
        };
        let issues = check(
            Endpoint::StyleGenerator,
            &serde_json::to_value(ultra).unwrap(),
        );
        assert!(issues.is_empty(), "{issues:?}");
    }

    #[test]
    fn bad_inputs_are_described_field_by_field() {
        let issues = check(
            Endpoint::PortraitGenerator,
            &json!({"num_images": 9, "image_size": "huge", "loras": [{"scale": "x"}]}),
        );
        let locs: Vec<String> = issues.iter().map(|i| i["loc"].to_string()).collect();
        assert_eq!(
            locs,
            [
                r#"["body","prompt"]"#,
                r#"["body","loras",0,"path"]"#,
                r#"["body","loras",0,"scale"]"#,
                r#"["body","image_size"]"#,
                r#"["body","num_images"]"#,
            ]
        );
        assert_eq!(issues[0]["type"], "missing");
        assert_eq!(issues[4]["msg"], "Input should be less than or equal to 4");

        let issues = check(
            Endpoint::StyleGenerator,
            &json!({"prompt": 1, "finetune_id": "f", "finetune_strength": 1.0, "aspect_ratio": 5}),
        );
        assert_eq!(issues.len(), 2);
        assert_eq!(issues[0]["type"], "string_type");
        assert_eq!(issues[1]["type"], "string_type");

        let issues = check(Endpoint::ProTrainer, &json!([1, 2]));
        assert_eq!(issues[0]["type"], "dict_type");
    }

    #[test]
    fn fals_lenient_shapes_pass() {
        for size in [
            json!({"width": 768}),
            json!({"height": 600}),
            json!({}),
            json!({"width": 640, "height": 480}),
        ] {
            let input = json!({"prompt": "x", "image_size": size, "acceleration": "regular",
                "loras": [{"path": "http://x/l.safetensors", "scale": 0.8, "force": true}]});
            let issues = check(Endpoint::PortraitGenerator, &input);
            assert!(issues.is_empty(), "{size}: {issues:?}");
        }
        let issues = check(
            Endpoint::PortraitGenerator,
            &json!({"prompt": "x", "image_size": {"width": 0}}),
        );
        assert_eq!(issues[0]["loc"], json!(["body", "image_size", "width"]));

        let ultra = json!({"prompt": "x", "finetune_id": "f", "finetune_strength": 1.0,
            "aspect_ratio": "5:4", "enable_safety_checker": "whatever"});
        assert!(check(Endpoint::StyleGenerator, &ultra).is_empty());
    }

    #[test]
    fn the_upscaler_takes_aishas_input_and_checks_its_fields() {
        assert_eq!(
            Endpoint::from_model_id(aggregates::presets::UPSCALER),
            Some(Endpoint::Upscaler)
        );
        for factor in [2.0, 4.0] {
            let input = aggregates::presets::UpscaleInput {
                image_url: "http://x/files/a/b.png".into(),
                upscale_mode: "factor".into(),
                upscale_factor: factor,
            };
            let issues = check(Endpoint::Upscaler, &serde_json::to_value(input).unwrap());
            assert!(issues.is_empty(), "{factor}: {issues:?}");
        }
        // Every documented field at its bounds, an integer factor, and a field FAL ignores.
        let full = json!({"image_url": "data:image/png;base64,AAAA", "upscale_mode": "target",
            "upscale_factor": 10, "target_resolution": "2160p", "seed": -3, "noise_scale": 1.0,
            "output_format": "webp", "sync_mode": false, "something_new": true});
        assert!(check(Endpoint::Upscaler, &full).is_empty());

        let issues = check(
            Endpoint::Upscaler,
            &json!({"upscale_factor": 11, "upscale_mode": "double", "output_format": "jpeg",
                "target_resolution": "4k", "noise_scale": -0.1}),
        );
        let locs: Vec<&Value> = issues.iter().map(|i| &i["loc"][1]).collect();
        assert_eq!(
            locs,
            [
                "image_url",
                "upscale_mode",
                "upscale_factor",
                "target_resolution",
                "noise_scale",
                "output_format"
            ]
        );
        assert_eq!(issues[0]["type"], "missing");
        assert_eq!(issues[1]["msg"], "Input should be 'target' or 'factor'");
        assert_eq!(issues[2]["type"], "less_than_equal");
        assert_eq!(issues[2]["msg"], "Input should be less than or equal to 10");
        assert_eq!(issues[2]["input"], 11);

        let small = check(
            Endpoint::Upscaler,
            &json!({"image_url": "http://x/files/a/b.png", "upscale_factor": 0.5}),
        );
        assert_eq!(small.len(), 1);
        assert_eq!(small[0]["loc"], json!(["body", "upscale_factor"]));
        assert_eq!(small[0]["type"], "greater_than_equal");
        assert_eq!(
            small[0]["msg"],
            "Input should be greater than or equal to 1"
        );
        let typed = check(
            Endpoint::Upscaler,
            &json!({"image_url": 7, "upscale_factor": "2"}),
        );
        let kinds: Vec<&Value> = typed.iter().map(|i| &i["type"]).collect();
        assert_eq!(kinds, ["string_type", "float_type"]);
    }

    #[test]
    fn the_fast_trainer_takes_aishas_style_input_and_the_pro_trainer_needs_a_comment() {
        let style = json!({"images_data_url": "http://x/files/a/b.zip", "trigger_word": "STYLE_1",
            "is_style": true, "create_masks": false, "steps": 1000});
        assert!(check(Endpoint::FastTrainer, &style).is_empty());
        let issues = check(
            Endpoint::FastTrainer,
            &json!({"trigger_word": 3, "steps": 0, "is_style": "yes"}),
        );
        let locs: Vec<&Value> = issues.iter().map(|i| &i["loc"][1]).collect();
        assert_eq!(
            locs,
            ["images_data_url", "trigger_word", "steps", "is_style"]
        );

        let issues = check(
            Endpoint::ProTrainer,
            &json!({"data_url": "http://x/files/a/b.zip"}),
        );
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0]["loc"], json!(["body", "finetune_comment"]));
        assert_eq!(issues[0]["type"], "missing");
    }
}
