//! The compact spellings inside callback data: ids as base64url, codes for types, genders and
//! presets, and the strict parsers that accept exactly what was written.

use aggregates::{
    AspectRatio, AvatarType, Gender, GenerationPreset, TrainingPreset, UpscaleFactor,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use uuid::Uuid;

/// Avatars per gallery page; pages beyond any sensible count are refused.
const MAX_PAGE: u32 = 9_999;

/// A positive number as `u32::to_string` writes it, so each button has one spelling.
pub(super) fn canonical_number(s: &str) -> Option<u32> {
    s.parse::<u32>()
        .ok()
        .filter(|n| *n > 0 && n.to_string() == s)
}

/// A UUID as 22 characters of base64url.
pub(super) fn short(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Only the canonical 22-character form is accepted, so one id has one spelling.
pub(super) fn from_short(text: &str) -> Option<Uuid> {
    if text.len() != 22 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let id = Uuid::from_slice(&bytes).ok()?;
    (short(id) == text).then_some(id)
}

/// A short tag naming one photo of an avatar in a button: the first 8 bytes of its content hash
/// (an avatar has at most 20 photos, so a collision is practically impossible and would only
/// pick which of two identical-looking photos goes).
pub fn photo_tag(content_hash: &str) -> u64 {
    content_hash
        .get(..16)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or(0)
}

/// The canonical 11-character base64url form of a photo tag only.
pub(super) fn parse_tag(text: &str) -> Option<u64> {
    if text.len() != 11 {
        return None;
    }
    let bytes: [u8; 8] = URL_SAFE_NO_PAD.decode(text).ok()?.try_into().ok()?;
    let tag = u64::from_be_bytes(bytes);
    (URL_SAFE_NO_PAD.encode(tag.to_be_bytes()) == text).then_some(tag)
}

pub(super) fn two_ids(text: &str) -> Option<(Uuid, Uuid)> {
    if text.len() != 44 {
        return None;
    }
    let (a, b) = text.split_at(22);
    Some((from_short(a)?, from_short(b)?))
}

/// The hyphenated lowercase form only, as the seed's buttons carry it.
pub(super) fn full_uuid(text: &str) -> Option<Uuid> {
    let id = Uuid::try_parse(text).ok()?;
    (id.hyphenated().to_string() == text).then_some(id)
}

pub(super) fn parse_page(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse().ok().filter(|p| *p <= MAX_PAGE)
}

pub(super) fn type_code(t: AvatarType) -> &'static str {
    match t {
        AvatarType::Portrait => "p",
        AvatarType::Style => "s",
    }
}

pub(super) fn parse_type(code: &str) -> Option<AvatarType> {
    [AvatarType::Portrait, AvatarType::Style]
        .into_iter()
        .find(|t| type_code(*t) == code)
}

pub(super) fn gender_code(g: Gender) -> &'static str {
    match g {
        Gender::Male => "m",
        Gender::Female => "f",
        Gender::Other => "o",
    }
}

pub(super) fn parse_gender(code: &str) -> Option<Gender> {
    [Gender::Male, Gender::Female, Gender::Other]
        .into_iter()
        .find(|g| gender_code(*g) == code)
}

pub(super) fn training_code(p: TrainingPreset) -> &'static str {
    match p {
        TrainingPreset::Fast => "f",
        TrainingPreset::Balanced => "b",
        TrainingPreset::Quality => "q",
    }
}

pub(super) fn parse_training(code: &str) -> Option<TrainingPreset> {
    TrainingPreset::ALL
        .into_iter()
        .find(|p| training_code(*p) == code)
}

pub(super) fn preset_code(p: GenerationPreset) -> &'static str {
    match p {
        GenerationPreset::Fast => "f",
        GenerationPreset::Balanced => "b",
        GenerationPreset::Quality => "q",
        GenerationPreset::Ultra => "u",
        GenerationPreset::Portrait => "p",
        GenerationPreset::Landscape => "l",
        GenerationPreset::Artistic => "a",
        GenerationPreset::Photorealistic => "r",
    }
}

/// `d` keeps the preset's frame; the others name one.
pub(super) fn aspect_code(aspect: Option<AspectRatio>) -> &'static str {
    match aspect {
        None => "d",
        Some(AspectRatio::Square) => "s",
        Some(AspectRatio::Portrait) => "p",
        Some(AspectRatio::Tall) => "t",
        Some(AspectRatio::Landscape) => "l",
        Some(AspectRatio::Wide) => "w",
    }
}

pub(super) fn parse_aspect(code: &str) -> Option<Option<AspectRatio>> {
    std::iter::once(None)
        .chain(AspectRatio::ALL.into_iter().map(Some))
        .find(|a| aspect_code(*a) == code)
}

/// Images per request: one digit, 1 to the generators' maximum.
pub(super) fn parse_images(text: &str) -> Option<u8> {
    let n: u8 = (text.len() == 1).then(|| text.parse().ok()).flatten()?;
    (1..=aggregates::presets::MAX_IMAGES_PER_GENERATION as u8)
        .contains(&n)
        .then_some(n)
}

/// An image's place in its result: one digit, below the maximum per request.
pub(super) fn parse_image_index(text: &str) -> Option<u8> {
    let n: u8 = (text.len() == 1).then(|| text.parse().ok()).flatten()?;
    (n < aggregates::presets::MAX_IMAGES_PER_GENERATION as u8).then_some(n)
}

/// A pack tag or a press: exactly eight lowercase hex digits.
pub(super) fn parse_pack_tag(text: &str) -> Option<u32> {
    if text.len() != 8 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

pub(super) fn parse_factor(text: &str) -> Option<UpscaleFactor> {
    UpscaleFactor::ALL
        .into_iter()
        .find(|f| f.times().to_string() == text)
}

pub(super) fn parse_preset(code: &str) -> Option<GenerationPreset> {
    GenerationPreset::ALL
        .into_iter()
        .find(|p| preset_code(*p) == code)
}
