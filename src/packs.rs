//! Packs: curated prompt sets per avatar type and gender, shipped as data (`packs/default.json`)
//! and extended by the operator (`PACKS_DIR`: every `*.json` there, one pack or a list; a pack
//! with a shipped pack's id replaces it). Checked once at start, so a bad file stops the start
//! with its path and the reason instead of failing a user later.

use std::path::{Path, PathBuf};

use aggregates::presets::MAX_PROMPT_CHARS;
use aggregates::values::{valid_pack_id, MAX_BATCH_SIZE};
use aggregates::{AspectRatio, AvatarType, Gender, GenerationPreset};
use serde::Deserialize;

/// The packs that come with Aisha.
const BUILTIN: &str = include_str!("../packs/default.json");
const BUILTIN_NAME: &str = "packs/default.json";
/// Room kept in each prompt for the avatar's trigger and the person's word.
const PROMPT_ROOM: usize = 32;

/// A pack file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a pack or a list of packs: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: pack `{id}`: {problem}")]
    Invalid {
        path: PathBuf,
        id: String,
        problem: String,
    },
}

/// A sentence in both of the bot's languages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Localized {
    pub ru: String,
    pub en: String,
}

impl Localized {
    pub fn get(&self, english: bool) -> &str {
        if english {
            &self.en
        } else {
            &self.ru
        }
    }
}

/// One pack as its file writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    id: String,
    #[serde(default)]
    starter: bool,
    avatar_types: Vec<AvatarType>,
    #[serde(default)]
    genders: Vec<Gender>,
    title: Localized,
    description: Localized,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    aspect: Option<String>,
    prompts: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(Box<PackFile>),
    Many(Vec<PackFile>),
}

/// A checked pack.
#[derive(Debug, Clone, PartialEq)]
pub struct Pack {
    pub id: String,
    /// Made by the bot itself when a training completes, not offered in the list.
    pub starter: bool,
    pub avatar_types: Vec<AvatarType>,
    /// Empty: every gender.
    pub genders: Vec<Gender>,
    pub title: Localized,
    pub description: Localized,
    pub preset: Option<GenerationPreset>,
    pub aspect: Option<AspectRatio>,
    /// `{person}` stands for the avatar's gender in words (woman, man, person).
    prompts: Vec<String>,
}

impl Pack {
    pub fn fits(&self, avatar_type: AvatarType, gender: Gender) -> bool {
        self.avatar_types.contains(&avatar_type)
            && (self.genders.is_empty() || self.genders.contains(&gender))
    }

