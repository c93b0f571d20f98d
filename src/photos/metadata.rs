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
//! dropped. The walk below is short, and it shares its JPEG scan skipping with the intake check.
//!
//! The result is deterministic and idempotent: stripping a stripped photo gives the same bytes
//! back (without copying), so a hash of the stripped bytes is stable wherever it is computed.

use std::borrow::Cow;
use std::ops::Range;

/// Why a photo's metadata could not be removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("not a JPEG, PNG or WebP file")]
    NotAPhoto,
    #[error("the {format} structure is damaged: {why}")]
    Damaged {
        format: &'static str,
        why: &'static str,
    },
}

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

// ------------------------------------------------------------------------------------ output

/// What the output is made of: ranges of the input, and the few bytes we write ourselves.
#[derive(Default)]
struct Plan {
    pieces: Vec<Piece>,
}

enum Piece {
    Keep(Range<usize>),
    Write(Vec<u8>),
}

impl Plan {
    fn keep(&mut self, range: Range<usize>) {
        if let Some(Piece::Keep(last)) = self.pieces.last_mut() {
            if last.end == range.start {
                last.end = range.end;
                return;
            }
        }
        self.pieces.push(Piece::Keep(range));
    }

    fn write(&mut self, bytes: Vec<u8>) {
        self.pieces.push(Piece::Write(bytes));
    }

    fn apply(self, input: &[u8]) -> Cow<'_, [u8]> {
        if let [Piece::Keep(all)] = self.pieces.as_slice() {
            if *all == (0..input.len()) {
                return Cow::Borrowed(input);
            }
        }
        let len = self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Keep(r) => r.len(),
                Piece::Write(b) => b.len(),
            })
            .sum();
        let mut out = Vec::with_capacity(len);
        for piece in &self.pieces {
            match piece {
                Piece::Keep(r) => out.extend_from_slice(&input[r.clone()]),
                Piece::Write(b) => out.extend_from_slice(b),
            }
        }
        Cow::Owned(out)
    }
}

// -------------------------------------------------------------------------------------- JPEG

const EXIF_PREFIX: &[u8] = b"Exif\0\0";

fn damaged_jpeg(why: &'static str) -> MetadataError {
    MetadataError::Damaged {
        format: "JPEG",
        why,
    }
}

/// Keeps every segment a decoder needs, through the end-of-image marker; drops APPn segments
/// other than JFIF, ICC and Adobe, comments, and anything after the end of the image.
fn jpeg(b: &[u8]) -> Result<Plan, MetadataError> {
    const CUT: &str = "the data ends inside a segment";
    let mut plan = Plan::default();
    plan.keep(0..2);
    let mut orientation_written = false;
    let mut i = 2;
    loop {
        // Stray bytes between segments carry nothing a decoder uses: they are left out.
        let start = i + b[i..]
            .iter()
            .position(|&x| x == 0xFF)
            .ok_or_else(|| damaged_jpeg("no end-of-image marker"))?;
        let mut m = start;
        while m < b.len() && b[m] == 0xFF {
            m += 1;
        }
        let marker = *b.get(m).ok_or_else(|| damaged_jpeg(CUT))?;
        match marker {
            0xD9 => {
                plan.keep(start..m + 1);
                return Ok(plan);
            }
            0x00 | 0x01 | 0xD0..=0xD7 => {
                plan.keep(start..m + 1);
                i = m + 1;
                continue;
            }
            _ => {}
        }
        let length = b.get(m + 1..m + 3).ok_or_else(|| damaged_jpeg(CUT))?;
        let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
        if length < 2 {
            return Err(damaged_jpeg("a segment has an impossible length"));
        }
        let end = (m + 1)
            .checked_add(length)
            .filter(|&end| end <= b.len())
            .ok_or_else(|| damaged_jpeg(CUT))?;
        let payload = &b[m + 3..end];
        if marker == 0xDA {
            let scan_end = skip_scan_data(b, end).ok_or_else(|| damaged_jpeg(CUT))?;
            plan.keep(start..scan_end);
            i = scan_end;
            continue;
        }
        match jpeg_segment_kind(marker, payload) {
            Segment::Needed => plan.keep(start..end),
            Segment::Exif if !orientation_written => {
                orientation_written = true;
                if let Some(value) = tiff_orientation(&payload[EXIF_PREFIX.len()..]) {
                    let minimal = minimal_jpeg_exif(value);
                    if b[start..end] == minimal[..] {
                        plan.keep(start..end);
                    } else {
                        plan.write(minimal);
                    }
                }
            }
            Segment::Exif | Segment::Metadata => {}
        }
        i = end;
    }
}

