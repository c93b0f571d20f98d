//! Photo intake: decides whether uploaded bytes are a photo we can train on, by decoding them.
//!
//! The order of the checks matters: size before anything is read, format from the magic bytes,
//! dimensions from the header before a single pixel is allocated, and only then a full decode
//! under hard limits (so a truncated file or a lying header is caught, not just a bad name).

use std::io::Cursor;

use aggregates::avatar::MIN_PHOTO_SIDE;
use aggregates::{ImageFormat, PhotoMeta};
use bytes::Bytes;
use image::{ImageDecoder, ImageError, ImageReader, Limits};
use sha2::{Digest, Sha256};

use super::hints::{hints_for, PhotoHint};

/// The largest file a Telegram bot may download (20 MB); anything larger never reaches us intact.
pub const MAX_PHOTO_BYTES: u64 = 20 * 1024 * 1024;
/// More pixels than any phone camera produces: beyond this a header is a decompression bomb.
pub const MAX_PIXELS: u64 = 50_000_000;
/// The longest side accepted; a 1×50-million-pixel "photo" is a bomb too.
pub const MAX_SIDE: u32 = 16_384;
/// What one decoder may allocate: the largest image decoded at all (25 megapixels, RGBA at 16
/// bits per channel, 200 MB) fits; a header whose pixel buffer would need more is a bomb (or
/// exotic): refused as too many pixels. Never more than the global budget below.
pub const MAX_DECODE_BYTES: u64 = DECODE_BUDGET_BYTES;
/// The per-image decode budget, in pixels: the largest image we decode at all (25 megapixels,
/// e.g. 6000×4000 from a camera; FAL's trainers work at about 1 megapixel anyway). Larger
/// images are refused from their header, before a pixel buffer exists, with a clear reason:
/// downscaling would need the full decode first (the `image` crate cannot decode a PNG at a
/// reduced scale), which is exactly the memory this budget is there to save.
pub const MAX_DECODE_PIXELS: u64 = 25_000_000;
/// The global decode budget: bytes of pixel buffers that may exist at once across all decodes.
/// One image's cost is the larger of what its decoder reports and width×height×4, so this
/// admits two of the largest 8-bit images, or one 16-bit one, at a time. With the downloads
/// held at once (`bot::photos::MAX_CONCURRENT_DOWNLOADS` × 20 MB) it bounds the photo intake's
/// buffers to 3 × 20 MiB + 192 MiB = 252 MiB, so a server (about 30 MB at rest) stays under
/// 300 MB whatever photos arrive.
pub const DECODE_BUDGET_BYTES: u64 = 192 * 1024 * 1024;
/// How many decodes may run at once (each on a blocking thread, under its budget share).
pub const MAX_CONCURRENT_DECODES: usize = 2;

/// Budget units of the global decode semaphore: one per MiB.
const BUDGET_UNIT: u64 = 1024 * 1024;
/// Decodes running; see [`MAX_CONCURRENT_DECODES`].
static DECODES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_DECODES);
/// MiB of pixel buffers in use; see [`DECODE_BUDGET_BYTES`].
static DECODE_BUDGET: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new((DECODE_BUDGET_BYTES / BUDGET_UNIT) as usize);

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
    /// Within the bomb caps, but above the per-image decode budget ([`MAX_DECODE_PIXELS`]).
    #[error("the image is {width}×{height}; at most {max_megapixels} megapixels are decoded")]
    OverDecodeBudget {
        width: u32,
        height: u32,
        max_megapixels: u64,
    },
}

/// A photo that passed every check: what the avatar records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPhoto {
    pub width: u32,
    pub height: u32,
    pub format: ImageFormat,
    /// Size of the bytes as stored: as received, less their metadata ([`super::metadata`]).
    pub byte_size: u64,
    /// Hex SHA-256 of the bytes as stored (metadata removed), so the same photo sent again
    /// with other EXIF — re-saved by an app, or with the location switched off — is a duplicate.
    pub content_hash: String,
    /// Advice about the picture itself (focus, exposure, contrast), measured on the decoded
    /// pixels; empty for a good photo. Never a reason to refuse it, and not recorded in events.
    pub hints: Vec<PhotoHint>,
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

/// What the header says, once it passed every check that needs no pixels.
#[derive(Debug, Clone, Copy)]
struct Probe {
    format: ImageFormat,
    decoder_format: image::ImageFormat,
    width: u32,
    height: u32,
    /// Bytes of pixel buffer the decode will need (at least width×height×4).
    decode_bytes: u64,
}

