//! The training archive: an avatar's photos packed into a ZIP for FAL's trainers.
//!
//! Photos are read one at a time from the [`PhotoStore`] into a temporary file, so memory stays
//! at about one photo however many there are; each photo's hash is checked on the way, so the
//! trainer gets exactly the bytes that were inspected when they were uploaded — and each is
//! stripped of metadata once more before it goes in, since photos stored before intake removed
//! it still carry it (for the others this changes nothing and copies nothing).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aggregates::PhotoMeta;
use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, TryStreamExt};
use sha2::{Digest, Sha256};
use tempfile::TempPath;
use tokio::sync::mpsc;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::check::{self, MAX_PHOTO_BYTES};
use super::metadata::{self, MetadataError};
use super::store::{file_chunks, PhotoStore, StorageError};

/// The MIME type to upload the archive with.
pub const ARCHIVE_CONTENT_TYPE: &str = "application/zip";
/// Chunks in flight between the store reader and the zip writer; bounds memory use.
const CHANNEL_DEPTH: usize = 8;
/// Size of the chunks a photo is handed to the writer in.
const PIECE: usize = 64 * 1024;
/// Archive files are named `aisha-training-<random>.zip`; nothing else we write looks like it.
const ARCHIVE_PREFIX: &str = "aisha-training-";
const ARCHIVE_SUFFIX: &str = ".zip";
/// An archive lives from packing until its upload to FAL has finished: at most four attempts
/// of five minutes each with backoff between them (the FAL client's defaults), about 21
/// minutes. One older than this in the folder of a live process id is the leftover of a dead
/// process whose id was reused (in a container the server is often process 1 on every start),
/// not work in progress.
pub const STALE_ARCHIVE_AGE: Duration = Duration::from_secs(30 * 60);

/// Why an archive could not be built or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("there are no photos to pack")]
    NoPhotos,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("photo `{key}` changed in storage: expected SHA-256 {expected}, found {actual}")]
    HashMismatch {
        key: String,
        expected: String,
        actual: String,
    },
    #[error("archive file I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("zip error: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("archive entry `{name}` is not a usable photo: {reason}")]
    BadEntry { name: String, reason: String },
    #[error("photo `{key}` is larger than any accepted photo")]
    PhotoTooLarge { key: String },
    #[error("photo `{key}` could not be stripped of its metadata: {source}")]
    Metadata {
        key: String,
        #[source]
        source: MetadataError,
    },
    #[error("the archive writer stopped before the archive was complete")]
    WriterGone,
}

/// A finished archive in a temporary file, deleted when this handle is dropped.
#[derive(Debug)]
pub struct TrainingArchive {
    path: TempPath,
    byte_size: u64,
    photo_count: usize,
}

/// What the async side hands the blocking zip writer.
enum Piece {
    Start(String),
    Chunk(Bytes),
    Finish,
}

/// Where this process writes its archives: a folder of its own under the system temporary
/// folder, named by process id, so a later start can tell which folders a dead process left.
pub fn archive_dir() -> PathBuf {
    archives_root().join(std::process::id().to_string())
}

/// The folder every process's archive folder lives in.
pub fn archives_root() -> PathBuf {
    std::env::temp_dir().join("aisha-archives")
}

/// Removes training archives that crashed processes left behind (they hold users' photos);
/// called once at start-up. Returns how many folders and files were removed.
pub fn remove_stale_archives() -> usize {
    remove_stale_archives_in(
        &archives_root(),
        &std::env::temp_dir(),
        SystemTime::now(),
        std::process::id(),
    )
}

/// [`remove_stale_archives`] with its places and clock given: under `root`, the folders of
/// processes that are gone, and archives older than [`STALE_ARCHIVE_AGE`] in the folders of
/// live ones (this process's included); in `legacy_dir`, loose archives older versions wrote
/// there, once older than the same age.
pub fn remove_stale_archives_in(
    root: &Path,
    legacy_dir: &Path,
    now: SystemTime,
    own_pid: u32,
) -> usize {
    let cutoff = now
        .checked_sub(STALE_ARCHIVE_AGE)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut removed = 0;
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok();
            let alive = match pid {
                Some(pid) if pid == own_pid => true,
                Some(pid) => process_alive(pid, &entry.path(), now),
                None => false,
            };
            if !alive {
                if std::fs::remove_dir_all(entry.path()).is_ok() {
                    removed += 1;
                }
            } else {
                removed += remove_old_archives(&entry.path(), cutoff);
            }
        }
    }
    removed + remove_old_archives(legacy_dir, cutoff)
}

