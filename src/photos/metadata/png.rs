//! PNG's chunk walk: critical chunks and those that change how pixels look stay, text, time
//! and private chunks go.

use super::error::MetadataError;
use super::plan::Plan;
use super::tiff::{minimal_tiff, tiff_orientation, without_exif_prefix};

pub(super) const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Ancillary chunks that change how the pixels look (colour, gamma, transparency, density,
/// animation); every other ancillary chunk — text, time, EXIF, private ones — is dropped.
const PNG_KEEP: [&[u8; 4]; 14] = [
    b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB", b"cICP", b"mDCV", b"cLLI", b"bKGD",
    b"pHYs", b"acTL", b"fcTL", b"fdAT",
];

fn damaged_png(why: &'static str) -> MetadataError {
    MetadataError::Damaged { format: "PNG", why }
}

pub(super) fn png(b: &[u8]) -> Result<Plan, MetadataError> {
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

pub(super) fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
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