/// Checks uploaded bytes and describes the photo, or says why it cannot be used.
///
/// This decodes the whole image (up to [`MAX_DECODE_PIXELS`]), so it is CPU-bound: async callers
/// should use [`inspect_in_background`], which also keeps to the global decode budget.
pub fn inspect(bytes: &[u8]) -> Result<CheckedPhoto, PhotoError> {
    let probe = probe(bytes)?;
    decode(bytes, probe)
}

/// Every check that needs only the header: nothing the size of the image is allocated here.
fn probe(bytes: &[u8]) -> Result<Probe, PhotoError> {
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
    let decoder = ImageReader::with_format(Cursor::new(bytes), decoder_format)
        .into_decoder()
        .map_err(|e| header_error(&e))?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > MAX_PIXELS || width > MAX_SIDE || height > MAX_SIDE {
        return Err(PhotoError::TooManyPixels { width, height });
    }
    if width < MIN_PHOTO_SIDE || height < MIN_PHOTO_SIDE {
        return Err(PhotoError::TooSmall {
            width,
            height,
            min: MIN_PHOTO_SIDE,
        });
    }
    let decode_bytes = decoder.total_bytes().max(pixels.saturating_mul(4));
    // A buffer no decode may allocate (16-bit RGBA near the pixel cap …): a bomb, as before.
    if decoder.total_bytes() > MAX_DECODE_BYTES {
        return Err(PhotoError::TooManyPixels { width, height });
    }
    if pixels > MAX_DECODE_PIXELS {
        return Err(PhotoError::OverDecodeBudget {
            width,
            height,
            max_megapixels: MAX_DECODE_PIXELS / 1_000_000,
        });
    }

    // The JPEG decoder fills missing scan data with grey instead of failing, so a cut-off JPEG
    // has to be caught by walking its markers.
    if format == ImageFormat::Jpeg {
        jpeg_is_complete(bytes).map_err(|why| PhotoError::Corrupt(why.to_owned()))?;
    }
    Ok(Probe {
        format,
        decoder_format,
        width,
        height,
        decode_bytes,
    })
}

/// The full decode, under hard limits whatever the header said.
fn decode(bytes: &[u8], probe: Probe) -> Result<CheckedPhoto, PhotoError> {
    let Probe {
        format,
        decoder_format,
        width,
        height,
        ..
    } = probe;
    // What is decoded and hashed is what will be stored: the photo without its metadata. The
    // header checks above ran on the bytes as received; removing segments changes no pixel.
    let stored = super::metadata::strip(bytes).map_err(|e| PhotoError::Corrupt(e.to_string()))?;
    let mut reader = ImageReader::with_format(Cursor::new(&stored[..]), decoder_format);
    reader.limits(decode_limits());
    let hints = match reader.decode() {
        // The pixels are dropped as soon as the hints are measured. Measuring only reads them
        // and allocates a grayscale copy of at most 512×512 bytes plus a few KiB: for an 8-bit
        // RGB photo (any JPEG) that is within the byte per pixel the reservation (at least
        // width×height×4 bytes) holds beyond the decoded buffer; for other layouts at most a
        // quarter of a MiB more. Its cost is a few milliseconds, whatever the size.
        Ok(pixels) => hints_for(&pixels),
        // The header passed our caps, yet the decoder wanted more memory: a lying or exotic file.
        Err(ImageError::Limits(_)) => return Err(PhotoError::TooManyPixels { width, height }),
        Err(e) => return Err(decode_error(&e)),
    };

    Ok(CheckedPhoto {
        width,
        height,
        format,
        byte_size: stored.len() as u64,
        content_hash: hex::encode(Sha256::digest(&stored)),
        hints,
    })
}

/// [`inspect`] on the blocking thread pool, so a large decode does not stall the async runtime,
/// and within the global limits: the header is read first (cheaply, here), then the decode
/// waits for one of [`MAX_CONCURRENT_DECODES`] slots and its share of [`DECODE_BUDGET_BYTES`].
/// The permits move into the blocking task, so they are held until the pixels are freed even
/// if the caller stops waiting.
pub async fn inspect_in_background(bytes: Bytes) -> Result<CheckedPhoto, PhotoError> {
    let probe = probe(&bytes)?;
    let units = probe
        .decode_bytes
        .div_ceil(BUDGET_UNIT)
        .clamp(1, DECODE_BUDGET_BYTES / BUDGET_UNIT) as u32;
    let slot = DECODES
        .acquire()
        .await
        .expect("the decode semaphore is never closed");
    let budget = DECODE_BUDGET
        .acquire_many(units)
        .await
        .expect("the decode budget is never closed");
    match tokio::task::spawn_blocking(move || {
        let _held = (slot, budget);
        decode(&bytes, probe)
    })
    .await
    {
        Ok(result) => result,
        // Only a panic inside a decoder gets here; treat the file as undecodable.
        Err(join) => Err(PhotoError::Corrupt(format!("the decoder failed: {join}"))),
    }
}

