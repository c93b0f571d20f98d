//! What simulated jobs produce: LoRA and config files, finetune ids, real (small) images, and
//! real upscales of the images given, each stored so that the URLs in the output serve real bytes.

use std::io::Cursor;

use base64::Engine as _;
use chrono::Utc;
use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat};
use rand::Rng;
use serde_json::{json, Value};

use super::files;
use super::inputs::Fetched;
use super::pictures::{fit, picture, requested_size};
use super::state::SimState;
use super::storage;
use super::validate::{self, Endpoint};

/// A progress log line for step `step` of `steps`.
pub(super) fn progress_line(endpoint: Endpoint, input: &Value, step: u32, steps: u32) -> String {
    let total =
        |field: &str, default: u64| input.get(field).and_then(Value::as_u64).unwrap_or(default);
    match endpoint {
        Endpoint::PortraitTrainer => {
            let total = total("steps", 2500);
            format!(
                "Training step {}/{total}",
                total * u64::from(step) / u64::from(steps)
            )
        }
        Endpoint::FastTrainer => {
            let total = total("steps", 1000);
            format!(
                "Training step {}/{total}",
                total * u64::from(step) / u64::from(steps)
            )
        }
        Endpoint::ProTrainer => {
            let total = total("iterations", 300);
            format!(
                "Iteration {}/{total}",
                total * u64::from(step) / u64::from(steps)
            )
        }
        Endpoint::PortraitGenerator | Endpoint::StyleGenerator => {
            format!("Generating: {}%", 100 * step / steps)
        }
        Endpoint::Upscaler => format!("Upscaling: {}%", 100 * step / steps),
    }
}

/// The output of a successful job, with its files stored; the validation issues that end it
/// instead when an input file it reads has become unusable since the job started.
pub(super) fn produce(
    state: &SimState,
    endpoint: Endpoint,
    request_id: &str,
    input: &Value,
    fetched: &Fetched,
) -> Result<Value, Vec<Value>> {
    Ok(match endpoint {
        Endpoint::PortraitTrainer | Endpoint::FastTrainer => lora_training(state, endpoint, input),
        Endpoint::ProTrainer => {
            let finetune_id = uuid::Uuid::new_v4().to_string();
            state.lock().finetunes.insert(finetune_id.clone());
            json!({ "finetune_id": finetune_id })
        }
        Endpoint::PortraitGenerator | Endpoint::StyleGenerator => {
            generation(state, endpoint, request_id, input)
        }
        Endpoint::Upscaler => upscale(state, request_id, input, fetched)?,
    })
}

/// The output of both LoRA trainers: a real (empty) safetensors file and a config file.
fn lora_training(state: &SimState, endpoint: Endpoint, input: &Value) -> Value {
    // The portrait trainer calls its trigger `trigger_phrase`, the LoRA trainer `trigger_word`.
    let trigger_field = match endpoint {
        Endpoint::FastTrainer => "trigger_word",
        _ => "trigger_phrase",
    };
    let trigger = input
        .get(trigger_field)
        .and_then(Value::as_str)
        .unwrap_or_default();
    let lora = safetensors_without_tensors(&json!({
        "format": "pt",
        trigger_field: trigger,
        "producer": "fal-simulator",
    }));
    let lora_url = storage::store(
        state,
        "pytorch_lora_weights.safetensors",
        "application/octet-stream",
        lora.into(),
    );
    let config = match endpoint {
        Endpoint::FastTrainer => json!({
            "base_model": "FLUX.1-dev",
            "trigger_word": trigger,
            "steps": input.get("steps"),
            "is_style": input.get("is_style"),
            "create_masks": input.get("create_masks"),
        }),
        _ => json!({
            "base_model": "FLUX.1-dev",
            "trigger_phrase": trigger,
            "steps": input.get("steps"),
            "learning_rate": input.get("learning_rate"),
            "multiresolution_training": input.get("multiresolution_training"),
            "subject_crop": input.get("subject_crop"),
            "create_masks": input.get("create_masks"),
        }),
    };
    let config = serde_json::to_vec_pretty(&config).unwrap_or_default();
    let config_size = config.len();
    let config_url = storage::store(
        state,
        "config.json",
        "application/octet-stream",
        config.into(),
    );
    // Shaped like a real answer (seed 003): the LoRA entry carries only its URL.
    json!({
        "diffusers_lora_file": {
            "url": lora_url, "content_type": null, "file_name": null, "file_size": null
        },
        "config_file": {
            "url": config_url,
            "content_type": "application/octet-stream",
            "file_name": "config.json",
            "file_size": config_size,
        },
    })
}

