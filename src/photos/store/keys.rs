//! The store's keys: how photos, copies and archives are named, and the check every key passes
//! before it becomes a file path or an object name.

use std::path::{Path, PathBuf};

use aggregates::ImageFormat;
use object_store::path::Path as ObjectPath;
use uuid::Uuid;

use super::error::StorageError;

/// Keys longer than this are refused; ours are well under 100 characters.
const MAX_KEY_LEN: usize = 512;

/// The key of one training photo: `avatars/<avatar_id>/<photo_id>.<ext>`.
pub fn photo_key(avatar_id: Uuid, photo_id: &str, format: ImageFormat) -> String {
    format!(
        "{}/{photo_id}.{}",
        avatar_prefix(avatar_id),
        format.extension()
    )
}

/// The prefix under which all of an avatar's photos live; removed with the avatar.
pub fn avatar_prefix(avatar_id: Uuid) -> String {
    format!("avatars/{avatar_id}")
}

/// The key of our copy of a file FAL made for an avatar (its LoRA weights and config, a
/// generated image): `avatars/<avatar_id>/copies/<hash>/<name>`, where `<hash>` is 32 hex
/// digits of the SHA-256 of the URL FAL served it at and `<name>` that URL's file name. So the
/// URL recorded in the avatar's events leads to our copy with nothing else stored, and the
/// avatar's prefix delete removes it with the photos.
pub fn copy_key(avatar_id: Uuid, fal_url: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = hex::encode(&Sha256::digest(fal_url.as_bytes())[..16]);
    let path = fal_url.split(['?', '#']).next().unwrap_or_default();
    let name = key_segment(path.rsplit('/').next().unwrap_or_default(), "file");
    format!("{}/copies/{hash}/{name}", avatar_prefix(avatar_id))
}

/// The key of a training archive we serve to FAL ourselves, `avatars/<avatar_id>/archives/<name>.zip`
/// (`name` made fit for a key); it goes when its training is over, or with the avatar.
pub fn archive_key(avatar_id: Uuid, name: &str) -> String {
    format!(
        "{}/{}.zip",
        archives_prefix(avatar_id),
        key_segment(name, "archive")
    )
}

/// The folder of an avatar's training archives (one at a time is ever in use).
pub fn archives_prefix(avatar_id: Uuid) -> String {
    format!("{}/archives", avatar_prefix(avatar_id))
}

/// `name` with every character a key may not hold replaced by `_`, at most 100 characters,
/// never starting with `.`; `fallback` when nothing is left.
fn key_segment(name: &str, fallback: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() {
        fallback.to_owned()
    } else {
        cleaned.to_owned()
    }
}

/// Checks a key (or prefix) before it becomes a file path or an object name. Keys are made by
/// us, so a strict alphabet costs nothing and rules out traversal, absolute paths and encoding
/// surprises on every backend.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let refuse = |reason| {
        Err(StorageError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return refuse("the key is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return refuse("the key is too long");
    }
    if key.starts_with('/') {
        return refuse("absolute paths are not keys");
    }
    if key.split('/').any(|segment| segment == "..") {
        return refuse("`..` is not allowed in a key");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
    {
        return refuse("only letters, digits, `-`, `_`, `.` and `/` are allowed");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return refuse("empty path segment");
        }
        // Covers `.` too; dot-names are where the folder backend keeps its temporary files.
        if segment.starts_with('.') {
            return refuse("a path segment may not start with `.`");
        }
    }
    Ok(())
}

/// A validated key as a path under `root`, one segment at a time.
pub(super) fn local_path(root: &Path, key: &str) -> PathBuf {
    let mut path = root.to_path_buf();
    path.extend(key.split('/'));
    path
}

pub(super) fn object_path(prefix: &str, key: &str) -> Result<ObjectPath, StorageError> {
    let full = if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}/{key}")
    };
    ObjectPath::parse(&full).map_err(|e| StorageError::Remote {
        key: key.to_owned(),
        message: e.to_string(),
    })
}
