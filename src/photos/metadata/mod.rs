//! Metadata removal: a photo is stored and sent to FAL without what the camera or an editor
//! wrote beside the pixels — EXIF (GPS position, time, camera serial number, thumbnails), XMP,
//! IPTC/Photoshop blocks, comments, and PNG/WebP text and time chunks.
//!
//! It is lossless: whole segments and chunks are left out, the compressed pixel data is copied
//! byte for byte, so the photo decodes to exactly the same pixels. What decoding or colour
//! needs stays: JPEG's JFIF, ICC profile and Adobe colour-transform segments, PNG's colour and
//! transparency chunks, WebP's ICC profile, alpha and animation chunks.
//!
//! Orientation: our intake (`super::check`) never applies it (the size rule holds either
//! way), but FAL's trainers see the photo as a viewer would only if the EXIF orientation
//! survives. Re-encoding rotated pixels would lose quality and change what was inspected, so
//! when a photo is not upright the EXIF block is replaced by one holding the orientation tag
//! alone (26 bytes of TIFF, nothing else in it).
//!
//! Why not a crate: `img-parts` keeps everything after a JPEG's first scan as one opaque blob
//! (so data after the end marker — vendor trailers, the secondary images of a multi-picture
//! file with their own EXIF — would survive) and leaves WebP's XMP flag set when the chunk is
//! dropped. The walk is short, and it shares its JPEG scan skipping with the intake check.
//!
//! The result is deterministic and idempotent: stripping a stripped photo gives the same bytes
//! back (without copying), so a hash of the stripped bytes is stable wherever it is computed.

mod error;
mod jpeg;
mod plan;
mod png;
mod tiff;
mod webp;

use std::borrow::Cow;

pub use error::MetadataError;
pub(super) use jpeg::skip_scan_data;
#[cfg(test)]
pub(crate) use png::crc32;

use jpeg::{find_jpeg_exif, jpeg};
use png::{png, PNG_SIGNATURE};
use tiff::{tiff_orientation, without_exif_prefix};
use webp::webp;

/// The photo without its metadata: the input itself when there was none to remove.
pub fn strip(bytes: &[u8]) -> Result<Cow<'_, [u8]>, MetadataError> {
    let plan = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        jpeg(bytes)?
    } else if bytes.starts_with(PNG_SIGNATURE) {
        png(bytes)?
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        webp(bytes)?
    } else {
        return Err(MetadataError::NotAPhoto);
    };
    Ok(plan.apply(bytes))
}

/// The EXIF orientation (1–8) a photo declares, if any; for tests and diagnostics.
pub fn orientation(bytes: &[u8]) -> Option<u16> {
    let stripped = strip(bytes).ok()?;
    let tiff = if stripped.starts_with(&[0xFF, 0xD8]) {
        find_jpeg_exif(&stripped)?
    } else if stripped.starts_with(PNG_SIGNATURE) {
        find_chunk(&stripped, 8, ChunkLayout::Png, b"eXIf")?
    } else {
        find_chunk(&stripped, 12, ChunkLayout::Riff, b"EXIF")?
    };
    tiff_orientation(without_exif_prefix(tiff))
}

/// How chunks are framed, for [`find_chunk`].
#[derive(Clone, Copy)]
enum ChunkLayout {
    /// Length (big-endian), type, data, CRC.
    Png,
    /// Type, length (little-endian), data, padding to an even length.
    Riff,
}

