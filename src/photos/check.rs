//! Photo intake: decides whether uploaded bytes are a photo we can train on, by decoding them.
//!
//! The order of the checks matters: size before anything is read, format from the magic bytes,
//! dimensions from the header before a single pixel is allocated, and only then a full decode
//! under hard limits (so a truncated file or a lying header is caught, not just a bad name).

use std::io::Cursor;

use aggregates::avatar::MIN_PHOTO_SIDE;
use aggregates::{ImageFormat, PhotoMeta};
use bytes::Bytes;
use image::{ImageError, ImageReader, Limits};
use sha2::{Digest, Sha256};

/// The largest file a Telegram bot may download (20 MB); anything larger never reaches us intact.
pub const MAX_PHOTO_BYTES: u64 = 20 * 1024 * 1024;
/// More pixels than any phone camera produces: beyond this a header is a decompression bomb.
pub const MAX_PIXELS: u64 = 50_000_000;
/// The longest side accepted; a 1×50-million-pixel "photo" is a bomb too.
pub const MAX_SIDE: u32 = 16_384;
/// What a decoder may allocate: a 50-megapixel RGBA image at 8 bits per channel, plus slack.
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// Why a photo was refused. Each variant carries what the bot needs to explain it to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhotoError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {bytes} bytes; at most {max} bytes are accepted")]
    TooLarge { bytes: u64, max: u64 },
    #[error("the file is not an image")]
    NotAnImage,
    #[error("{0} images are not accepted; send a JPEG, PNG or WebP photo")]
    UnsupportedFormat(String),
    #[error("the image is damaged or incomplete: {0}")]
    Corrupt(String),
    #[error(
        "the image claims {width}×{height} pixels; at most {max_pixels} pixels and {max_side} on a side are accepted",
        max_pixels = MAX_PIXELS,
        max_side = MAX_SIDE
    )]
    TooManyPixels { width: u32, height: u32 },
    #[error("the image is {width}×{height}; both sides must be at least {min} pixels")]
    TooSmall { width: u32, height: u32, min: u32 },
}

/// A photo that passed every check: what the avatar records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPhoto {
    pub width: u32,
    pub height: u32,
    pub format: ImageFormat,
    pub byte_size: u64,
    /// Hex SHA-256 of the bytes as received.
    pub content_hash: String,
}

impl CheckedPhoto {
    /// The metadata recorded in the avatar's `PhotoUploaded` event once the bytes are stored.
    pub fn photo_meta(
        &self,
        photo_id: impl Into<String>,
        storage_key: impl Into<String>,
    ) -> PhotoMeta {
        PhotoMeta {
            photo_id: photo_id.into(),
            content_hash: self.content_hash.clone(),
            byte_size: self.byte_size,
            width: self.width,
            height: self.height,
            format: self.format,
            storage_key: storage_key.into(),
        }
    }
}

/// Checks uploaded bytes and describes the photo, or says why it cannot be used.
///
/// This decodes the whole image (up to 50 megapixels), so it is CPU-bound: async callers should
/// use [`inspect_in_background`].
pub fn inspect(bytes: &[u8]) -> Result<CheckedPhoto, PhotoError> {
    let byte_size = bytes.len() as u64;
    if byte_size == 0 {
        return Err(PhotoError::Empty);
    }
    if byte_size > MAX_PHOTO_BYTES {
        return Err(PhotoError::TooLarge {
            bytes: byte_size,
            max: MAX_PHOTO_BYTES,
        });
    }

    let (format, decoder_format) = sniff_format(bytes)?;

    // Header only: no pixel buffer is allocated yet, so even a 100000×100000 claim is cheap.
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), decoder_format)
        .into_dimensions()
        .map_err(|e| header_error(&e))?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS || width > MAX_SIDE || height > MAX_SIDE {
        return Err(PhotoError::TooManyPixels { width, height });
    }
    if width < MIN_PHOTO_SIDE || height < MIN_PHOTO_SIDE {
        return Err(PhotoError::TooSmall {
            width,
            height,
            min: MIN_PHOTO_SIDE,
        });
    }

    // The JPEG decoder fills missing scan data with grey instead of failing, so a cut-off JPEG
    // has to be caught by walking its markers.
    if format == ImageFormat::Jpeg {
        jpeg_is_complete(bytes).map_err(|why| PhotoError::Corrupt(why.to_owned()))?;
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), decoder_format);
    reader.limits(decode_limits());
    match reader.decode() {
        Ok(_pixels) => {}
        // The header passed our caps, yet the decoder wanted more memory: a lying or exotic file.
        Err(ImageError::Limits(_)) => return Err(PhotoError::TooManyPixels { width, height }),
        Err(e) => return Err(decode_error(&e)),
    }

    Ok(CheckedPhoto {
        width,
        height,
        format,
        byte_size,
        content_hash: hex::encode(Sha256::digest(bytes)),
    })
}

