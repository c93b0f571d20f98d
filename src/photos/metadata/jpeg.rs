//! JPEG's segment walk: what a decoder needs stays, application segments and comments go;
//! the scan skipping is shared with the intake check so both agree on where segments are.

use super::error::MetadataError;
use super::plan::Plan;
use super::tiff::{minimal_tiff, tiff_orientation, EXIF_PREFIX};

fn damaged_jpeg(why: &'static str) -> MetadataError {
    MetadataError::Damaged {
        format: "JPEG",
        why,
    }
}

/// Keeps every segment a decoder needs, through the end-of-image marker; drops APPn segments
/// other than JFIF, ICC and Adobe, comments, and anything after the end of the image.
pub(super) fn jpeg(b: &[u8]) -> Result<Plan, MetadataError> {
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
pub(super) fn minimal_jpeg_exif(orientation: u16) -> Vec<u8> {
    let tiff = minimal_tiff(orientation);
    let length = (2 + EXIF_PREFIX.len() + tiff.len()) as u16;
    let mut segment = vec![0xFF, 0xE1];
    segment.extend_from_slice(&length.to_be_bytes());
    segment.extend_from_slice(EXIF_PREFIX);
    segment.extend_from_slice(&tiff);
    segment
}

/// The TIFF payload of the first EXIF APP1 segment, walking the same way as [`jpeg`].
pub(super) fn find_jpeg_exif(b: &[u8]) -> Option<&[u8]> {
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

/// Returns the offset of the marker that ends a scan, or `None` if the data ends first.
pub(in crate::photos) fn skip_scan_data(bytes: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i += bytes.get(i..)?.iter().position(|&b| b == 0xFF)?;
        match *bytes.get(i + 1)? {
            // Stuffed 0xFF, restart marker, or a fill byte: still inside the scan.
            0x00 | 0xD0..=0xD7 | 0xFF => i += 1,
            _ => return Some(i),
        }
    }
}
