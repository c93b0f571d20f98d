//! What simulated jobs produce: LoRA and config files, finetune ids, and real (small) images,
//! each stored so that the URLs in the output serve real bytes.

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage};
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::storage;
use super::validate::{Endpoint, DEFAULT_IMAGE_SIDE, IMAGE_SIZES};
use super::SimState;

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
    }
}

/// The output of a successful job, with its files stored.
pub(super) fn produce(
    state: &SimState,
    endpoint: Endpoint,
    request_id: &str,
    input: &Value,
) -> Value {
    match endpoint {
        Endpoint::PortraitTrainer | Endpoint::FastTrainer => lora_training(state, endpoint, input),
        Endpoint::ProTrainer => {
            let finetune_id = uuid::Uuid::new_v4().to_string();
            state.lock().finetunes.insert(finetune_id.clone());
            json!({ "finetune_id": finetune_id })
        }
        Endpoint::PortraitGenerator | Endpoint::StyleGenerator => {
            generation(state, endpoint, request_id, input)
        }
    }
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

/// Pixel size FAL would produce for this input.
fn requested_size(endpoint: Endpoint, input: &Value) -> (u32, u32) {
    match endpoint {
        Endpoint::StyleGenerator => {
            let ratio = input
                .get("aspect_ratio")
                .and_then(Value::as_str)
                .unwrap_or("16:9");
            match ratio {
                "21:9" => (3136, 1344),
                "16:9" => (2752, 1536),
                "4:3" => (2368, 1792),
                "3:2" => (2496, 1664),
                "1:1" => (2048, 2048),
                "2:3" => (1664, 2496),
                "3:4" => (1792, 2368),
                "9:16" => (1536, 2752),
                "9:21" => (1344, 3136),
                other => ratio_size(other).unwrap_or((2752, 1536)),
            }
        }
        _ => match input.get("image_size") {
            Some(Value::Object(size)) => {
                let side = |k: &str| {
                    size.get(k)
                        .and_then(Value::as_u64)
                        .map_or(DEFAULT_IMAGE_SIDE, |n| n as u32)
                };
                (side("width"), side("height"))
            }
            other => {
                let name = other.and_then(Value::as_str).unwrap_or("landscape_4_3");
                IMAGE_SIZES
                    .iter()
                    .find(|(n, _, _)| *n == name)
                    .map(|(_, w, h)| (*w, *h))
                    .unwrap_or((1024, 768))
            }
        },
    }
}

/// About four megapixels in the proportions of a `W:H` ratio, as the ultra model renders any
/// ratio it is given; `None` when the string is not a ratio.
fn ratio_size(ratio: &str) -> Option<(u32, u32)> {
    let (w, h) = ratio.split_once(':')?;
    let (w, h): (f64, f64) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
    if !(w > 0.0 && h > 0.0 && (w / h).is_finite()) {
        return None;
    }
    let area = 2048.0 * 2048.0;
    let height = (area * h / w).sqrt();
    let width = height * w / h;
    Some((
        width.round().max(1.0) as u32,
        height.round().max(1.0) as u32,
    ))
}

/// Scales down so the longest side is at most `max`, keeping the aspect ratio.
fn fit(size: (u32, u32), max: u32) -> (u32, u32) {
    let (w, h) = size;
    let longest = w.max(h).max(1);
    if longest <= max {
        return (w.max(1), h.max(1));
    }
    let scale = |side: u32| ((u64::from(side) * u64::from(max)) / u64::from(longest)).max(1) as u32;
    (scale(w), scale(h))
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

/// A diagonal gradient between two colours taken from the request id, so that every request
/// (and every image in it) looks different; black when flagged, as FAL blacks out such images.
fn picture(
    request_id: &str,
    index: u64,
    width: u32,
    height: u32,
    black: bool,
    format: ImageFormat,
) -> Vec<u8> {
    let digest = Sha256::digest(format!("{request_id}/{index}").as_bytes());
    let from = [digest[0], digest[1], digest[2]];
    let to = [digest[3], digest[4], digest[5]];
    let span = (width + height).max(1) as f32;
    let image = RgbImage::from_fn(width, height, |x, y| {
        if black {
            return Rgb([0, 0, 0]);
        }
        let t = (x + y) as f32 / span;
        let mix = |a: u8, b: u8| (f32::from(a) * (1.0 - t) + f32::from(b) * t) as u8;
        Rgb([
            mix(from[0], to[0]),
            mix(from[1], to[1]),
            mix(from[2], to[2]),
        ])
    });
    let mut bytes = Vec::new();
    if let Err(error) = image.write_to(&mut Cursor::new(&mut bytes), format) {
        tracing::error!(%error, "FAL simulator could not encode an image");
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_scale_down_keeping_the_ratio() {
        assert_eq!(fit((1024, 768), 128), (128, 96));
        assert_eq!(fit((1536, 2752), 128), (71, 128));
        assert_eq!(fit((64, 32), 128), (64, 32));
    }

    #[test]
    fn sizes_follow_fals_lenient_shapes() {
        let lora =
            |size: Value| requested_size(Endpoint::PortraitGenerator, &json!({"image_size": size}));
        assert_eq!(lora(json!({"width": 768})), (768, 512));
        assert_eq!(lora(json!({"height": 300})), (512, 300));
        assert_eq!(lora(json!("square")), (512, 512));
        let ultra =
            |ratio: &str| requested_size(Endpoint::StyleGenerator, &json!({"aspect_ratio": ratio}));
        let (w, h) = ultra("5:4");
        assert!(
            w > h && (f64::from(w) / f64::from(h) - 1.25).abs() < 0.01,
            "{w}x{h}"
        );
        assert_eq!(ultra("anything"), (2752, 1536));
        assert_eq!(ultra("1:0"), (2752, 1536));
    }

    #[test]
    fn pictures_decode_and_differ_per_request() {
        let a = picture("r1", 0, 16, 8, false, ImageFormat::Png);
        let b = picture("r2", 0, 16, 8, false, ImageFormat::Png);
        assert_ne!(a, b);
        let decoded = image::load_from_memory(&a).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (16, 8));
        let jpeg = picture("r1", 0, 16, 8, false, ImageFormat::Jpeg);
        assert_eq!(image::guess_format(&jpeg).unwrap(), ImageFormat::Jpeg);
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
