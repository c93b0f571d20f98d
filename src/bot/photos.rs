//! Photo intake: a photo or image document from a chat becomes a stored, recorded training photo,
//! or a clear reason why not.
//!
//! Each file is downloaded (at most 20 MB, the Bot API's limit), decoded for real by
//! [`crate::photos::inspect_in_background`], checked against the avatar's photos, stored under
//! a key of its own and recorded with `UploadPhoto`. The photo id is Telegram's
//! `file_unique_id`, so an update delivered twice (after a restart) is recognised as the same
//! photo; each attempt stores under its own key, so the refused one of two racing deliveries
//! only ever deletes its own bytes. At most [`MAX_CONCURRENT_DOWNLOADS`] files are downloaded
//! or checked at once, and decodes keep to the global budget in [`crate::photos::check`].

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use aggregates::avatar::MAX_PHOTOS;
use aggregates::{Action, Actor, AvatarError, AvatarStatus, Command};
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use futures::StreamExt;
use teloxide::net::Download;
use teloxide::prelude::*;
use teloxide::types::FileId;
use teloxide::RequestError;
use uuid::Uuid;

use super::send::retrying;
use super::texts::Texts;
use crate::photos::check::MAX_PHOTO_BYTES;
use crate::photos::{inspect_in_background, photo_key, PhotoError, PhotoStore};
use crate::store::{AvatarStore, StoreError};

/// How long an album stays quiet before its summary is sent: its photos arrive as separate
/// updates right after one another.
pub const ALBUM_QUIET: Duration = Duration::from_millis(1500);
/// Attempts to download one file.
const DOWNLOAD_ATTEMPTS: u32 = 3;
/// Photos downloaded or being checked at once, across all users. A permit is held from the
/// download until the check is done, so at most this many files (≤ 20 MB each) are in memory;
/// the decodes themselves have their own, tighter limits (see `crate::photos::check`).
pub const MAX_CONCURRENT_DOWNLOADS: usize = 3;
static DOWNLOADS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CONCURRENT_DOWNLOADS);

/// A photo or document as it arrived, before it is downloaded.
#[derive(Debug, Clone)]
pub struct IncomingFile {
    pub file_id: FileId,
    pub unique_id: String,
    /// The size Telegram reported, when it reported one.
    pub size: Option<u64>,
}

impl IncomingFile {
    /// The largest size of a photo, or a document (which may or may not be an image: the bytes
    /// decide, not the name or MIME type the client sent).
    pub fn from_message(message: &Message) -> Option<Self> {
        let file = if let Some(sizes) = message.photo() {
            &sizes
                .iter()
                .max_by_key(|s| u64::from(s.width) * u64::from(s.height))?
                .file
        } else {
            &message.document()?.file
        };
        Some(Self {
            file_id: file.id.clone(),
            unique_id: file.unique_id.0.clone(),
            // teloxide reports u32::MAX when Telegram left the size out.
            size: (file.size != u32::MAX).then_some(u64::from(file.size)),
        })
    }
}

/// Why a photo was not added.
#[derive(Debug)]
pub enum Refusal {
    /// The file itself: not an image, too small, damaged, a bomb …
    Photo(PhotoError),
    /// The avatar refused it: a duplicate, too many photos, training already started …
    Avatar(AvatarError),
    /// Telegram would not give us the file.
    Download(RequestError),
    /// Our own storage or database failed.
    Internal(String),
}

impl Refusal {
    /// The reason as the user reads it.
    pub fn sentence(&self, t: &dyn Texts) -> String {
        match self {
            Self::Photo(e) => t.photo_error(e),
            Self::Avatar(e) => t.refusal(e),
            Self::Download(_) => t.photo_download_failed(),
            Self::Internal(_) => t.something_went_wrong(),
        }
    }
}

/// What intake needs.
pub struct Intake<'a> {
    pub downloader: &'a Bot,
    pub store: &'a AvatarStore,
    pub photos: &'a PhotoStore,
}

/// The result of one photo: accepted or not, and how many photos the avatar has now.
#[derive(Debug)]
pub struct IntakeResult {
    pub outcome: Result<(), Refusal>,
    pub count: usize,
    /// The photo as recorded, when it was accepted.
    pub recorded: Option<aggregates::PhotoMeta>,
    /// Advice from the decoded pixels (blur, exposure, contrast), when it was accepted.
    pub hints: Vec<crate::photos::hints::PhotoHint>,
}