fn find_chunk<'a>(
    b: &'a [u8],
    mut i: usize,
    layout: ChunkLayout,
    kind: &[u8; 4],
) -> Option<&'a [u8]> {
    while let Some(header) = b.get(i..i + 8) {
        let (this, size, data_at, next) = match layout {
            ChunkLayout::Png => {
                let size = u32::from_be_bytes(header[..4].try_into().ok()?) as usize;
                (&header[4..8], size, i + 8, i + 12 + size)
            }
            ChunkLayout::Riff => {
                let size = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
                (&header[..4], size, i + 8, i + 8 + size + (size & 1))
            }
        };
        if this == kind {
            return b.get(data_at..data_at + size);
        }
        i = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use image::{DynamicImage, ImageBuffer, Rgb, Rgba};

    use super::jpeg::minimal_jpeg_exif;
    use super::png::png_chunk;
    use super::tiff::EXIF_PREFIX;
    use super::webp::{riff_chunk, VP8X_EXIF, VP8X_XMP};
    use super::*;

    /// Where the photo was taken, as the test's GPS tags and strings say; must never survive.
    const SECRET: &[u8] = b"Secret Street 7, Home Town";

    /// A big-endian TIFF/EXIF block: IFD0 with orientation, make, an EXIF sub-IFD pointer and
    /// a GPS IFD pointer; the GPS IFD holds latitude/longitude references and rationals, and
    /// a processing-method string carrying [`SECRET`].
    fn exif_tiff(orientation: u16) -> Vec<u8> {
        let mut t = b"MM\x00\x2A".to_vec();
        t.extend_from_slice(&8u32.to_be_bytes());
        // IFD0 at 8: 3 entries → 2 + 36 + 4 = 42 bytes, so data starts at 50.
        let gps_ifd = 50u32;
        let entry = |t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]| {
            t.extend_from_slice(&tag.to_be_bytes());
            t.extend_from_slice(&kind.to_be_bytes());
            t.extend_from_slice(&count.to_be_bytes());
            t.extend_from_slice(&value);
        };
        t.extend_from_slice(&3u16.to_be_bytes());
        let o = orientation.to_be_bytes();
        entry(&mut t, 0x0112, 3, 1, [o[0], o[1], 0, 0]);
        entry(&mut t, 0x010F, 2, 4, *b"ACM\0");
        entry(&mut t, 0x8825, 4, 1, gps_ifd.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(t.len(), 50);
        // GPS IFD at 50: 5 entries → 2 + 60 + 4 = 66 bytes, data from 116.
        let lat = 116u32;
        let lon = lat + 24;
        let method = lon + 24;
        t.extend_from_slice(&5u16.to_be_bytes());
        entry(&mut t, 0x0001, 2, 2, *b"N\0\0\0");
        entry(&mut t, 0x0002, 5, 3, lat.to_be_bytes());
        entry(&mut t, 0x0003, 2, 2, *b"E\0\0\0");
        entry(&mut t, 0x0004, 5, 3, lon.to_be_bytes());
        entry(&mut t, 0x001B, 7, SECRET.len() as u32, method.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        for (deg, min, sec) in [(55u32, 45u32, 21u32), (37, 37, 4)] {
            for v in [deg, min, sec] {
                t.extend_from_slice(&v.to_be_bytes());
                t.extend_from_slice(&1u32.to_be_bytes());
            }
        }
        t.extend_from_slice(SECRET);
        t
    }

    fn image(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(ImageBuffer::from_fn(width, height, |x, y| {
            Rgb([
                (x * 7 % 256) as u8,
                (y * 3 % 256) as u8,
                ((x + y) % 256) as u8,
            ])
        }))
    }

    fn encode(img: &DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    fn jpeg_segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    /// A JPEG with EXIF (GPS), XMP, IPTC, a comment and a trailer after the end marker.
    fn jpeg_with_metadata(orientation: u16) -> Vec<u8> {
        jpeg_of_size_with_metadata(64, 48, orientation)
    }

    fn jpeg_of_size_with_metadata(width: u32, height: u32, orientation: u16) -> Vec<u8> {
        let clean = encode(&image(width, height), image::ImageFormat::Jpeg);
        let mut exif = EXIF_PREFIX.to_vec();
        exif.extend_from_slice(&exif_tiff(orientation));
        let mut xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>".to_vec();
        xmp.extend_from_slice(SECRET);
        let mut iptc = b"Photoshop 3.0\08BIM\x04\x04".to_vec();
        iptc.extend_from_slice(SECRET);
        // Before the encoder's JFIF segment, as some phone apps write them.
        let mut out = clean[..2].to_vec();
        out.extend(jpeg_segment(0xE1, &exif));
        out.extend(jpeg_segment(0xE1, &xmp));
        out.extend(jpeg_segment(0xED, &iptc));
        out.extend(jpeg_segment(0xFE, SECRET));
        out.extend_from_slice(&clean[2..]);
        out.extend_from_slice(b"vendor trailer ");
        out.extend_from_slice(SECRET);
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn pixels(bytes: &[u8]) -> Vec<u8> {
        image::load_from_memory(bytes)
            .expect("decodes")
            .to_rgba8()
            .into_raw()
    }

    #[test]
    fn a_jpeg_loses_exif_gps_xmp_iptc_comments_and_trailers_but_not_a_pixel() {
        let dirty = jpeg_with_metadata(1);
        assert!(contains(&dirty, SECRET));
        let clean = strip(&dirty).expect("strips");
        assert!(!contains(&clean, SECRET), "the location survived");
        assert!(
            !contains(&clean, EXIF_PREFIX),
            "an upright photo keeps no EXIF"
        );
        assert!(!contains(&clean, b"http://ns.adobe.com"));
        assert!(!contains(&clean, b"8BIM"));
        assert!(clean.ends_with(&[0xFF, 0xD9]));
        assert_eq!(pixels(&clean), pixels(&dirty));
        // The encoder's own output (JFIF and the image) is all that is left.
        let encoded = encode(&image(64, 48), image::ImageFormat::Jpeg);
        assert_eq!(&clean[..], &encoded[..]);
        assert!(matches!(strip(&encoded), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn a_rotated_jpeg_keeps_its_orientation_and_nothing_else() {
        let dirty = jpeg_with_metadata(6);
        let clean = strip(&dirty).expect("strips");
        assert!(!contains(&clean, SECRET));
        assert!(!contains(&clean, b"ACM"), "the camera make survived");
        assert_eq!(orientation(&dirty), Some(6));
        assert_eq!(orientation(&clean), Some(6));
        assert!(contains(&clean, &minimal_jpeg_exif(6)));
        assert_eq!(pixels(&clean), pixels(&dirty));
        // The image crate reads the same orientation from what remains.
        let mut decoder = image::ImageReader::new(Cursor::new(&clean[..]))
            .with_guessed_format()
            .unwrap()
            .into_decoder()
            .unwrap();
        use image::ImageDecoder;
        assert_eq!(
            decoder.orientation().unwrap(),
            image::metadata::Orientation::Rotate90
        );
        // Stripping again changes nothing and copies nothing.
        assert!(matches!(strip(&clean), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn a_progressive_jpeg_with_a_comment_between_scans_loses_it() {
        // Segments may sit between the scans of a progressive JPEG; they are walked too.
        let clean = encode(&image(32, 32), image::ImageFormat::Jpeg);
        let eoi = clean.len() - 2;
        let mut dirty = clean[..eoi].to_vec();
        dirty.extend(jpeg_segment(0xFE, SECRET));
        dirty.extend_from_slice(&clean[eoi..]);
        let stripped = strip(&dirty).expect("strips");
        assert_eq!(&stripped[..], &clean[..]);
    }

    fn png_with_metadata(orientation: u16) -> (Vec<u8>, Vec<u8>) {
        let img = DynamicImage::ImageRgba8(ImageBuffer::from_fn(40, 30, |x, y| {
            Rgba([x as u8 * 5, y as u8 * 7, 128, (x + y) as u8])
        }));
        let clean = encode(&img, image::ImageFormat::Png);
        // After IHDR (8 + 25 bytes): text, time and EXIF chunks, as phones and editors write them.
        let after_ihdr = 8 + 25;
        let mut dirty = clean[..after_ihdr].to_vec();
        let mut text = b"Location\0".to_vec();
        text.extend_from_slice(SECRET);
        dirty.extend(png_chunk(b"tEXt", &text));
        dirty.extend(png_chunk(b"tIME", &[7, 232, 6, 1, 12, 0, 0]));
        dirty.extend(png_chunk(b"eXIf", &exif_tiff(orientation)));
        let mut itxt = b"Comment\0\0\0\0\0".to_vec();
        itxt.extend_from_slice(SECRET);
        dirty.extend(png_chunk(b"iTXt", &itxt));
        dirty.extend(png_chunk(
            b"zTXt",
            b"Author\0\0x\x9c\x03\x00\x00\x00\x00\x01",
        ));
        dirty.extend_from_slice(&clean[after_ihdr..]);
        dirty.extend_from_slice(SECRET);
        (dirty, clean)
    }

    #[test]
    fn a_png_loses_its_text_time_and_exif_chunks() {
        let (dirty, clean) = png_with_metadata(1);
        assert!(contains(&dirty, SECRET));
        let stripped = strip(&dirty).expect("strips");
        assert_eq!(&stripped[..], &clean[..]);
        assert_eq!(pixels(&stripped), pixels(&dirty));

        let (rotated, _) = png_with_metadata(8);
        let stripped = strip(&rotated).expect("strips");
        assert!(!contains(&stripped, SECRET));
        assert_eq!(orientation(&stripped), Some(8));
        assert_eq!(pixels(&stripped), pixels(&rotated));
        assert!(matches!(strip(&stripped), Ok(Cow::Borrowed(_))));
    }

    /// The encoder's WebP (lossless, simple format) rewrapped in the extended format with
    /// EXIF and XMP chunks and their VP8X flags.
    fn webp_with_metadata(orientation: u16) -> (Vec<u8>, Vec<u8>) {
        let img = image(48, 40);
        let simple = encode(&img, image::ImageFormat::WebP);
        let image_chunk = &simple[12..];
        let mut vp8x = vec![VP8X_EXIF | VP8X_XMP, 0, 0, 0];
        vp8x.extend_from_slice(&(48u32 - 1).to_le_bytes()[..3]);
        vp8x.extend_from_slice(&(40u32 - 1).to_le_bytes()[..3]);
        let mut xmp = b"<x:xmpmeta>".to_vec();
        xmp.extend_from_slice(SECRET);
        let mut exif = EXIF_PREFIX.to_vec();
        exif.extend_from_slice(&exif_tiff(orientation));
        let mut body = riff_chunk(b"VP8X", &vp8x);
        body.extend_from_slice(image_chunk);
        body.extend(riff_chunk(b"EXIF", &exif));
        body.extend(riff_chunk(b"XMP ", &xmp));
        let wrap = |body: &[u8]| {
            let mut out = b"RIFF".to_vec();
            out.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
            out.extend_from_slice(b"WEBP");
            out.extend_from_slice(body);
            out
        };
        let dirty = wrap(&body);
        let mut expected_body = riff_chunk(b"VP8X", &{
            let mut v = vp8x.clone();
            v[0] = 0;
            v
        });
        expected_body.extend_from_slice(image_chunk);
        (dirty, wrap(&expected_body))
    }

    #[test]
    fn a_webp_loses_exif_and_xmp_and_their_flags() {
        let (dirty, expected) = webp_with_metadata(1);
        assert_eq!(pixels(&dirty).len(), 48 * 40 * 4, "the test file decodes");
        let stripped = strip(&dirty).expect("strips");
        assert!(!contains(&stripped, SECRET));
        assert_eq!(&stripped[..], &expected[..]);
        assert_eq!(pixels(&stripped), pixels(&dirty));

        let (rotated, _) = webp_with_metadata(3);
        let stripped = strip(&rotated).expect("strips");
        assert!(!contains(&stripped, SECRET));
        assert_eq!(orientation(&stripped), Some(3));
        assert_eq!(stripped[20] & (VP8X_EXIF | VP8X_XMP), VP8X_EXIF);
        assert_eq!(pixels(&stripped), pixels(&rotated));
        assert!(matches!(strip(&stripped), Ok(Cow::Borrowed(_))));

        let simple = encode(&image(48, 40), image::ImageFormat::WebP);
        assert!(matches!(strip(&simple), Ok(Cow::Borrowed(_))));
    }

    #[test]
    fn other_bytes_are_not_photos_and_cut_photos_are_damaged() {
        assert_eq!(strip(b"plain text"), Err(MetadataError::NotAPhoto));
        let jpeg = jpeg_with_metadata(1);
        assert!(matches!(
            strip(&jpeg[..jpeg.len() / 2]),
            Err(MetadataError::Damaged { format: "JPEG", .. })
        ));
        let (png, _) = png_with_metadata(1);
        assert!(matches!(
            strip(&png[..png.len() / 2]),
            Err(MetadataError::Damaged { format: "PNG", .. })
        ));
        let (webp, _) = webp_with_metadata(1);
        assert!(matches!(
            strip(&webp[..webp.len() - 10]),
            Err(MetadataError::Damaged { format: "WebP", .. })
        ));
    }

    #[test]
    fn intake_hashes_the_stripped_bytes_so_other_exif_is_still_a_duplicate() {
        let at_home = jpeg_of_size_with_metadata(512, 512, 1);
        let mut elsewhere = at_home.clone();
        let at = elsewhere.len() - 10;
        elsewhere[at..].copy_from_slice(b"Elsewhere!"); // another place in the trailer
        let plain = encode(&image(512, 512), image::ImageFormat::Jpeg);
        let checked: Vec<_> = [&at_home, &elsewhere, &plain]
            .iter()
            .map(|b| super::super::inspect(b).map(|c| (c.content_hash, c.byte_size)))
            .collect();
        assert!(checked[2].is_ok(), "{checked:?}");
        assert!(checked.iter().all(|c| c == &checked[2]), "{checked:?}");
        assert_ne!(at_home, elsewhere);
    }

    #[test]
    fn the_chunk_crc_is_zlibs() {
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }
}
