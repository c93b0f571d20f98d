//! Small domain values with their own validation rules.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::errors::AvatarError;

/// Gender chosen at creation; it steers prompts, not rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gender {
    Male,
    Female,
    Other,
}

impl Gender {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Male => "male",
            Self::Female => "female",
            Self::Other => "other",
        }
    }
}

/// Image formats accepted for training photos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
}

impl ImageFormat {
    /// The accepted formats by name (as an image decoder reports them); anything else is refused.
    pub fn parse(name: &str) -> Result<Self, AvatarError> {
        match name.to_ascii_lowercase().as_str() {
            "jpeg" | "jpg" => Ok(Self::Jpeg),
            "png" => Ok(Self::Png),
            "webp" => Ok(Self::Webp),
            _ => Err(AvatarError::UnsupportedFormat(name.to_owned())),
        }
    }

    /// The file extension used inside the training archive.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }
}

/// An avatar's display name: trimmed, non-empty, at most [`AvatarName::MAX_CHARS`] characters of
/// any script (emoji included), and free of control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AvatarName(String);

impl AvatarName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, AvatarError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(AvatarError::EmptyName);
        }
        let chars = trimmed.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(AvatarError::NameTooLong {
                max: Self::MAX_CHARS,
                actual: chars,
            });
        }
        if trimmed.chars().any(char::is_control) {
            return Err(AvatarError::NameHasControlCharacters);
        }
        let chars: Vec<char> = trimmed.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            let joins_emoji = *c == ZWJ
                && i > 0
                && is_pictographic(chars[i - 1])
                && chars.get(i + 1).is_some_and(|next| is_pictographic(*next));
            let flag_tag = is_emoji_tag(*c) && chars[..i].contains(&'\u{1F3F4}');
            if is_invisible(*c) && !joins_emoji && !flag_tag {
                return Err(AvatarError::NameHasInvisibleCharacters {
                    code_point: format!("U+{:04X}", u32::from(*c)),
                });
            }
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const ZWJ: char = '\u{200D}';

/// Unicode format characters (general category Cf): bidi controls, zero-width characters, the
/// byte-order mark, tags. They draw nothing yet change how text around them reads, so a name
/// holding one can pretend to be another (`\u{202E}gnp.exe`).
pub fn is_invisible(c: char) -> bool {
    matches!(u32::from(c),
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// The tag characters that spell subdivision flags after U+1F3F4 (🏴󠁧󠁢󠁳󠁣󠁴󠁿).
fn is_emoji_tag(c: char) -> bool {
    matches!(u32::from(c), 0xE0020..=0xE007F)
}

/// Characters an emoji ZWJ sequence joins (👩‍💻, 🏳️‍🌈): pictographs, and the variation selector
/// or skin tone that may end the part before the joiner.
fn is_pictographic(c: char) -> bool {
    matches!(u32::from(c),
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2300..=0x23FF | 0x2B00..=0x2BFF | 0x2190..=0x21FF
        | 0x2934..=0x2935 | 0x3030 | 0x303D | 0x3297 | 0x3299 | 0x00A9 | 0x00AE | 0x203C | 0x2049
        | 0x2122 | 0x2139 | 0xFE0F | 0x20E3)
}

/// A prompt as the generators should see it: C0 and C1 control characters (line breaks and
/// tabs included) and invisible format characters become spaces, runs of spaces one, and the
/// ends are trimmed.
pub fn clean_prompt(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut space = false;
    for c in raw.chars() {
        let c = if c.is_control() || (is_invisible(c) && c != ZWJ) {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if !space && !out.is_empty() {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out.trim_end().to_owned()
}

impl fmt::Display for AvatarName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the edge learned about an uploaded photo after decoding it for real.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoMeta {
    pub photo_id: String,
    /// Hex SHA-256 of the stored bytes; the same hash twice is a duplicate.
    pub content_hash: String,
    pub byte_size: u64,
    pub width: u32,
    pub height: u32,
    pub format: ImageFormat,
    /// Where the photo store keeps the bytes.
    pub storage_key: String,
}

/// One prompt's place in a batch the user sent as one message (one prompt per line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItem {
    pub batch_id: uuid::Uuid,
    /// From 0.
    pub index: u32,
    pub size: u32,
}

/// Prompts one batch may hold.
pub const MAX_BATCH_SIZE: u32 = 10;

/// Where a generation came from when the user did not simply type its prompt; recorded in the
/// event so auditors and analysts see which pack, sample set or upscale it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// One prompt of a curated pack the user chose.
    Pack { pack: String },
    /// A sample the bot made by itself when the training completed, from a starter pack.
    Starter { pack: String },
    /// Image `image` (from 0) of generation `of`, upscaled `factor` times.
    Upscale {
        of: uuid::Uuid,
        image: u8,
        factor: UpscaleFactor,
    },
}

impl Origin {
    /// `pack`, `starter` or `upscale`: how the read models and analytics name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Pack { .. } => "pack",
            Self::Starter { .. } => "starter",
            Self::Upscale { .. } => "upscale",
        }
    }

    /// The pack a prompt came from, if any.
    pub fn pack(&self) -> Option<&str> {
        match self {
            Self::Pack { pack } | Self::Starter { pack } => Some(pack),
            Self::Upscale { .. } => None,
        }
    }
}

/// Longest pack id; ids are what operators write in pack files and analysts group by.
pub const MAX_PACK_ID_CHARS: usize = 64;

/// A pack id: 1 to [`MAX_PACK_ID_CHARS`] of `a-z`, `0-9`, `-` and `_`.
pub fn valid_pack_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PACK_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// How many times larger an upscale makes an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum UpscaleFactor {
    X2,
    X4,
}

impl UpscaleFactor {
    pub const ALL: [Self; 2] = [Self::X2, Self::X4];

    pub fn times(self) -> u8 {
        match self {
            Self::X2 => 2,
            Self::X4 => 4,
        }
    }
}

impl From<UpscaleFactor> for u8 {
    fn from(f: UpscaleFactor) -> u8 {
        f.times()
    }
}

impl TryFrom<u8> for UpscaleFactor {
    type Error = String;

    fn try_from(n: u8) -> Result<Self, Self::Error> {
        match n {
            2 => Ok(Self::X2),
            4 => Ok(Self::X4),
            other => Err(format!("an upscale is ×2 or ×4, not ×{other}")),
        }
    }
}

/// One image returned by a generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedImage {
    pub url: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub content_type: Option<String>,
    /// FAL flagged it as NSFW (it may come back blacked out).
    #[serde(default)]
    pub nsfw: bool,
}

/// Who issued a command: recorded with every event and checked against the rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    /// A Telegram user, by Telegram user id.
    User(i64),
    /// A part of Aisha itself (training actor, webhook, poller …), by name.
    System(String),
    /// A human operator acting through the CLI or admin API, by name.
    Operator(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "telegram:{id}"),
            Self::System(name) => write!(f, "system:{name}"),
            Self::Operator(name) => write!(f, "operator:{name}"),
        }
    }
}

impl std::str::FromStr for Actor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("actor `{s}` is not `kind:id`"))?;
        match kind {
            "telegram" => rest
                .parse()
                .map(Self::User)
                .map_err(|_| format!("`{rest}` is not a Telegram user id")),
            "system" => Ok(Self::System(rest.to_owned())),
            "operator" => Ok(Self::Operator(rest.to_owned())),
            other => Err(format!("unknown actor kind `{other}`")),
        }
    }
}