/// Removes the archive files in `dir` last written before `cutoff`.
fn remove_old_archives(dir: &Path, cutoff: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < cutoff);
        if name.starts_with(ARCHIVE_PREFIX)
            && name.ends_with(ARCHIVE_SUFFIX)
            && old
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Whether process `pid` still runs; where `/proc` is missing, a folder untouched for a day
/// counts as left behind.
fn process_alive(pid: u32, dir: &Path, now: SystemTime) -> bool {
    let proc = Path::new("/proc");
    if proc.is_dir() {
        return proc.join(pid.to_string()).exists();
    }
    let day_ago = now - Duration::from_secs(24 * 3600);
    std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t > day_ago)
}

impl TrainingArchive {
    /// Packs `photos` (in the given order) into an archive in this process's archive folder.
    pub async fn build(store: &PhotoStore, photos: &[PhotoMeta]) -> Result<Self, ArchiveError> {
        let dir = archive_dir();
        tokio::fs::create_dir_all(&dir).await?;
        Self::build_in(store, photos, &dir).await
    }

    /// Packs `photos` into an archive in `dir`; entries are named `01.jpg`, `02.png`, …
    pub async fn build_in(
        store: &PhotoStore,
        photos: &[PhotoMeta],
        dir: &Path,
    ) -> Result<Self, ArchiveError> {
        if photos.is_empty() {
            return Err(ArchiveError::NoPhotos);
        }
        let (file, path) = tempfile::Builder::new()
            .prefix(ARCHIVE_PREFIX)
            .suffix(ARCHIVE_SUFFIX)
            .tempfile_in(dir)?
            .into_parts();
        // Zip writing is blocking file I/O: it runs on its own thread, fed through a bounded
        // channel, so at most CHANNEL_DEPTH chunks are in memory at once.
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let writer = tokio::task::spawn_blocking(move || write_zip(file, rx));
        let fed = feed(store, photos, &tx).await;
        if fed.is_ok() && tx.send(Piece::Finish).await.is_err() {
            tracing::warn!("archive writer quit before the end");
        }
        drop(tx);
        let written = writer.await.map_err(|_| ArchiveError::WriterGone)?;
        let byte_size = match (fed, written) {
            (Ok(()), Ok(size)) => size,
            // The writer's own failure (disk full …) explains why the feeder could not send.
            (Err(ArchiveError::WriterGone), Err(e)) | (Ok(()), Err(e)) => return Err(e),
            (Err(e), _) => return Err(e),
        };
        tracing::info!(photos = photos.len(), bytes = byte_size, path = %path.display(), "training archive built");
        Ok(Self {
            path,
            byte_size,
            photo_count: photos.len(),
        })
    }

    /// Where the archive is; valid while this handle lives (e.g. for `FalClient::upload`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The archive's size in bytes.
    pub fn byte_size(&self) -> u64 {
        self.byte_size
    }

    /// How many photos it holds.
    pub fn photo_count(&self) -> usize {
        self.photo_count
    }

    /// The whole archive in memory, for uploads that need a single buffer.
    pub async fn bytes(&self) -> Result<Bytes, ArchiveError> {
        Ok(Bytes::from(tokio::fs::read(&self.path).await?))
    }

    /// The archive as a stream of chunks (e.g. for `reqwest::Body::wrap_stream`).
    pub async fn stream(&self) -> Result<BoxStream<'static, std::io::Result<Bytes>>, ArchiveError> {
        let file = tokio::fs::File::open(&self.path).await?;
        Ok(file_chunks(file))
    }
}