/// A valid safetensors file holding metadata and no tensors.
fn safetensors_without_tensors(metadata: &Value) -> Vec<u8> {
    let metadata: serde_json::Map<String, Value> = metadata
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                Value::String(
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                ),
            )
        })
        .collect();
    let mut header = serde_json::to_vec(&json!({ "__metadata__": metadata })).unwrap_or_default();
    // The format pads the header with spaces to an 8-byte boundary.
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&header);
    file
}

fn generation(state: &SimState, endpoint: Endpoint, request_id: &str, input: &Value) -> Value {
    let count = input
        .get("num_images")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 4);
    let (width, height) = fit(
        requested_size(endpoint, input),
        state.config.max_image_side.max(1),
    );
    let png = input.get("output_format").and_then(Value::as_str) == Some("png");
    let (format, content_type, extension) = if png {
        (ImageFormat::Png, "image/png", "png")
    } else {
        (ImageFormat::Jpeg, "image/jpeg", "jpg")
    };
    // The ultra model's current schema has no switch for its checker.
    let checker = endpoint == Endpoint::StyleGenerator
        || input
            .get("enable_safety_checker")
            .and_then(Value::as_bool)
            .unwrap_or(true);
    let seed = input
        .get("seed")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| rand::thread_rng().gen_range(0..u64::from(u32::MAX)));

    let mut images = Vec::new();
    let mut flags = Vec::new();
    for index in 0..count {
        let nsfw = checker && state.roll(state.config.nsfw_rate);
        let bytes = picture(request_id, index, width, height, nsfw, format);
        let name = format!("{}.{extension}", uuid::Uuid::new_v4().simple());
        let url = storage::store(state, &name, content_type, bytes.into());
        images.push(json!({
            "url": url, "width": width, "height": height, "content_type": content_type,
        }));
        flags.push(nsfw);
    }
    json!({
        "images": images,
        "seed": seed,
        "has_nsfw_concepts": flags,
        "prompt": input.get("prompt").cloned().unwrap_or(Value::Null),
        "timings": { "inference": state.config.generation_time.as_secs_f64() },
    })
}

/// Why the runner cannot use an input image, with the error type FAL gives each case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SourceError {
    /// Nothing to read at the URL (`file_download_error`).
    Download(String),
    /// Read, but not a picture (`image_load_error`).
    Load(String),
}

impl SourceError {
    /// The 422 entry for an image given in `field`.
    pub(super) fn issue(&self, field: &str, url: &str) -> Value {
        let (msg, kind) = match self {
            Self::Download(why) => (
                format!("Could not download the image: {why}"),
                "file_download_error",
            ),
            Self::Load(why) => (
                format!("Could not load the image: {why}"),
                "image_load_error",
            ),
        };
        validate::issue(
            &[json!("body"), json!(field)],
            &msg,
            kind,
            Some(&json!(url)),
        )
    }
}