enum Segment {
    Needed,
    Exif,
    Metadata,
}

fn jpeg_segment_kind(marker: u8, payload: &[u8]) -> Segment {
    match marker {
        0xE0 if payload.starts_with(b"JFIF\0") => Segment::Needed,
        0xE1 if payload.starts_with(EXIF_PREFIX) => Segment::Exif,
        0xE2 if payload.starts_with(b"ICC_PROFILE\0") => Segment::Needed,
        // Says whether the decoder must convert from YCCK/CMYK: the colours depend on it.
        0xEE if payload.starts_with(b"Adobe") => Segment::Needed,
        // Every other application segment (XMP, IPTC/Photoshop, MPF, FlashPix, vendors'
        // blocks, JFXX thumbnails) and comments.
        0xE0..=0xEF | 0xFE => Segment::Metadata,
        // Frame and scan structure: tables, frame headers, restart intervals …
        _ => Segment::Needed,
    }
}

/// The APP1 segment of a minimal EXIF block holding only the orientation.
fn minimal_jpeg_exif(orientation: u16) -> Vec<u8> {
    let tiff = minimal_tiff(orientation);
    let length = (2 + EXIF_PREFIX.len() + tiff.len()) as u16;
    let mut segment = vec![0xFF, 0xE1];
    segment.extend_from_slice(&length.to_be_bytes());
    segment.extend_from_slice(EXIF_PREFIX);
    segment.extend_from_slice(&tiff);
    segment
}

/// The TIFF payload of the first EXIF APP1 segment, walking the same way as [`jpeg`].
fn find_jpeg_exif(b: &[u8]) -> Option<&[u8]> {
    let mut i = 2;
    loop {
        i += b.get(i..)?.iter().position(|&x| x == 0xFF)?;
        while b.get(i) == Some(&0xFF) {
            i += 1;
        }
        let marker = *b.get(i)?;
        if matches!(marker, 0xD9 | 0xDA) {
            return None;
        }
        if matches!(marker, 0x00 | 0x01 | 0xD0..=0xD7) {
            i += 1;
            continue;
        }
        let length = usize::from(u16::from_be_bytes([*b.get(i + 1)?, *b.get(i + 2)?]));
        let payload = b.get(i + 3..i + 1 + length)?;
        if marker == 0xE1 && payload.starts_with(EXIF_PREFIX) {
            return Some(payload);
        }
        i += 1 + length;
    }
}