/// Decode budget in use right now, in bytes (rounded to MiB); for tests and metrics.
pub fn decode_budget_in_use() -> u64 {
    (DECODE_BUDGET_BYTES / BUDGET_UNIT - DECODE_BUDGET.available_permits() as u64) * BUDGET_UNIT
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
            i = super::metadata::skip_scan_data(bytes, i).ok_or(CUT)?;
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
    fn hints_come_from_the_decoded_pixels_and_never_refuse() {
        let jpeg = |img: ImageBuffer<Rgb<u8>, Vec<u8>>| {
            let mut out = Cursor::new(Vec::new());
            DynamicImage::ImageRgb8(img)
                .write_to(&mut out, image::ImageFormat::Jpeg)
                .expect("encode");
            out.into_inner()
        };
        // The bot tests' sample photo: no advice.
        let sample = fake_telegram::sample_jpeg(640, 640, 5);
        assert_eq!(inspect(&sample).expect("valid").hints, []);
        // Squares with hard edges: sharp, well exposed.
        let squares = ImageBuffer::from_fn(800, 600, |x, y| {
            Rgb([if (x / 40 + y / 40) % 2 == 0 { 60 } else { 190 }; 3])
        });
        assert_eq!(inspect(&jpeg(squares.clone())).expect("valid").hints, []);
        // Out of focus, or underexposed: still accepted, with the advice.
        let blurred = image::imageops::blur(&squares, 6.0);
        let photo = inspect(&jpeg(blurred)).expect("a blurred photo is still a photo");
        assert_eq!(photo.hints, [PhotoHint::Blurry]);
        let mut dark = squares;
        dark.pixels_mut().for_each(|p| p.0 = p.0.map(|c| c / 8));
        assert_eq!(
            inspect(&jpeg(dark))
                .expect("a dark photo is still a photo")
                .hints,
            [PhotoHint::TooDark]
        );
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

    /// A PNG whose header claims `width`×`height` RGB pixels, with almost no pixel data.
    fn png_header(width: u32, height: u32, bit_depth: u8, colour_type: u8) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut body = kind.to_vec();
            body.extend_from_slice(data);
            out.extend_from_slice(&body);
            out.extend_from_slice(&crate::photos::metadata::crc32(&body).to_be_bytes());
        }
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[bit_depth, colour_type, 0, 0, 0]);
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(
            &mut png,
            b"IDAT",
            &[0x78, 0x9C, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
        );
        chunk(&mut png, b"IEND", &[]);
        png
    }

    #[test]
    fn an_image_over_the_per_image_decode_budget_is_refused_from_its_header() {
        // The 16384×3051: under the bomb caps, but ~200 MB decoded.
        assert_eq!(
            probe(&png_header(16_384, 3_051, 8, 2)).unwrap_err(),
            PhotoError::OverDecodeBudget {
                width: 16_384,
                height: 3_051,
                max_megapixels: 25
            }
        );
        // Exactly at the budget the header passes (the decode then finds the data missing).
        let at_budget = probe(&png_header(5_000, 5_000, 8, 2)).expect("within budget");
        assert_eq!(at_budget.decode_bytes, 100_000_000);
        // 16-bit RGBA at the budget: its real buffer size is what it costs.
        let deep = probe(&png_header(5_000, 5_000, 16, 6)).expect("within budget");
        assert_eq!(deep.decode_bytes, 200_000_000);
        assert!(deep.decode_bytes <= DECODE_BUDGET_BYTES);
    }

    #[tokio::test]
    async fn background_inspection_gives_its_decode_budget_back() {
        let bytes = Bytes::from(encoded(1024, 768, image::ImageFormat::Png));
        let checks = (0..6).map(|_| inspect_in_background(bytes.clone()));
        for result in futures::future::join_all(checks).await {
            assert_eq!(
                (result.expect("valid").width, decode_budget_in_use()),
                (1024, 0)
            );
        }
        let refused = inspect_in_background(Bytes::from(png_header(16_384, 3_051, 8, 2))).await;
        assert!(matches!(refused, Err(PhotoError::OverDecodeBudget { .. })));
        assert_eq!(decode_budget_in_use(), 0);
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
