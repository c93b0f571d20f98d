//! The EXIF block's TIFF structure: reading the orientation, the only tag worth keeping, and
//! writing the minimal block that holds it; shared by all three formats.

/// What JPEG puts in front of the TIFF data of its EXIF segment.
pub(super) const EXIF_PREFIX: &[u8] = b"Exif\0\0";

/// Some writers put JPEG's `Exif\0\0` in front of the TIFF data of PNG and WebP EXIF chunks.
pub(super) fn without_exif_prefix(data: &[u8]) -> &[u8] {
    data.strip_prefix(EXIF_PREFIX).unwrap_or(data)
}

/// The orientation tag (0x0112) of the first image directory, when it says anything but
/// "upright" (1): only then is it worth keeping.
pub(super) fn tiff_orientation(tiff: &[u8]) -> Option<u16> {
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
pub(super) fn minimal_tiff(orientation: u16) -> Vec<u8> {
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
