//! The pictures a simulated job draws: the pixel size FAL would make for an input, and a small
//! real image of that size.

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::validate::{Endpoint, DEFAULT_IMAGE_SIDE, IMAGE_SIZES};

/// Pixel size FAL would produce for this input.
pub(super) fn requested_size(endpoint: Endpoint, input: &Value) -> (u32, u32) {
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
pub(super) fn ratio_size(ratio: &str) -> Option<(u32, u32)> {
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
pub(super) fn fit(size: (u32, u32), max: u32) -> (u32, u32) {
    let (w, h) = size;
    let longest = w.max(h).max(1);
    if longest <= max {
        return (w.max(1), h.max(1));
    }
    let scale = |side: u32| ((u64::from(side) * u64::from(max)) / u64::from(longest)).max(1) as u32;
    (scale(w), scale(h))
}

/// A diagonal gradient between two colours taken from the request id, so that every request
/// (and every image in it) looks different; black when flagged, as FAL blacks out such images.
pub(super) fn picture(
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
    use serde_json::json;

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
}