/// The bytes behind an input URL, as the runner downloads them: a `data:` URI, a file
/// downloaded from elsewhere for this job, or a file this simulator stores (and has not let
/// expire); `None` for a FAL storage URL it never had.
fn input_bytes(
    state: &SimState,
    url: &str,
    fetched: &Fetched,
) -> Option<Result<Vec<u8>, SourceError>> {
    if let Some(download) = fetched.get(url) {
        return Some(
            download
                .as_ref()
                .map(|bytes| bytes.to_vec())
                .map_err(|why| SourceError::Download(why.clone())),
        );
    }
    if let Some(uri) = url.strip_prefix("data:") {
        let Some((meta, data)) = uri.split_once(',') else {
            return Some(Err(SourceError::Download("a data URI without data".into())));
        };
        if !meta.ends_with(";base64") {
            return Some(Err(SourceError::Download(
                "only base64 data URIs are read".into(),
            )));
        }
        return Some(
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| SourceError::Download(format!("bad base64: {e}"))),
        );
    }
    let id = files::file_id_from_url(url)?;
    let now = Utc::now();
    let inner = state.lock();
    let file = inner.files.get(&id)?;
    // An expired file is gone for the runner as it is for anyone downloading it.
    if file.expires_at.is_some_and(|at| now >= at) {
        return Some(Err(SourceError::Download("file not found".into())));
    }
    Some(Ok(file.bytes.to_vec()))
}

/// The picture an upscale starts from. An image this simulator cannot have (another host) is
/// refused like a failed download, unless references are not checked: then a generated one
/// stands in for it, so that events naming made-up URLs can still be run.
pub(super) fn source_image(
    state: &SimState,
    request_id: &str,
    url: &str,
    fetched: &Fetched,
) -> Result<DynamicImage, SourceError> {
    let bytes = match input_bytes(state, url, fetched) {
        Some(bytes) => bytes?,
        None if !state.config.check_references => {
            let (width, height) = fit((1024, 768), state.config.max_image_side.max(1));
            let png = picture(request_id, 0, width, height, false, ImageFormat::Png);
            return image::load_from_memory(&png).map_err(|e| SourceError::Load(e.to_string()));
        }
        None => {
            return Err(SourceError::Download(
                "not a file this FAL account can read".into(),
            ))
        }
    };
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| SourceError::Load(e.to_string()))?
        .decode()
        .map_err(|e| SourceError::Load(e.to_string()))
}

/// The size an upscale of a `width`×`height` image comes out at, before the simulator's cap:
/// both sides times `upscale_factor` (default 2), or, in `target` mode, times what brings the
/// shorter side to the target's line count (`1080p`: 1080, the default).
fn upscaled_size(input: &Value, (width, height): (u32, u32)) -> (u32, u32) {
    let factor = match input.get("upscale_mode").and_then(Value::as_str) {
        Some("target") => {
            let lines = input
                .get("target_resolution")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_suffix('p'))
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(1080);
            f64::from(lines) / f64::from(width.min(height).max(1))
        }
        _ => input
            .get("upscale_factor")
            .and_then(Value::as_f64)
            .unwrap_or(2.0),
    };
    let side = |n: u32| {
        (f64::from(n) * factor)
            .round()
            .clamp(1.0, f64::from(u32::MAX)) as u32
    };
    (side(width), side(height))
}