// --------------------------------------------------------------------------------------- PNG

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Ancillary chunks that change how the pixels look (colour, gamma, transparency, density,
/// animation); every other ancillary chunk — text, time, EXIF, private ones — is dropped.
const PNG_KEEP: [&[u8; 4]; 14] = [
    b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB", b"cICP", b"mDCV", b"cLLI", b"bKGD",
    b"pHYs", b"acTL", b"fcTL", b"fdAT",
];

fn damaged_png(why: &'static str) -> MetadataError {
    MetadataError::Damaged { format: "PNG", why }
}

fn png(b: &[u8]) -> Result<Plan, MetadataError> {
    let mut plan = Plan::default();
    plan.keep(0..PNG_SIGNATURE.len());
    let mut orientation_written = false;
    let mut i = PNG_SIGNATURE.len();
    loop {
        let header = b
            .get(i..i + 8)
            .ok_or_else(|| damaged_png("the data ends before the IEND chunk"))?;
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind: &[u8; 4] = header[4..8].try_into().expect("four bytes");
        let end = (i + 12)
            .checked_add(length)
            .filter(|&end| end <= b.len())
            .ok_or_else(|| damaged_png("a chunk runs past the end of the file"))?;
        // A critical chunk (upper-case first letter) is one a decoder cannot skip.
        let critical = kind[0] & 0x20 == 0;
        if critical || PNG_KEEP.contains(&kind) {
            plan.keep(i..end);
        } else if kind == b"eXIf" && !orientation_written {
            orientation_written = true;
            let tiff = without_exif_prefix(&b[i + 8..end - 4]);
            if let Some(value) = tiff_orientation(tiff) {
                let minimal = png_chunk(b"eXIf", &minimal_tiff(value));
                if b[i..end] == minimal[..] {
                    plan.keep(i..end);
                } else {
                    plan.write(minimal);
                }
            }
        }
        i = end;
        // Whatever follows IEND is no part of the image.
        if kind == b"IEND" {
            return Ok(plan);
        }
    }
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let crc = crc32(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    chunk
}

/// The CRC-32 PNG chunks end with (ISO 3309, as zlib computes it); only the one small chunk
/// we write needs it, so a bitwise loop does.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// -------------------------------------------------------------------------------------- WebP

/// Chunks that make up the image; EXIF, XMP and unknown chunks are dropped.
const WEBP_KEEP: [&[u8; 4]; 7] = [
    b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP",
];
/// VP8X flag bits that announce metadata chunks.
const VP8X_EXIF: u8 = 0x08;
const VP8X_XMP: u8 = 0x04;

fn damaged_webp(why: &'static str) -> MetadataError {
    MetadataError::Damaged {
        format: "WebP",
        why,
    }
}

fn webp(b: &[u8]) -> Result<Plan, MetadataError> {
    let riff_size = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
    let riff_end = riff_size
        .checked_add(8)
        .filter(|&end| end <= b.len() && end >= 12)
        .ok_or_else(|| damaged_webp("the file is shorter than its RIFF header says"))?;

    // First the chunks, in order; the header is written once their total size is known.
    let mut chunks: Vec<Piece> = Vec::new();
    let mut changed = riff_end != b.len();
    let mut exif_kept = false;
    let mut vp8x: Option<usize> = None;
    let mut i = 12;
    while i < riff_end {
        let header = b
            .get(i..i + 8)
            .filter(|_| i + 8 <= riff_end)
            .ok_or_else(|| damaged_webp("a chunk header is cut off"))?;
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let kind: &[u8; 4] = header[..4].try_into().expect("four bytes");
        let padded = size + (size & 1);
        let end = (i + 8)
            .checked_add(padded)
            // Some writers leave the last chunk's padding byte out.
            .map(|end| {
                if end == riff_end + 1 && size & 1 == 1 {
                    riff_end
                } else {
                    end
                }
            })
            .filter(|&end| end <= riff_end)
            .ok_or_else(|| damaged_webp("a chunk runs past the end of the file"))?;
        if kind == b"VP8X" {
            vp8x = Some(chunks.len());
        }
        if WEBP_KEEP.contains(&kind) {
            chunks.push(Piece::Keep(i..end));
        } else if kind == b"EXIF" && !exif_kept {
            let payload = &b[i + 8..i + 8 + size];
            match tiff_orientation(without_exif_prefix(payload)) {
                Some(value) => {
                    exif_kept = true;
                    let minimal = riff_chunk(b"EXIF", &minimal_tiff(value));
                    if b[i..end] == minimal[..] {
                        chunks.push(Piece::Keep(i..end));
                    } else {
                        chunks.push(Piece::Write(minimal));
                        changed = true;
                    }
                }
                None => changed = true,
            }
        } else {
            changed = true;
        }
        i = end;
    }

    // The VP8X flags must announce exactly the metadata chunks that remain.
    if let Some(index) = vp8x {
        let Piece::Keep(range) = &chunks[index] else {
            unreachable!("the VP8X chunk is kept as it was")
        };
        let flags = *b
            .get(range.start + 8)
            .ok_or_else(|| damaged_webp("the VP8X chunk is empty"))?;
        let wanted = (flags & !(VP8X_EXIF | VP8X_XMP)) | if exif_kept { VP8X_EXIF } else { 0 };
        if wanted != flags {
            let mut patched = b[range.clone()].to_vec();
            patched[8] = wanted;
            chunks[index] = Piece::Write(patched);
            changed = true;
        }
    }

    let mut plan = Plan::default();
    if !changed {
        plan.keep(0..b.len());
        return Ok(plan);
    }
    let body: usize = chunks
        .iter()
        .map(|p| match p {
            Piece::Keep(r) => r.len(),
            Piece::Write(w) => w.len(),
        })
        .sum();
    let mut header = b"RIFF".to_vec();
    header.extend_from_slice(&((4 + body) as u32).to_le_bytes());
    header.extend_from_slice(b"WEBP");
    plan.write(header);
    for piece in chunks {
        match piece {
            Piece::Keep(r) => plan.keep(r),
            Piece::Write(w) => plan.write(w),
        }
    }
    Ok(plan)
}

fn riff_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = kind.to_vec();
    chunk.extend_from_slice(&(data.len() as u32).to_le_bytes());
    chunk.extend_from_slice(data);
    if data.len() % 2 == 1 {
        chunk.push(0);
    }
    chunk
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

// -------------------------------------------------------------------------------------- TIFF

/// Some writers put JPEG's `Exif\0\0` in front of the TIFF data of PNG and WebP EXIF chunks.
fn without_exif_prefix(data: &[u8]) -> &[u8] {
    data.strip_prefix(EXIF_PREFIX).unwrap_or(data)
}

/// The orientation tag (0x0112) of the first image directory, when it says anything but
/// "upright" (1): only then is it worth keeping.
fn tiff_orientation(tiff: &[u8]) -> Option<u16> {
    let little = match tiff.get(..4)? {
        [b'I', b'I', 42, 0] => true,
        [b'M', b'M', 0, 42] => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let raw: [u8; 2] = tiff.get(at..at + 2)?.try_into().ok()?;
        Some(if little {
            u16::from_le_bytes(raw)
        } else {
            u16::from_be_bytes(raw)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let raw: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(raw)
        } else {
            u32::from_be_bytes(raw)
        })
    };
    let ifd = u32_at(4)? as usize;
    let entries = usize::from(u16_at(ifd)?);
    for n in 0..entries {
        let entry = ifd + 2 + 12 * n;
        // Type 3 is SHORT; one value sits in the first two bytes of the value field.
        if u16_at(entry)? == 0x0112 && u16_at(entry + 2)? == 3 && u32_at(entry + 4)? == 1 {
            let value = u16_at(entry + 8)?;
            return (2..=8).contains(&value).then_some(value);
        }
    }
    None
}

/// A little-endian TIFF block with one directory holding one tag: the orientation.
fn minimal_tiff(orientation: u16) -> Vec<u8> {
    let mut tiff = b"II\x2A\x00".to_vec();
    tiff.extend_from_slice(&8u32.to_le_bytes()); // the directory follows the header
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // one value
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next directory
    tiff
}

/// Returns the offset of the marker that ends a scan, or `None` if the data ends first.
pub(super) fn skip_scan_data(bytes: &[u8], mut i: usize) -> Option<usize> {
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
    use std::io::Cursor;

    use image::{DynamicImage, ImageBuffer, Rgb, Rgba};

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