    /// The prompts as the generator should get them for an avatar of `gender`.
    pub fn prompts_for(&self, gender: Gender) -> Vec<String> {
        let person = match gender {
            Gender::Female => "woman",
            Gender::Male => "man",
            Gender::Other => "person",
        };
        self.prompts
            .iter()
            .map(|p| p.replace("{person}", person))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    /// A short stable tag of the id for button data (ids may be longer than a button allows).
    pub fn tag(&self) -> u32 {
        tag_of(&self.id)
    }
}

/// FNV-1a of the id: stable across restarts and instances, unlike a list position.
pub fn tag_of(id: &str) -> u32 {
    id.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// The samples made when a training completes: how many, from which packs.
#[derive(Debug, Clone)]
pub struct StarterPlan {
    pub packs: std::sync::Arc<Packs>,
    /// 0: none.
    pub images: u32,
}

impl StarterPlan {
    pub fn off() -> Self {
        Self {
            packs: std::sync::Arc::new(Packs::builtin()),
            images: 0,
        }
    }

    /// The pack and prompts for an avatar of this type and gender; `None` when off.
    pub fn for_avatar(
        &self,
        avatar_type: AvatarType,
        gender: Gender,
    ) -> Option<(&Pack, Vec<String>)> {
        let pack = self.packs.starter(avatar_type, gender)?;
        let mut prompts = pack.prompts_for(gender);
        prompts.truncate(self.images as usize);
        (!prompts.is_empty()).then_some((pack, prompts))
    }
}

/// Every pack the bot offers, in file order (shipped first).
#[derive(Debug, Clone, PartialEq)]
pub struct Packs {
    packs: Vec<Pack>,
}

impl Default for Packs {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Packs {
    /// The shipped packs only.
    pub fn builtin() -> Self {
        let mut packs = Self { packs: Vec::new() };
        // Checked by a test, so this cannot fail in a build that passed its tests.
        packs
            .add(Path::new(BUILTIN_NAME), BUILTIN)
            .expect("the shipped packs are valid");
        packs
    }

    /// The shipped packs plus every `*.json` in `dir` (in name order).
    pub fn load(dir: Option<&Path>) -> Result<Self, PackError> {
        let mut packs = Self::builtin();
        let Some(dir) = dir else {
            return Ok(packs);
        };
        let read = |source| PackError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| PackError::Read {
                path: path.clone(),
                source,
            })?;
            packs.add(&path, &text)?;
        }
        Ok(packs)
    }

    fn add(&mut self, path: &Path, text: &str) -> Result<(), PackError> {
        let files = match serde_json::from_str(text).map_err(|source| PackError::Parse {
            path: path.to_path_buf(),
            source,
        })? {
            OneOrMany::One(pack) => vec![*pack],
            OneOrMany::Many(packs) => packs,
        };
        let mut seen = std::collections::HashSet::new();
        for file in files {
            let pack = check(path, file)?;
            if !seen.insert(pack.id.clone()) {
                return Err(PackError::Invalid {
                    path: path.to_path_buf(),
                    id: pack.id,
                    problem: "appears twice in this file".into(),
                });
            }
            if let Some(other) = self
                .packs
                .iter()
                .find(|p| p.tag() == pack.tag() && p.id != pack.id)
            {
                return Err(PackError::Invalid {
                    path: path.to_path_buf(),
                    id: pack.id,
                    problem: format!("shares its button tag with `{}`: rename one", other.id),
                });
            }
            match self.packs.iter_mut().find(|p| p.id == pack.id) {
                Some(existing) => *existing = pack,
                None => self.packs.push(pack),
            }
        }
        Ok(())
    }

    /// The packs a user can choose for an avatar of this type and gender.
    pub fn for_avatar(&self, avatar_type: AvatarType, gender: Gender) -> Vec<&Pack> {
        self.packs
            .iter()
            .filter(|p| !p.starter && p.fits(avatar_type, gender))
            .collect()
    }

    /// The sample set made when such an avatar's training completes.
    pub fn starter(&self, avatar_type: AvatarType, gender: Gender) -> Option<&Pack> {
        self.packs
            .iter()
            .find(|p| p.starter && p.fits(avatar_type, gender))
    }

    /// A pack offered to users, by the tag in a button.
    pub fn by_tag(&self, tag: u32) -> Option<&Pack> {
        self.packs.iter().find(|p| !p.starter && p.tag() == tag)
    }

    pub fn all(&self) -> &[Pack] {
        &self.packs
    }
}

fn check(path: &Path, file: PackFile) -> Result<Pack, PackError> {
    let invalid = |problem: String| PackError::Invalid {
        path: path.to_path_buf(),
        id: file.id.clone(),
        problem,
    };
    if !valid_pack_id(&file.id) {
        return Err(invalid(
            "the id must be 1 to 64 of a-z, 0-9, - and _".into(),
        ));
    }
    if file.avatar_types.is_empty() {
        return Err(invalid("`avatar_types` names no avatar type".into()));
    }
    for text in [
        &file.title.ru,
        &file.title.en,
        &file.description.ru,
        &file.description.en,
    ] {
        if text.trim().is_empty() {
            return Err(invalid(
                "every title and description needs Russian and English".into(),
            ));
        }
    }
    let preset = match &file.preset {
        None => None,
        Some(name) => Some(GenerationPreset::parse(name).ok_or_else(|| {
            let known: Vec<&str> = GenerationPreset::ALL.iter().map(|p| p.as_str()).collect();
            invalid(format!(
                "unknown preset `{name}` (one of {})",
                known.join(", ")
            ))
        })?),
    };
    let aspect = match &file.aspect {
        None => None,
        Some(ratio) => Some(AspectRatio::parse(ratio).ok_or_else(|| {
            let known: Vec<&str> = AspectRatio::ALL.iter().map(|a| a.ratio()).collect();
            invalid(format!(
                "unknown aspect `{ratio}` (one of {})",
                known.join(", ")
            ))
        })?),
    };
    if file.prompts.is_empty() || file.prompts.len() > MAX_BATCH_SIZE as usize {
        return Err(invalid(format!(
            "a pack has 1 to {MAX_BATCH_SIZE} prompts, this one {}",
            file.prompts.len()
        )));
    }
    for (n, prompt) in file.prompts.iter().enumerate() {
        let cleaned = aggregates::values::clean_prompt(prompt);
        if cleaned.is_empty() {
            return Err(invalid(format!("prompt {} is empty", n + 1)));
        }
        if cleaned.chars().count() > MAX_PROMPT_CHARS - PROMPT_ROOM {
            return Err(invalid(format!(
                "prompt {} is longer than {} characters",
                n + 1,
                MAX_PROMPT_CHARS - PROMPT_ROOM
            )));
        }
    }
    Ok(Pack {
        id: file.id,
        starter: file.starter,
        avatar_types: file.avatar_types,
        genders: file.genders,
        title: file.title,
        description: file.description,
        preset,
        aspect,
        prompts: file.prompts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_packs_are_valid_and_cover_every_type_and_gender() {
        let packs = Packs::builtin();
        for avatar_type in [AvatarType::Portrait, AvatarType::Style] {
            for gender in [Gender::Female, Gender::Male, Gender::Other] {
                assert!(
                    packs.starter(avatar_type, gender).is_some(),
                    "{avatar_type:?} {gender:?}"
                );
                assert!(
                    packs.for_avatar(avatar_type, gender).len() >= 2,
                    "{avatar_type:?} {gender:?}"
                );
            }
        }
    }

    #[test]
    fn prompts_speak_of_the_avatars_gender() {
        let packs = Packs::builtin();
        let business = packs
            .all()
            .iter()
            .find(|p| p.id == "portrait-business")
            .unwrap();
        assert!(business.prompts_for(Gender::Female)[0].contains("of a woman in"));
        assert!(business.prompts_for(Gender::Male)[0].contains("of a man in"));
        assert!(business
            .prompts_for(Gender::Other)
            .iter()
            .all(|p| !p.contains('{')));
    }

    #[test]
    fn an_operators_pack_is_added_and_one_with_a_shipped_id_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.json"),
            r#"[{"id": "portrait-business", "avatar_types": ["portrait"],
                 "title": {"ru": "Офис", "en": "Office"}, "description": {"ru": "д", "en": "d"},
                 "prompts": ["a {person} at a desk"]},
                {"id": "pets", "avatar_types": ["portrait"], "genders": ["female"],
                 "title": {"ru": "С питомцем", "en": "With a pet"},
                 "description": {"ru": "д", "en": "d"}, "aspect": "1:1",
                 "prompts": ["a {person} with a cat", "a {person} with a dog"]}]"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a pack").unwrap();
        let packs = Packs::load(Some(dir.path())).unwrap();
        let business = packs.by_tag(tag_of("portrait-business")).unwrap();
        assert_eq!(business.title.en, "Office");
        assert_eq!(business.len(), 1);
        let pets = packs.by_tag(tag_of("pets")).unwrap();
        assert_eq!(pets.aspect, Some(AspectRatio::Square));
        assert!(packs
            .for_avatar(AvatarType::Portrait, Gender::Female)
            .contains(&pets));
        assert!(!packs
            .for_avatar(AvatarType::Portrait, Gender::Male)
            .contains(&pets));
        assert_eq!(
            packs.by_tag(tag_of("starter-portrait")),
            None,
            "not offered"
        );
    }

    #[test]
    fn a_bad_pack_file_names_its_path_pack_and_problem() {
        let cases = [
            (r#"{"id": "x"}"#, "not a pack"),
            (
                r#"{"id": "Bad Id", "avatar_types": ["portrait"], "title": {"ru": "a", "en": "b"},
                   "description": {"ru": "a", "en": "b"}, "prompts": ["p"]}"#,
                "the id must be",
            ),
            (
                r#"{"id": "x", "avatar_types": ["portrait"], "title": {"ru": "", "en": "b"},
                   "description": {"ru": "a", "en": "b"}, "prompts": ["p"]}"#,
                "Russian and English",
            ),
            (
                r#"{"id": "x", "avatar_types": ["portrait"], "title": {"ru": "a", "en": "b"},
                   "description": {"ru": "a", "en": "b"}, "preset": "turbo", "prompts": ["p"]}"#,
                "unknown preset `turbo`",
            ),
            (
                r#"{"id": "x", "avatar_types": ["portrait"], "title": {"ru": "a", "en": "b"},
                   "description": {"ru": "a", "en": "b"}, "aspect": "2:1", "prompts": ["p"]}"#,
                "unknown aspect `2:1`",
            ),
            (
                r#"{"id": "x", "avatar_types": ["portrait"], "title": {"ru": "a", "en": "b"},
                   "description": {"ru": "a", "en": "b"}, "prompts": []}"#,
                "1 to 10 prompts",
            ),
            (
                r#"{"id": "x", "avatar_types": ["portrait"], "title": {"ru": "a", "en": "b"},
                   "description": {"ru": "a", "en": "b"}, "prompts": ["  \n "]}"#,
                "prompt 1 is empty",
            ),
        ];
        for (text, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("bad.json");
            std::fs::write(&path, text).unwrap();
            let error = Packs::load(Some(dir.path())).unwrap_err().to_string();
            assert!(error.contains("bad.json"), "{error}");
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }
}