/// [`inspect`] on the blocking thread pool, so a large decode does not stall the async runtime.
pub async fn inspect_in_background(bytes: Bytes) -> Result<CheckedPhoto, PhotoError> {
    match tokio::task::spawn_blocking(move || inspect(&bytes)).await {
        Ok(result) => result,
        // Only a panic inside a decoder gets here; treat the file as undecodable.
        Err(join) => Err(PhotoError::Corrupt(format!("the decoder failed: {join}"))),
    }
}

/// The hard limits every decode runs under, whatever the header said.
fn decode_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// The format from the magic bytes; the file name and MIME type the client sent are not trusted.
fn sniff_format(bytes: &[u8]) -> Result<(ImageFormat, image::ImageFormat), PhotoError> {
    if let Some(name) = sniff_heif_family(bytes) {
        return Err(PhotoError::UnsupportedFormat(name.to_owned()));
    }
    let detected = image::guess_format(bytes).map_err(|_| PhotoError::NotAnImage)?;
    let ours = match detected {
        image::ImageFormat::Jpeg => ImageFormat::Jpeg,
        image::ImageFormat::Png => ImageFormat::Png,
        image::ImageFormat::WebP => ImageFormat::Webp,
        other => return Err(PhotoError::UnsupportedFormat(format_name(other))),
    };
    Ok((ours, detected))
}

/// iPhones send HEIC; the image crate does not recognise it, but the user deserves a better
/// answer than "not an image".
fn sniff_heif_family(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 12 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    match &bytes[8..12] {
        b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" | b"mif1" | b"msf1" => {
            Some("HEIC")
        }
        b"avif" | b"avis" => Some("AVIF"),
        _ => None,
    }
}

fn format_name(format: image::ImageFormat) -> String {
    match format.extensions_str().first() {
        Some(ext) => ext.to_ascii_uppercase(),
        None => format!("{format:?}").to_ascii_uppercase(),
    }
}

fn header_error(e: &ImageError) -> PhotoError {
    match e {
        ImageError::Unsupported(u) => PhotoError::UnsupportedFormat(u.to_string()),
        other => PhotoError::Corrupt(format!("unreadable header: {other}")),
    }
}

fn decode_error(e: &ImageError) -> PhotoError {
    match e {
        ImageError::Unsupported(u) => PhotoError::UnsupportedFormat(u.to_string()),
        // An I/O error from an in-memory cursor can only mean the data ended early.
        ImageError::IoError(io) => PhotoError::Corrupt(format!("the data ends early ({io})")),
        other => PhotoError::Corrupt(other.to_string()),
    }
}