/// Reads each photo from the store, checks its hash, strips its metadata and passes it to the
/// writer in pieces.
async fn feed(
    store: &PhotoStore,
    photos: &[PhotoMeta],
    tx: &mpsc::Sender<Piece>,
) -> Result<(), ArchiveError> {
    for (index, photo) in photos.iter().enumerate() {
        let name = format!("{:02}.{}", index + 1, photo.format.extension());
        let key = &photo.storage_key;
        let stored = read_photo(store, key).await?;
        let actual = hex::encode(Sha256::digest(&stored));
        if !actual.eq_ignore_ascii_case(&photo.content_hash) {
            return Err(ArchiveError::HashMismatch {
                key: key.clone(),
                expected: photo.content_hash.clone(),
                actual,
            });
        }
        let cleaned = match metadata::strip(&stored) {
            Ok(std::borrow::Cow::Borrowed(_)) => None,
            Ok(std::borrow::Cow::Owned(clean)) => {
                tracing::info!(key = %key, "metadata removed from a stored photo on its way to FAL");
                Some(clean)
            }
            Err(source) => {
                return Err(ArchiveError::Metadata {
                    key: key.clone(),
                    source,
                })
            }
        };
        let bytes = cleaned.map_or(stored, Bytes::from);
        tx.send(Piece::Start(name))
            .await
            .map_err(|_| ArchiveError::WriterGone)?;
        for at in (0..bytes.len()).step_by(PIECE) {
            let piece = bytes.slice(at..(at + PIECE).min(bytes.len()));
            tx.send(Piece::Chunk(piece))
                .await
                .map_err(|_| ArchiveError::WriterGone)?;
        }
    }
    Ok(())
}

/// One stored photo, whole (metadata can only be found and removed in the whole file); no
/// stored photo is larger than an accepted upload, so more than that is refused.
async fn read_photo(store: &PhotoStore, key: &str) -> Result<Bytes, ArchiveError> {
    let mut chunks = store.get_stream(key).await?;
    let mut whole = BytesMut::new();
    while let Some(chunk) = chunks.try_next().await? {
        if (whole.len() + chunk.len()) as u64 > MAX_PHOTO_BYTES {
            return Err(ArchiveError::PhotoTooLarge {
                key: key.to_owned(),
            });
        }
        whole.extend_from_slice(&chunk);
    }
    Ok(whole.freeze())
}

/// The blocking half: writes entries as pieces arrive and finishes the zip only when told to,
/// so an aborted feed never yields a plausible-looking archive.
fn write_zip(file: File, mut rx: mpsc::Receiver<Piece>) -> Result<u64, ArchiveError> {
    // Photos are already compressed; deflating them again only costs CPU.
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let mut zip = ZipWriter::new(BufWriter::new(file));
    while let Some(piece) = rx.blocking_recv() {
        match piece {
            Piece::Start(name) => zip.start_file(name, options)?,
            Piece::Chunk(bytes) => zip.write_all(&bytes)?,
            Piece::Finish => {
                let file = zip.finish()?.into_inner().map_err(|e| e.into_error())?;
                return Ok(file.metadata()?.len());
            }
        }
    }
    Err(ArchiveError::WriterGone)
}

