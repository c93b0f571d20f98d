//! Images as Telegram handles them: real dimensions, a small thumbnail, and sample pictures for tests.

use std::io::Cursor;

use bytes::Bytes;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

/// Side of the thumbnail Telegram lists first among a photo's sizes.
const THUMBNAIL_SIDE: u32 = 90;

/// A decoded picture: what the photo sizes of a message are built from.
pub(crate) struct Picture {
    pub width: u32,
    pub height: u32,
    pub extension: &'static str,
    /// A smaller JPEG rendition with its size, when the picture is larger than a thumbnail.
    pub thumbnail: Option<(Bytes, u32, u32)>,
}

/// Decodes an image; `None` when the bytes are not a picture the `image` crate can read.
pub(crate) fn inspect(bytes: &[u8]) -> Option<Picture> {
    let format = image::guess_format(bytes).ok()?;
    let decoded = image::load_from_memory_with_format(bytes, format).ok()?;
    let (width, height) = (decoded.width(), decoded.height());
    let thumbnail = (width.max(height) > THUMBNAIL_SIDE)
        .then(|| thumbnail(&decoded))
        .flatten();
    Some(Picture {
        width,
        height,
        extension: extension(format),
        thumbnail,
    })
}

fn thumbnail(image: &DynamicImage) -> Option<(Bytes, u32, u32)> {
    let small = DynamicImage::ImageRgb8(image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).to_rgb8());
    let mut out = Cursor::new(Vec::new());
    small.write_to(&mut out, ImageFormat::Jpeg).ok()?;
    Some((Bytes::from(out.into_inner()), small.width(), small.height()))
}

fn extension(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "png",
        ImageFormat::WebP => "webp",
        _ => "jpg",
    }
}

/// A file extension for a document, from its name or its MIME type.
pub(crate) fn document_extension(file_name: Option<&str>, mime_type: Option<&str>) -> String {
    if let Some(ext) = file_name
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, ext)| ext)
    {
        if !ext.is_empty() && ext.len() <= 8 && ext.chars().all(|c| c.is_ascii_alphanumeric()) {
            return ext.to_ascii_lowercase();
        }
    }
    match mime_type {
        Some("application/zip") => "zip",
        Some("application/pdf") => "pdf",
        Some("image/jpeg") => "jpg",
        Some("image/png") => "png",
        Some("text/plain") => "txt",
        _ => "bin",
    }
    .to_owned()
}

/// A MIME type guessed from a file name, as Telegram reports for uploaded documents.
pub(crate) fn guess_mime(file_name: &str) -> Option<&'static str> {
    let ext = file_name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "zip" => "application/zip",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "json" => "application/json",
        _ => return None,
    })
}

/// A real JPEG picture of the given size, different for each `seed`: for tests and the demo.
pub fn sample_jpeg(width: u32, height: u32, seed: u8) -> Bytes {
    let picture = RgbImage::from_fn(width.max(1), height.max(1), |x, y| {
        let r = (x * 255 / width.max(1)) as u8;
        let g = (y * 255 / height.max(1)) as u8;
        Rgb([r, g, seed.wrapping_mul(37)])
    });
    let mut out = Cursor::new(Vec::new());
    // Encoding an in-memory RGB buffer as JPEG cannot fail for sizes above zero.
    let _ = DynamicImage::ImageRgb8(picture).write_to(&mut out, ImageFormat::Jpeg);
    Bytes::from(out.into_inner())
}