/// The upscaler's output: the given image really resized (to at most the configured side),
/// encoded as asked (`jpg` by default, as on FAL), stored, and described in FAL's `ImageFile`
/// shape with its true size.
fn upscale(
    state: &SimState,
    request_id: &str,
    input: &Value,
    fetched: &Fetched,
) -> Result<Value, Vec<Value>> {
    let url = input
        .get("image_url")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let source = source_image(state, request_id, url, fetched)
        .map_err(|e| vec![e.issue("image_url", url)])?;
    let (width, height) = fit(
        upscaled_size(input, (source.width(), source.height())),
        state.config.max_upscaled_side.max(1),
    );
    let resized = source.resize_exact(width, height, FilterType::Triangle);
    let (format, content_type, extension, encoded) =
        match input.get("output_format").and_then(Value::as_str) {
            Some("png") => (ImageFormat::Png, "image/png", "png", resized),
            // The WebP encoder takes 8-bit pixels only.
            Some("webp") if resized.color().has_alpha() => (
                ImageFormat::WebP,
                "image/webp",
                "webp",
                DynamicImage::ImageRgba8(resized.to_rgba8()),
            ),
            Some("webp") => (
                ImageFormat::WebP,
                "image/webp",
                "webp",
                DynamicImage::ImageRgb8(resized.to_rgb8()),
            ),
            // JPEG has no alpha channel.
            _ => (
                ImageFormat::Jpeg,
                "image/jpeg",
                "jpg",
                DynamicImage::ImageRgb8(resized.to_rgb8()),
            ),
        };
    let mut bytes = Vec::new();
    if let Err(error) = encoded.write_to(&mut Cursor::new(&mut bytes), format) {
        tracing::error!(%error, "FAL simulator could not encode an upscaled image");
    }
    let file_name = format!("{}.{extension}", uuid::Uuid::new_v4().simple());
    let file_size = bytes.len();
    // `sync_mode`: the media comes back inline instead of as a stored file.
    let url = if input.get("sync_mode").and_then(Value::as_bool) == Some(true) {
        format!(
            "data:{content_type};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        )
    } else {
        storage::store(state, &file_name, content_type, bytes.into())
    };
    let seed = input
        .get("seed")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| rand::thread_rng().gen_range(0..i64::from(u32::MAX)));
    Ok(json!({
        "image": {
            "url": url,
            "content_type": content_type,
            "file_name": file_name,
            "file_size": file_size,
            "width": width,
            "height": height,
        },
        "seed": seed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim_state(config: super::super::SimConfig) -> std::sync::Arc<SimState> {
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        super::super::simulator::build_state(([127, 0, 0, 1], 9).into(), config, stopped)
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        picture("source", 0, width, height, false, ImageFormat::Png)
    }

    fn stored_file(state: &SimState, url: &str) -> files::StoredFile {
        let id = files::file_id_from_url(url).expect("a storage URL");
        state.lock().files.get(&id).cloned().expect("stored")
    }

    #[test]
    fn upscaled_sizes_follow_the_factor_or_the_target() {
        let factor = |f: f64| upscaled_size(&json!({"upscale_factor": f}), (24, 16));
        assert_eq!(factor(2.0), (48, 32));
        assert_eq!(factor(4.0), (96, 64));
        assert_eq!(factor(1.5), (36, 24));
        assert_eq!(
            upscaled_size(&json!({}), (24, 16)),
            (48, 32),
            "2 by default"
        );
        let target = |input: Value| upscaled_size(&input, (128, 96));
        assert_eq!(target(json!({"upscale_mode": "target"})), (1440, 1080));
        assert_eq!(
            target(
                json!({"upscale_mode": "target", "target_resolution": "720p",
                "upscale_factor": 9})
            ),
            (960, 720),
            "the factor is not used in target mode"
        );
        assert_eq!(
            progress_line(Endpoint::Upscaler, &json!({}), 2, 4),
            "Upscaling: 50%"
        );
    }

    #[test]
    fn an_upscale_resizes_the_real_image_and_answers_fals_shape() {
        let state = sim_state(super::super::SimConfig::default());
        let source = storage::store(&state, "in.png", "image/png", png(24, 16).into());
        for factor in [2.0, 4.0] {
            // Exactly what Aisha sends: no output format, so FAL's `jpg`.
            let input = serde_json::to_value(aggregates::presets::UpscaleInput {
                image_url: source.clone(),
                upscale_mode: "factor".into(),
                upscale_factor: factor,
            })
            .unwrap();
            let output = upscale(&state, "r1", &input, &Fetched::default()).unwrap();
            let image = &output["image"];
            let side = |n: u32| (f64::from(n) * factor) as u64;
            assert_eq!(
                (image["width"].as_u64(), image["height"].as_u64()),
                (Some(side(24)), Some(side(16)))
            );
            assert_eq!(image["content_type"], "image/jpeg");
            assert!(image["file_name"].as_str().unwrap().ends_with(".jpg"));
            assert!(output["seed"].is_i64());
            let file = stored_file(&state, image["url"].as_str().unwrap());
            assert_eq!(image["file_size"].as_u64(), Some(file.bytes.len() as u64));
            let decoded = image::load_from_memory(&file.bytes).unwrap();
            assert_eq!(image::guess_format(&file.bytes).unwrap(), ImageFormat::Jpeg);
            assert_eq!(
                (u64::from(decoded.width()), u64::from(decoded.height())),
                (side(24), side(16))
            );
        }

        let png_out = upscale(
            &state,
            "r2",
            &json!({"image_url": source, "upscale_factor": 3, "output_format": "png",
                "seed": 7}),
            &Fetched::default(),
        )
        .unwrap();
        assert_eq!(png_out["seed"], 7);
        assert_eq!(png_out["image"]["content_type"], "image/png");
        let file = stored_file(&state, png_out["image"]["url"].as_str().unwrap());
        assert_eq!(image::guess_format(&file.bytes).unwrap(), ImageFormat::Png);
        assert_eq!(file.content_type, "image/png");
        let decoded = image::load_from_memory(&file.bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (72, 48));

        let webp = upscale(
            &state,
            "r3",
            &json!({"image_url": source, "upscale_factor": 1, "output_format": "webp"}),
            &Fetched::default(),
        )
        .unwrap();
        let file = stored_file(&state, webp["image"]["url"].as_str().unwrap());
        assert_eq!(image::guess_format(&file.bytes).unwrap(), ImageFormat::WebP);
    }

    #[test]
    fn an_upscale_past_the_cap_is_scaled_down_and_reports_its_true_size() {
        let state = sim_state(super::super::SimConfig::default().with_max_upscaled_side(100));
        let source = storage::store(&state, "in.png", "image/png", png(40, 20).into());
        let output = upscale(
            &state,
            "r",
            &json!({"image_url": source, "upscale_factor": 10, "output_format": "png"}),
            &Fetched::default(),
        )
        .unwrap();
        assert_eq!(
            (
                output["image"]["width"].as_u64(),
                output["image"]["height"].as_u64()
            ),
            (Some(100), Some(50))
        );
        let file = stored_file(&state, output["image"]["url"].as_str().unwrap());
        let decoded = image::load_from_memory(&file.bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (100, 50));
    }

    #[test]
    fn the_image_to_upscale_is_read_as_the_runner_reads_it() {
        let state = sim_state(super::super::SimConfig::default());
        let inline = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(png(5, 3))
        );
        let decoded = source_image(&state, "r", &inline, &Fetched::default()).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (5, 3));

        let gone = state.url("/files/0123456789abcdef/in.png");
        let elsewhere = "https://v3.fal.media/files/a/in.png";
        for url in [gone.as_str(), elsewhere, "", "data:image/png,abc"] {
            let error = source_image(&state, "r", url, &Fetched::default()).unwrap_err();
            assert!(
                matches!(error, SourceError::Download(_)),
                "{url}: {error:?}"
            );
            let issue = error.issue("image_url", url);
            assert_eq!(issue["loc"], json!(["body", "image_url"]));
            assert_eq!(issue["type"], "file_download_error");
        }

        let text = storage::store(&state, "notes.txt", "text/plain", "not a picture".into());
        let error = source_image(&state, "r", &text, &Fetched::default()).unwrap_err();
        assert_eq!(error.issue("image_url", &text)["type"], "image_load_error");

        // Unchecked references: a picture the simulator never had is made up.
        let lenient = sim_state(super::super::SimConfig::default().with_check_references(false));
        let made = source_image(&lenient, "r", elsewhere, &Fetched::default()).unwrap();
        assert_eq!((made.width(), made.height()), (128, 96));
        // Its own storage is still read as it is.
        let expired_or_not = storage::store(&lenient, "in.png", "image/png", png(7, 7).into());
        let real = source_image(&lenient, "r", &expired_or_not, &Fetched::default()).unwrap();
        assert_eq!(real.width(), 7);
    }

    #[test]
    fn the_lora_file_is_valid_safetensors() {
        let file = safetensors_without_tensors(&json!({"trigger_phrase": "TOK"}));
        let len = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
        assert_eq!(file.len(), 8 + len);
        let header: Value = serde_json::from_slice(&file[8..]).unwrap();
        assert_eq!(header["__metadata__"]["trigger_phrase"], "TOK");
    }
}