/// Reopens an archive and checks that every entry is a photo that passes intake and carries no
/// metadata; returns how many entries it has. Blocking: call it from `spawn_blocking` in async code.
pub fn verify_archive(path: &Path) -> Result<usize, ArchiveError> {
    let mut archive = ZipArchive::new(File::open(path)?)?;
    if archive.is_empty() {
        return Err(ArchiveError::NoPhotos);
    }
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index)?;
        let name = entry.name().to_owned();
        let bad = |reason: String| ArchiveError::BadEntry {
            name: name.clone(),
            reason,
        };
        if entry.is_dir() {
            return Err(bad("a folder, not a photo".into()));
        }
        if entry.enclosed_name().is_none() {
            return Err(bad("the name points outside the archive".into()));
        }
        // The declared size may lie (zip bombs); reading stops one byte past the limit anyway.
        if entry.size() > MAX_PHOTO_BYTES {
            return Err(bad(format!("{} bytes uncompressed", entry.size())));
        }
        let mut bytes = Vec::new();
        entry
            .by_ref()
            .take(MAX_PHOTO_BYTES + 1)
            .read_to_end(&mut bytes)?;
        check::inspect(&bytes).map_err(|e| bad(e.to_string()))?;
        if !matches!(metadata::strip(&bytes), Ok(std::borrow::Cow::Borrowed(_))) {
            return Err(bad("it still carries metadata".into()));
        }
    }
    Ok(archive.len())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use aggregates::ImageFormat;
    use image::{DynamicImage, ImageBuffer, Rgb};

    use super::*;
    use crate::photos::store::photo_key;

    fn jpeg(seed: u8) -> Vec<u8> {
        let img = ImageBuffer::from_fn(512, 512, |x, y| {
            Rgb([seed, (x % 256) as u8, (y % 256) as u8])
        });
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img)
            .write_to(&mut out, image::ImageFormat::Jpeg)
            .expect("encode");
        out.into_inner()
    }

    async fn stored(store: &PhotoStore, avatar: uuid::Uuid, n: u8) -> PhotoMeta {
        let bytes = jpeg(n);
        let checked = check::inspect(&bytes).expect("valid test photo");
        let id = format!("p{n}");
        let key = photo_key(avatar, &id, ImageFormat::Jpeg);
        store.put(&key, Bytes::from(bytes)).await.expect("put");
        checked.photo_meta(id, key)
    }

    #[tokio::test]
    async fn packs_photos_in_order_and_deletes_the_file_on_drop() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = PhotoStore::local(dir.path().join("photos")).expect("store");
        let avatar = uuid::Uuid::new_v4();
        let photos = vec![
            stored(&store, avatar, 1).await,
            stored(&store, avatar, 2).await,
        ];
        let archive = TrainingArchive::build_in(&store, &photos, dir.path())
            .await
            .expect("archive");
        assert_eq!(verify_archive(archive.path()).expect("verifies"), 2);
        let bytes = archive.bytes().await.expect("read");
        assert_eq!(bytes.len() as u64, archive.byte_size());
        let streamed: Vec<Bytes> = archive
            .stream()
            .await
            .expect("stream")
            .try_collect()
            .await
            .expect("chunks");
        assert_eq!(streamed.concat(), bytes.to_vec());
        let mut zip = ZipArchive::new(Cursor::new(bytes)).expect("zip");
        assert_eq!(zip.by_index(0).expect("entry").name(), "01.jpg");
        assert_eq!(
            zip.by_index(1).expect("entry").compression(),
            CompressionMethod::Stored
        );

        let path = archive.path().to_path_buf();
        drop(archive);
        assert!(!path.exists(), "the temporary archive outlived its handle");
    }

    #[tokio::test]
    async fn a_photo_whose_bytes_changed_is_refused_and_leaves_no_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = PhotoStore::local(dir.path().join("photos")).expect("store");
        let avatar = uuid::Uuid::new_v4();
        let mut photos = vec![
            stored(&store, avatar, 1).await,
            stored(&store, avatar, 2).await,
        ];
        photos[1].content_hash = "0".repeat(64);
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("out dir");
        let err = TrainingArchive::build_in(&store, &photos, &out)
            .await
            .unwrap_err();
        assert!(matches!(err, ArchiveError::HashMismatch { .. }), "{err}");
        assert_eq!(
            std::fs::read_dir(&out).expect("list").count(),
            0,
            "a partial archive was left behind"
        );
    }

    fn archive_file(dir: &Path, name: &str, age: Duration, now: SystemTime) -> PathBuf {
        std::fs::create_dir_all(dir).expect("dir");
        let path = dir.join(name);
        let file = File::create(&path).expect("create");
        file.set_modified(now - age).expect("mtime");
        path
    }

    #[test]
    fn leftover_archives_are_removed_at_start_and_live_ones_kept() {
        let temp = tempfile::tempdir().expect("temp dir");
        let root = temp.path().join("aisha-archives");
        let now = SystemTime::now();
        let minute = Duration::from_secs(60);
        // A process id no process has: /proc has no such entry (Linux caps pids far lower).
        let dead = root.join("4000000000");
        let dead_file = archive_file(&dead, "aisha-training-a.zip", minute, now);
        // This process's id, as after a restart in a container (the same pid again).
        let own = root.join("77");
        let own_old = archive_file(&own, "aisha-training-old.zip", 31 * minute, now);
        let own_new = archive_file(&own, "aisha-training-new.zip", 2 * minute, now);
        let unrelated = archive_file(&own, "notes.txt", 90 * minute, now);
        // A process that runs (this one): its fresh archive is in use.
        let live = root.join(std::process::id().to_string());
        let live_new = archive_file(&live, "aisha-training-b.zip", minute, now);
        let not_a_pid = root.join("something");
        std::fs::create_dir_all(&not_a_pid).expect("dir");
        // Loose archives of older versions, in the temporary folder itself.
        let legacy_old = archive_file(temp.path(), "aisha-training-c.zip", 45 * minute, now);
        let legacy_new = archive_file(temp.path(), "aisha-training-d.zip", minute, now);

        let removed = remove_stale_archives_in(&root, temp.path(), now, 77);

        assert_eq!(
            removed, 4,
            "the dead folder, the odd folder and two old archives"
        );
        for gone in [&dead_file, &own_old, &legacy_old] {
            assert!(!gone.exists(), "{} was left", gone.display());
        }
        assert!(!dead.exists() && !not_a_pid.exists());
        for kept in [&own_new, &unrelated, &live_new, &legacy_new] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        // Nothing left to do the second time.
        assert_eq!(remove_stale_archives_in(&root, temp.path(), now, 77), 0);
    }

    #[tokio::test]
    async fn archives_are_named_so_that_a_later_start_finds_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = PhotoStore::local(dir.path().join("photos")).expect("store");
        let photos = vec![stored(&store, uuid::Uuid::new_v4(), 1).await];
        let root = dir.path().join("archives");
        let out = root.join("1");
        std::fs::create_dir_all(&out).expect("out");
        let archive = TrainingArchive::build_in(&store, &photos, &out)
            .await
            .expect("archive");
        // As if it had been left behind by a crash half an hour ago.
        let later = SystemTime::now() + STALE_ARCHIVE_AGE + Duration::from_secs(1);
        let path = archive.path().to_path_buf();
        std::mem::forget(archive);
        assert_eq!(
            remove_stale_archives_in(&root, &dir.path().join("none"), later, 1),
            1
        );
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_photo_stored_with_its_metadata_goes_to_fal_without_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("photos");
        let store = PhotoStore::local(&root).expect("store");
        let avatar = uuid::Uuid::new_v4();
        // As a photo stored before intake removed metadata: written past `put`, hash recorded
        // over the bytes as they were.
        let clean = jpeg(3);
        let mut legacy = clean[..2].to_vec();
        let exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\0GPS 55.7558N 37.6173E";
        legacy.extend_from_slice(&[0xFF, 0xE1, 0, (exif.len() + 2) as u8]);
        legacy.extend_from_slice(exif);
        legacy.extend_from_slice(&clean[2..]);
        let checked = check::inspect(&legacy).expect("valid");
        let key = photo_key(avatar, "old", ImageFormat::Jpeg);
        let path = root.join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).expect("dir");
        std::fs::write(&path, &legacy).expect("write");
        let mut meta = checked.photo_meta("old", key);
        meta.content_hash = hex::encode(Sha256::digest(&legacy));

        let archive = TrainingArchive::build_in(&store, &[meta], dir.path())
            .await
            .expect("archive");
        assert_eq!(verify_archive(archive.path()).expect("verifies"), 1);
        let mut zip = ZipArchive::new(File::open(archive.path()).unwrap()).unwrap();
        let mut entry = Vec::new();
        zip.by_index(0).unwrap().read_to_end(&mut entry).unwrap();
        assert_eq!(entry, clean, "the entry is the photo without its EXIF");
    }

    #[tokio::test]
    async fn nothing_to_pack_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = PhotoStore::local(dir.path()).expect("store");
        assert!(matches!(
            TrainingArchive::build(&store, &[]).await,
            Err(ArchiveError::NoPhotos)
        ));
    }
}
