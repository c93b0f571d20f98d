//! The training archive: an avatar's photos packed into a ZIP for FAL's trainers.
//!
//! Photos are streamed one at a time from the [`PhotoStore`] into a temporary file, so memory
//! stays flat however many photos there are; each photo's hash is checked on the way, so the
//! trainer gets exactly the bytes that were inspected when they were uploaded.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use aggregates::PhotoMeta;
use bytes::Bytes;
use futures::stream::{BoxStream, TryStreamExt};
use sha2::{Digest, Sha256};
use tempfile::TempPath;
use tokio::sync::mpsc;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use super::check::{self, MAX_PHOTO_BYTES};
use super::store::{file_chunks, PhotoStore, StorageError};

/// The MIME type to upload the archive with.
pub const ARCHIVE_CONTENT_TYPE: &str = "application/zip";
/// Chunks in flight between the store reader and the zip writer; bounds memory use.
const CHANNEL_DEPTH: usize = 8;

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
pub fn archive_dir() -> std::path::PathBuf {
    archives_root().join(std::process::id().to_string())
}

fn archives_root() -> std::path::PathBuf {
    std::env::temp_dir().join("aisha-archives")
}

/// Removes training archives that crashed processes left behind (they hold users' photos):
/// folders of processes that are gone, and loose archives of older versions that are more
/// than an hour old. Returns how many were removed.
pub fn remove_stale_archives() -> usize {
    let mut removed = 0;
    if let Ok(entries) = std::fs::read_dir(archives_root()) {
        for entry in entries.flatten() {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok();
            let alive = match pid {
                Some(pid) if pid == std::process::id() => true,
                Some(pid) => process_alive(pid, &entry.path()),
                None => false,
            };
            if !alive && std::fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < hour_ago);
            if name.starts_with("aisha-training-")
                && name.ends_with(".zip")
                && old
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

/// Whether process `pid` still runs; where `/proc` is missing, a folder untouched for a day
/// counts as left behind.
fn process_alive(pid: u32, dir: &Path) -> bool {
    let proc = Path::new("/proc");
    if proc.is_dir() {
        return proc.join(pid.to_string()).exists();
    }
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(24 * 3600);
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
            .prefix("aisha-training-")
            .suffix(".zip")
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

/// Reads each photo from the store, checks its hash and passes it to the writer chunk by chunk.
async fn feed(
    store: &PhotoStore,
    photos: &[PhotoMeta],
    tx: &mpsc::Sender<Piece>,
) -> Result<(), ArchiveError> {
    for (index, photo) in photos.iter().enumerate() {
        let name = format!("{:02}.{}", index + 1, photo.format.extension());
        let mut chunks = store.get_stream(&photo.storage_key).await?;
        tx.send(Piece::Start(name))
            .await
            .map_err(|_| ArchiveError::WriterGone)?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = chunks.try_next().await? {
            hasher.update(&chunk);
            tx.send(Piece::Chunk(chunk))
                .await
                .map_err(|_| ArchiveError::WriterGone)?;
        }
        let actual = hex::encode(hasher.finalize());
        if !actual.eq_ignore_ascii_case(&photo.content_hash) {
            return Err(ArchiveError::HashMismatch {
                key: photo.storage_key.clone(),
                expected: photo.content_hash.clone(),
                actual,
            });
        }
    }
    Ok(())
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

/// Reopens an archive and checks that every entry is a photo that passes intake; returns how
/// many entries it has. Blocking: call it from `spawn_blocking` in async code.
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