/// Walks a JPEG's marker segments to its end-of-image marker. Entropy-coded scan data cannot
/// contain a bare marker (0xFF is always stuffed), so this finds a cut anywhere in the file.
fn jpeg_is_complete(bytes: &[u8]) -> Result<(), &'static str> {
    const CUT: &str = "the JPEG data is cut off before its end-of-image marker";
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("no JPEG start-of-image marker");
    }
    let mut i = 2;
    loop {
        // Tolerate stray bytes between segments, as decoders do, and any number of fill bytes.
        let ff = bytes[i..].iter().position(|&b| b == 0xFF).ok_or(CUT)?;
        i += ff;
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1;
        }
        let marker = *bytes.get(i).ok_or(CUT)?;
        i += 1;
        match marker {
            0xD9 => return Ok(()),
            // Markers without a length: restart markers, TEM, and a stuffed zero out of place.
            0x00 | 0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let len_bytes = bytes.get(i..i + 2).ok_or(CUT)?;
        let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
        if len < 2 {
            return Err("a JPEG segment has an impossible length");
        }
        i = i
            .checked_add(len)
            .filter(|&end| end <= bytes.len())
            .ok_or(CUT)?;
        if marker == 0xDA {
            i = skip_scan_data(bytes, i).ok_or(CUT)?;
        }
    }
}

/// Returns the offset of the marker that ends a scan, or `None` if the data ends first.
fn skip_scan_data(bytes: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i += bytes.get(i..)?.iter().position(|&b| b == 0xFF)?;
        match *bytes.get(i + 1)? {
            // Stuffed 0xFF, restart marker, or a fill byte: still inside the scan.
            0x00 | 0xD0..=0xD7 | 0xFF => i += 1,
            _ => return Some(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageBuffer, Rgb};

    fn encoded(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
        let img = ImageBuffer::from_fn(width, height, |x, y| {
            Rgb([(x % 251) as u8, (y % 241) as u8, 90])
        });
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img)
            .write_to(&mut out, format)
            .expect("encode");
        out.into_inner()
    }

    #[test]
    fn accepts_a_jpeg_and_describes_it() {
        let bytes = encoded(512, 640, image::ImageFormat::Jpeg);
        let photo = inspect(&bytes).expect("a valid JPEG");
        assert_eq!(
            (photo.width, photo.height, photo.format),
            (512, 640, ImageFormat::Jpeg)
        );
        assert_eq!(photo.byte_size, bytes.len() as u64);
        assert_eq!(photo.content_hash, hex::encode(Sha256::digest(&bytes)));
        let meta = photo.photo_meta("p1", "avatars/x/p1.jpg");
        assert_eq!(meta.storage_key, "avatars/x/p1.jpg");
        assert_eq!(meta.width, 512);
    }

    #[test]
    fn refuses_empty_and_oversized_input_before_decoding() {
        assert_eq!(inspect(&[]), Err(PhotoError::Empty));
        let big = vec![0u8; (MAX_PHOTO_BYTES + 1) as usize];
        assert_eq!(
            inspect(&big),
            Err(PhotoError::TooLarge {
                bytes: MAX_PHOTO_BYTES + 1,
                max: MAX_PHOTO_BYTES
            })
        );
    }

    #[test]
    fn a_complete_jpeg_walks_to_its_end_marker_and_a_cut_one_does_not() {
        let bytes = encoded(512, 512, image::ImageFormat::Jpeg);
        assert_eq!(jpeg_is_complete(&bytes), Ok(()));
        // Data after the end marker (camera trailers) is allowed.
        let mut trailer = bytes.clone();
        trailer.extend_from_slice(b"trailing vendor data");
        assert_eq!(jpeg_is_complete(&trailer), Ok(()));
        for cut in [3, 20, bytes.len() / 2, bytes.len() - 2, bytes.len() - 1] {
            assert!(
                jpeg_is_complete(&bytes[..cut]).is_err(),
                "cut at {cut} was accepted"
            );
        }
    }

    #[test]
    fn recognises_heic_by_its_brand() {
        let mut heic = vec![0, 0, 0, 24];
        heic.extend_from_slice(b"ftypheic\0\0\0\0mif1heic");
        assert_eq!(
            inspect(&heic),
            Err(PhotoError::UnsupportedFormat("HEIC".into()))
        );
    }

    #[test]
    fn refuses_a_long_thin_strip_even_under_the_pixel_cap() {
        let bytes = encoded(MAX_SIDE + 1, 1, image::ImageFormat::Png);
        assert_eq!(
            inspect(&bytes),
            Err(PhotoError::TooManyPixels {
                width: MAX_SIDE + 1,
                height: 1
            })
        );
    }
}