impl Intake<'_> {
    /// Downloads, checks, stores and records one photo for `avatar_id`, on behalf of `user_id`.
    pub async fn take(&self, user_id: i64, avatar_id: Uuid, file: &IncomingFile) -> IntakeResult {
        let avatar = match self.store.load(avatar_id).await {
            Ok(avatar) => avatar,
            Err(e) => return refused(Refusal::Internal(crate::telemetry::chain(&e)), 0),
        };
        let count = avatar.photos.len();
        // Cheap checks first, so a file that cannot be added is never downloaded or stored; the
        // command below still decides.
        let precheck = match avatar.status {
            AvatarStatus::New => Some(AvatarError::NotFound),
            AvatarStatus::Deleted => Some(AvatarError::Deleted),
            _ if avatar.owner != user_id => Some(AvatarError::NotOwner),
            AvatarStatus::Training | AvatarStatus::Trained => Some(AvatarError::PhotosLocked),
            _ if count >= MAX_PHOTOS => Some(AvatarError::TooManyPhotos { max: MAX_PHOTOS }),
            _ => None,
        };
        if let Some(refusal) = precheck {
            return refused(Refusal::Avatar(refusal), count);
        }
        let photo_id = photo_id(&file.unique_id);
        if let Some(existing) = avatar.photos.iter().find(|p| p.photo_id == photo_id) {
            if crate::bot::inbox::is_retry() {
                // The interrupted first handling of this very message recorded it.
                return IntakeResult {
                    outcome: Ok(()),
                    count,
                    recorded: None,
                    hints: Vec::new(),
                };
            }
            let existing = existing.photo_id.clone();
            return refused(
                Refusal::Avatar(AvatarError::DuplicatePhoto { existing }),
                count,
            );
        }
        if let Some(size) = file.size.filter(|s| *s > MAX_PHOTO_BYTES) {
            let error = PhotoError::TooLarge {
                bytes: size,
                max: MAX_PHOTO_BYTES,
            };
            return refused(Refusal::Photo(error), count);
        }

        let in_flight = DOWNLOADS
            .acquire()
            .await
            .expect("the download semaphore is never closed");
        let bytes = match self.download(&file.file_id).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(too_large)) => return refused(Refusal::Photo(too_large), count),
            Err(e) => {
                tracing::warn!(%avatar_id, error = %crate::telemetry::chain(&e), "could not download a photo from Telegram");
                return refused(Refusal::Download(e), count);
            }
        };
        let checked = match inspect_in_background(bytes.clone()).await {
            Ok(checked) => checked,
            Err(e) => {
                tracing::info!(%avatar_id, reason = %e, "photo refused by the intake checks");
                return refused(Refusal::Photo(e), count);
            }
        };
        if let Some(existing) = avatar
            .photos
            .iter()
            .find(|p| p.content_hash == checked.content_hash)
        {
            let existing = existing.photo_id.clone();
            return refused(
                Refusal::Avatar(AvatarError::DuplicatePhoto { existing }),
                count,
            );
        }

        // A key of this attempt's own: two deliveries of one photo (same `file_unique_id`) that
        // race past the checks above never share a key, so the one the avatar refuses cannot
        // delete the bytes the other one recorded.
        let key = attempt_key(avatar_id, &photo_id, checked.format);
        if let Err(e) = self.photos.put(&key, bytes).await {
            tracing::error!(%avatar_id, error = %crate::telemetry::chain(&e), "could not store a photo");
            return refused(Refusal::Internal(crate::telemetry::chain(&e)), count);
        }
        // The bytes are stored (and dropped): the next photo may come in.
        drop(in_flight);
        let photo = checked.photo_meta(&photo_id, &key);
        let hints = checked.hints.clone();
        let command = Command::new(
            Actor::User(user_id),
            Utc::now(),
            Action::UploadPhoto {
                photo: photo.clone(),
            },
        );
        match self.store.execute(avatar_id, command, Uuid::new_v4()).await {
            Ok(executed) => IntakeResult {
                outcome: Ok(()),
                count: executed.state.photos.len(),
                recorded: Some(photo),
                hints,
            },
            Err(e) => {
                self.remove_unrecorded(avatar_id, &key).await;
                match e {
                    StoreError::Rejected(refusal) => refused(Refusal::Avatar(refusal), count),
                    other => {
                        tracing::error!(%avatar_id, error = %crate::telemetry::chain(&other), "could not record a photo");
                        refused(Refusal::Internal(crate::telemetry::chain(&other)), count)
                    }
                }
            }
        }
    }

    /// Deletes what this attempt stored under `key`, unless a recorded photo uses it: a store
    /// error may come after the event was written, and an accepted photo's bytes are never
    /// deleted. When the avatar cannot be read back the file stays (an orphan under the
    /// avatar's prefix, removed with the avatar) rather than risk it.
    async fn remove_unrecorded(&self, avatar_id: Uuid, key: &str) {
        match self.store.load(avatar_id).await {
            Ok(avatar) if avatar.photos.iter().any(|p| p.storage_key == key) => {
                tracing::warn!(%avatar_id, key, "a refused photo's key is recorded; keeping it");
            }
            Ok(_) => {
                if let Err(cleanup) = self.photos.delete(key).await {
                    tracing::warn!(%avatar_id, key, error = %crate::telemetry::chain(&cleanup), "could not remove a refused photo");
                }
            }
            Err(e) => {
                tracing::warn!(%avatar_id, key, error = %crate::telemetry::chain(&e), "could not check a refused photo; keeping its file");
            }
        }
    }

    /// The file's bytes, or `Ok(Err(TooLarge))` once more than 20 MB have arrived.
    async fn download(&self, file_id: &FileId) -> Result<Result<Bytes, PhotoError>, RequestError> {
        let file = retrying("getFile", || {
            self.downloader.get_file(file_id.clone()).send()
        })
        .await?;
        if u64::from(file.size) > MAX_PHOTO_BYTES && file.size != u32::MAX {
            return Ok(Err(PhotoError::TooLarge {
                bytes: u64::from(file.size),
                max: MAX_PHOTO_BYTES,
            }));
        }
        let mut attempt = 1;
        loop {
            match self.download_once(&file.path).await {
                Ok(result) => return Ok(result),
                Err(e) if attempt < DOWNLOAD_ATTEMPTS => {
                    tracing::warn!(attempt, error = %crate::telemetry::chain(&e), "photo download failed; retrying");
                    crate::telemetry::telegram_retry("downloadFile");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn download_once(&self, path: &str) -> Result<Result<Bytes, PhotoError>, RequestError> {
        let mut stream = self.downloader.download_file_stream(path);
        let mut buffer = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(RequestError::from)?;
            buffer.extend_from_slice(&chunk);
            // Stop reading a lying or oversized file instead of filling memory with it.
            if buffer.len() as u64 > MAX_PHOTO_BYTES {
                return Ok(Err(PhotoError::TooLarge {
                    bytes: buffer.len() as u64,
                    max: MAX_PHOTO_BYTES,
                }));
            }
        }
        Ok(Ok(buffer.freeze()))
    }
}

fn refused(refusal: Refusal, count: usize) -> IntakeResult {
    IntakeResult {
        outcome: Err(refusal),
        count,
        recorded: None,
        hints: Vec::new(),
    }
}

/// Where one intake attempt stores its bytes: the photo's key with a random suffix, e.g.
/// `avatars/<avatar>/tg-AQADx-1f2e3d4c5b6a7980.jpg`, unique to this attempt.
fn attempt_key(avatar_id: Uuid, photo_id: &str, format: aggregates::ImageFormat) -> String {
    let nonce = Uuid::new_v4().simple().to_string();
    photo_key(avatar_id, &format!("{photo_id}-{}", &nonce[..16]), format)
}

/// A storage-safe photo id from Telegram's `file_unique_id` (letters, digits, `-`, `_`).
fn photo_id(unique_id: &str) -> String {
    let clean: String = unique_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(64)
        .collect();
    if clean.is_empty() {
        format!("tg-{}", Uuid::new_v4().simple())
    } else {
        format!("tg-{clean}")
    }
}

/// Albums in progress: the outcome of each photo, so that one summary answers the whole album.
#[derive(Default)]
pub struct Albums {
    inner: Mutex<HashMap<String, AlbumProgress>>,
    /// Albums recently answered with a single notice instead of intake (bounded).
    noticed: Mutex<VecDeque<String>>,
}

/// How many noticed albums are remembered.
const NOTICED_ALBUMS: usize = 256;

/// What an album has brought so far.
#[derive(Debug, Clone, Default)]
pub struct AlbumProgress {
    pub avatar_id: Uuid,
    pub accepted: usize,
    /// The reason for each refused photo, as the user reads it.
    pub refused: Vec<String>,
    /// The avatar's photo count after the latest photo.
    pub count: usize,
    /// Advice on the accepted photos, one entry per photo and hint.
    pub hints: Vec<crate::photos::hints::PhotoHint>,
    /// Bumped with every photo; a summary is due once it stops moving.
    seq: u64,
    /// The chat the album is sent in.
    chat: i64,
}

impl Albums {
    /// Notes that a photo of album `group` is being processed, so a summary waiting for the
    /// album to go quiet holds off even while a slow photo is still being checked.
    pub fn begin(&self, group: &str, chat: i64) {
        let mut albums = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let album = albums.entry(group.to_owned()).or_default();
        album.seq += 1;
        album.chat = chat;
    }

    /// Whether an album of `chat` waits for its summary here: the chat's next photos must then
    /// come to this instance, so one summary answers the whole album.
    pub fn open_in(&self, chat: i64) -> bool {
        let albums = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        albums.values().any(|a| a.chat == chat)
    }

    /// Records one photo of album `group`; returns the mark to pass to [`Albums::finish_if_quiet`].
    pub fn record(
        &self,
        group: &str,
        avatar_id: Uuid,
        refusal: Option<String>,
        count: usize,
        hints: &[crate::photos::hints::PhotoHint],
    ) -> u64 {
        let mut albums = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let album = albums.entry(group.to_owned()).or_default();
        album.avatar_id = avatar_id;
        album.hints.extend_from_slice(hints);
        match refusal {
            None => album.accepted += 1,
            Some(reason) => album.refused.push(reason),
        }
        album.count = count;
        album.seq += 1;
        album.seq
    }

    /// Whether this is the first photo of album `group` to be answered with a notice (such as
    /// "I'm waiting for a name"), so an album gets one notice rather than one per photo.
    pub fn first_notice(&self, group: &str) -> bool {
        let mut noticed = self.noticed.lock().unwrap_or_else(|p| p.into_inner());
        if noticed.iter().any(|g| g == group) {
            return false;
        }
        if noticed.len() >= NOTICED_ALBUMS {
            noticed.pop_front();
        }
        noticed.push_back(group.to_owned());
        true
    }

    /// The album's summary if no photo arrived since `mark`; it is then forgotten.
    pub fn finish_if_quiet(&self, group: &str, mark: u64) -> Option<AlbumProgress> {
        let mut albums = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if albums.get(group).is_some_and(|a| a.seq == mark) {
            albums.remove(group)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_ids_are_safe_storage_key_segments() {
        assert_eq!(photo_id("AQADx-_9"), "tg-AQADx-_9");
        assert_eq!(photo_id("../../etc"), "tg-etc");
        assert!(photo_id("///").starts_with("tg-"));
    }

    #[test]
    fn two_attempts_at_one_photo_never_share_a_key() {
        let avatar = Uuid::new_v4();
        let a = attempt_key(avatar, "tg-AQADx", aggregates::ImageFormat::Png);
        let b = attempt_key(avatar, "tg-AQADx", aggregates::ImageFormat::Png);
        assert_ne!(a, b);
        let prefix = format!("avatars/{avatar}/tg-AQADx-");
        assert!(a.starts_with(&prefix) && a.ends_with(".png"), "{a}");
    }

    #[test]
    fn an_album_is_summarised_once_after_its_last_photo() {
        let albums = Albums::default();
        let id = Uuid::new_v4();
        let first = albums.record("g", id, None, 1, &[]);
        albums.begin("g", 1);
        assert!(albums.open_in(1));
        assert!(
            albums.finish_if_quiet("g", first).is_none(),
            "a photo is in progress"
        );
        let second = albums.record("g", id, Some("too small".into()), 1, &[]);
        assert!(albums.finish_if_quiet("g", first).is_none());
        let summary = albums.finish_if_quiet("g", second).expect("summary");
        assert_eq!(
            (summary.accepted, summary.refused.len(), summary.count),
            (1, 1, 1)
        );
        assert!(albums.finish_if_quiet("g", second).is_none());
    }
}
