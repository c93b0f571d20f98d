//! WebP's RIFF chunk walk: the image chunks stay, EXIF and XMP go, and the VP8X flags and RIFF
//! size are rewritten so they still describe what remains.

use super::error::MetadataError;
use super::plan::{Piece, Plan};
use super::tiff::{minimal_tiff, tiff_orientation, without_exif_prefix};

/// Chunks that make up the image; EXIF, XMP and unknown chunks are dropped.
const WEBP_KEEP: [&[u8; 4]; 7] = [
    b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF", b"ICCP",
];
/// VP8X flag bits that announce metadata chunks.
pub(super) const VP8X_EXIF: u8 = 0x08;
pub(super) const VP8X_XMP: u8 = 0x04;

fn damaged_webp(why: &'static str) -> MetadataError {
    MetadataError::Damaged {
        format: "WebP",
        why,
    }
}

pub(super) fn webp(b: &[u8]) -> Result<Plan, MetadataError> {
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

pub(super) fn riff_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = kind.to_vec();
    chunk.extend_from_slice(&(data.len() as u32).to_le_bytes());
    chunk.extend_from_slice(data);
    if data.len() % 2 == 1 {
        chunk.push(0);
    }
    chunk
}
