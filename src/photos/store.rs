//! The photo store: photo bytes under stable keys, in a local folder or an S3-compatible bucket.
//!
//! `STORAGE_URL` chooses the backend: `file://DIR` is our own folder backend (atomic, fsynced
//! writes), `s3://BUCKET/PREFIX` goes through `object_store` with credentials, region and
//! endpoint from the usual `AWS_*` variables, so MinIO and other S3-compatible servers work too.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aggregates::ImageFormat;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use uuid::Uuid;

/// A stored object read piece by piece, so large objects never sit in memory whole.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// Keys longer than this are refused; ours are well under 100 characters.
const MAX_KEY_LEN: usize = 512;
/// Read size for streamed reads of local files.
const CHUNK: usize = 64 * 1024;

/// Why the photo store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The scheme alone is echoed: the rest of a URL might hold a secret.
    #[error("unsupported STORAGE_URL scheme `{0}`: use file://DIR or s3://BUCKET/PREFIX")]
    UnsupportedUrl(String),
    #[error("invalid STORAGE_URL: {0}")]
    InvalidUrl(String),
    #[error("invalid storage key `{key}`: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("nothing is stored under `{0}`")]
    NotFound(String),
    #[error("storage I/O on `{key}` failed: {source}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object store error on `{key}`: {message}")]
    Remote { key: String, message: String },
    #[error("could not set up the object store: {0}")]
    Config(String),
    /// A photo whose metadata could not be removed is not stored at all.
    #[error("photo `{key}` was not stored: {source}")]
    Metadata {
        key: String,
        #[source]
        source: super::metadata::MetadataError,
    },
}

/// Where `STORAGE_URL` points, parsed but not yet opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageLocation {
    /// A local folder (relative paths are relative to the working directory).
    Local(PathBuf),
    /// An S3-compatible bucket, with an optional key prefix (no leading or trailing `/`).
    S3 { bucket: String, prefix: String },
}

impl StorageLocation {
    /// Parses `file://DIR` or `s3://BUCKET/PREFIX`.
    pub fn parse(url: &str) -> Result<Self, StorageError> {
        let url = url.trim();
        if let Some(dir) = url.strip_prefix("file://") {
            if dir.is_empty() {
                return Err(StorageError::InvalidUrl(
                    "file:// needs a folder, e.g. file://./data/photos".into(),
                ));
            }
            return Ok(Self::Local(PathBuf::from(dir)));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.contains('@') || bucket.contains(':') {
                return Err(StorageError::InvalidUrl(
                    "credentials do not belong in STORAGE_URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
                ));
            }
            if !valid_bucket_name(bucket) {
                return Err(StorageError::InvalidUrl(format!(
                    "`{bucket}` is not a bucket name (3–63 lowercase letters, digits, `.` and `-`)"
                )));
            }
            let prefix = prefix.trim_matches('/');
            if !prefix.is_empty() {
                validate_key(prefix)?;
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        let scheme = url.split_once("://").map_or("(none)", |(scheme, _)| scheme);
        Err(StorageError::UnsupportedUrl(scheme.to_owned()))
    }
}

impl fmt::Display for StorageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(dir) => write!(f, "file://{}", dir.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Photo bytes by key. Cheap to clone; clones share the backend.
#[derive(Clone)]
pub struct PhotoStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Local {
        root: PathBuf,
    },
    Object {
        store: Arc<dyn ObjectStore>,
        prefix: String,
        label: String,
    },
}

// Written by hand: the S3 client's own Debug output includes its credentials.
impl fmt::Debug for PhotoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhotoStore({self})")
    }
}

impl fmt::Display for PhotoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            Backend::Local { root } => write!(f, "file://{}", root.display()),
            Backend::Object { label, .. } => f.write_str(label),
        }
    }
}

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

impl PhotoStore {
    /// Opens the store `STORAGE_URL` names; S3 settings come from the `AWS_*` environment.
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        Self::open(url, None)
    }

    /// Opens the store `url` names; an S3 bucket is reached with `s3` when given, else with
    /// the `AWS_*` environment.
    pub fn open(url: &str, s3: Option<&super::S3Connection>) -> Result<Self, StorageError> {
        match StorageLocation::parse(url)? {
            StorageLocation::Local(dir) => Self::local(dir),
            StorageLocation::S3 { bucket, prefix } => {
                let builder = s3.map_or_else(AmazonS3Builder::from_env, |s3| s3.builder());
                Self::s3(builder, &bucket, &prefix)
            }
        }
    }

    /// A store in a local folder, created if missing.
    pub fn local(dir: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = dir.into();
        std::fs::create_dir_all(&root).map_err(|source| StorageError::Io {
            key: root.display().to_string(),
            source,
        })?;
        tracing::info!(root = %root.display(), "photo store: local folder");
        Ok(Self {
            backend: Backend::Local { root },
        })
    }

    /// A store in an S3-compatible bucket; `builder` carries credentials, region and endpoint.
    pub fn s3(builder: AmazonS3Builder, bucket: &str, prefix: &str) -> Result<Self, StorageError> {
        if !valid_bucket_name(bucket) {
            return Err(StorageError::InvalidUrl(format!(
                "`{bucket}` is not a bucket name (3–63 lowercase letters, digits, `.` and `-`)"
            )));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            validate_key(prefix)?;
        }
        let location = StorageLocation::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        };
        // Only the builder's error message is kept; the builder itself is never printed.
        let s3 = builder
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| StorageError::Config(e.to_string()))?;
        tracing::info!(location = %location, "photo store: S3-compatible bucket");
        Ok(Self::with_object_store(
            Arc::new(s3),
            prefix,
            location.to_string(),
        ))
    }

    /// A store over any `object_store` backend, keys placed under `prefix`; `label` names it in logs.
    pub fn with_object_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        label: impl Into<String>,
    ) -> Self {
        Self {
            backend: Backend::Object {
                store,
                prefix: prefix.trim_matches('/').to_owned(),
                label: label.into(),
            },
        }
    }

    /// Stores `bytes` under `key`, replacing what was there. Readers see the old or the new
    /// object, never a part of one.
    ///
    /// A JPEG, PNG or WebP (by its magic bytes) is stored without its metadata (EXIF with GPS,
    /// XMP, IPTC, comments, text chunks; see [`super::metadata`]): whichever caller stores a
    /// photo, users' locations and camera details stop here. [`super::inspect`] hashes the
    /// same stripped bytes, so the recorded hash matches what is stored. Anything else is
    /// stored as given.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        validate_key(key)?;
        let cleaned = match super::metadata::strip(&bytes) {
            Ok(std::borrow::Cow::Borrowed(_)) | Err(super::metadata::MetadataError::NotAPhoto) => {
                None
            }
            Ok(std::borrow::Cow::Owned(clean)) => Some(clean),
            Err(source) => {
                return Err(StorageError::Metadata {
                    key: key.to_owned(),
                    source,
                })
            }
        };
        let bytes = cleaned.map_or(bytes, Bytes::from);
        let size = bytes.len();
        match &self.backend {
            Backend::Local { root } => {
                let path = local_path(root, key);
                let key_owned = key.to_owned();
                blocking(key, move || {
                    write_atomically(&path, &bytes).map_err(|source| io(&key_owned, source))
                })
                .await?;
            }
            Backend::Object { store, prefix, .. } => {
                let location = object_path(prefix, key)?;
                store
                    .put(&location, PutPayload::from(bytes))
                    .await
                    .map_err(|e| remote(key, e))?;
            }
        }
        tracing::debug!(key, bytes = size, "photo stored");
        Ok(())
    }

    /// Stores the file at `path` under `key` as it is (no metadata is stripped: for files that
    /// are not photos, like a training archive), read piece by piece so that a large file never
    /// sits in memory whole. Readers see the old or the new object, never a part of one.
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<(), StorageError> {
        validate_key(key)?;
        match &self.backend {
            Backend::Local { root } => {
                let target = local_path(root, key);
                let source = path.to_path_buf();
                let key_owned = key.to_owned();
                blocking(key, move || {
                    copy_atomically(&source, &target).map_err(|source| io(&key_owned, source))
                })
                .await?;
            }
            Backend::Object { store, prefix, .. } => {
                let location = object_path(prefix, key)?;
                let file = tokio::fs::File::open(path).await.map_err(|e| io(key, e))?;
                let upload = store
                    .put_multipart(&location)
                    .await
                    .map_err(|e| remote(key, e))?;
                let mut writer = object_store::WriteMultipart::new(upload);
                let mut chunks = file_chunks(file);
                while let Some(chunk) = chunks.next().await {
                    let written = match chunk {
                        Ok(chunk) => writer
                            .wait_for_capacity(4)
                            .await
                            .map(|()| writer.write(&chunk))
                            .map_err(|e| remote(key, e)),
                        Err(e) => Err(io(key, e)),
                    };
                    if let Err(e) = written {
                        // Nothing half-written stays behind in the bucket.
                        let _ = writer.abort().await;
                        return Err(e);
                    }
                }
                writer.finish().await.map_err(|e| remote(key, e))?;
            }
        }
        tracing::debug!(key, "file stored");
        Ok(())
    }

    /// The whole object under `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        validate_key(key)?;
        match &self.backend {
            Backend::Local { root } => tokio::fs::read(local_path(root, key))
                .await
                .map(Bytes::from)
                .map_err(|e| io(key, e)),
            Backend::Object { store, prefix, .. } => {
                let location = object_path(prefix, key)?;
                let found = store.get(&location).await.map_err(|e| remote(key, e))?;
                found.bytes().await.map_err(|e| remote(key, e))
            }
        }
    }

    /// The object under `key` as a stream of chunks; a missing key fails here, not mid-stream.
    pub async fn get_stream(&self, key: &str) -> Result<ByteStream, StorageError> {
        validate_key(key)?;
        let key_owned = key.to_owned();
        match &self.backend {
            Backend::Local { root } => {
                let file = tokio::fs::File::open(local_path(root, key))
                    .await
                    .map_err(|e| io(key, e))?;
                Ok(file_chunks(file)
                    .map_err(move |e| io(&key_owned, e))
                    .boxed())
            }
            Backend::Object { store, prefix, .. } => {
                let location = object_path(prefix, key)?;
                let found = store.get(&location).await.map_err(|e| remote(key, e))?;
                Ok(found
                    .into_stream()
                    .map_err(move |e| remote(&key_owned, e))
                    .boxed())
            }
        }
    }

    /// Removes the object under `key`; a key that is already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        let outcome = match &self.backend {
            Backend::Local { root } => tokio::fs::remove_file(local_path(root, key))
                .await
                .map_err(|e| io(key, e)),
            Backend::Object { store, prefix, .. } => {
                let location = object_path(prefix, key)?;
                store.delete(&location).await.map_err(|e| remote(key, e))
            }
        };
        match outcome {
            Ok(()) | Err(StorageError::NotFound(_)) => {
                tracing::debug!(key, "photo deleted");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Removes every object whose key lies under `prefix/` (by whole segments: `avatars/1` does
    /// not touch `avatars/12/…`) and returns how many were removed.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StorageError> {
        let prefix = prefix.trim_end_matches('/');
        validate_key(prefix)?;
        let removed = match &self.backend {
            Backend::Local { root } => {
                let dir = local_path(root, prefix);
                let key = prefix.to_owned();
                blocking(prefix, move || {
                    remove_tree(&dir).map_err(|source| io(&key, source))
                })
                .await?
            }
            Backend::Object {
                store,
                prefix: base,
                ..
            } => {
                let location = object_path(base, prefix)?;
                let under = format!("{location}/");
                let listed = store
                    .list(Some(&location))
                    .map_ok(|meta| meta.location)
                    .try_filter(move |path| {
                        futures::future::ready(path.as_ref().starts_with(&under))
                    })
                    .boxed();
                let mut deleted = store.delete_stream(listed);
                let mut count = 0;
                while let Some(outcome) = deleted.next().await {
                    match outcome {
                        Ok(_) => count += 1,
                        // Someone else removed it between the listing and the delete.
                        Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(remote(prefix, e)),
                    }
                }
                count
            }
        };
        tracing::info!(prefix, removed, "photo prefix deleted");
        Ok(removed)
    }

    /// Whether an object is stored under `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        validate_key(key)?;
        match &self.backend {
            Backend::Local { root } => match tokio::fs::metadata(local_path(root, key)).await {
                Ok(meta) => Ok(meta.is_file()),
                // A plain file where the key needs a folder: the key cannot exist either.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    Ok(false)
                }
                Err(e) => Err(io(key, e)),
            },
            Backend::Object { store, prefix, .. } => {
                let location = object_path(prefix, key)?;
                match store.head(&location).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(remote(key, e)),
                }
            }
        }
    }
}

/// A file as a stream of chunks of at most [`CHUNK`] bytes.
pub(crate) fn file_chunks(file: tokio::fs::File) -> BoxStream<'static, std::io::Result<Bytes>> {
    futures::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; CHUNK];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    })
    .boxed()
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

fn valid_bucket_name(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// A validated key as a path under `root`, one segment at a time.
fn local_path(root: &Path, key: &str) -> PathBuf {
    let mut path = root.to_path_buf();
    path.extend(key.split('/'));
    path
}

fn object_path(prefix: &str, key: &str) -> Result<ObjectPath, StorageError> {
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

fn io(key: &str, source: std::io::Error) -> StorageError {
    if source.kind() == std::io::ErrorKind::NotFound {
        StorageError::NotFound(key.to_owned())
    } else {
        StorageError::Io {
            key: key.to_owned(),
            source,
        }
    }
}

fn remote(key: &str, e: object_store::Error) -> StorageError {
    match e {
        // S3 answers 404 for a missing bucket too: that is a misconfiguration, never "the
        // object is gone" (a deletion must not pass for done against the wrong bucket).
        object_store::Error::NotFound { .. } if e.to_string().contains("NoSuchBucket") => {
            StorageError::Remote {
                key: key.to_owned(),
                message: format!("the bucket does not exist: {e}"),
            }
        }
        object_store::Error::NotFound { .. } => StorageError::NotFound(key.to_owned()),
        other => StorageError::Remote {
            key: key.to_owned(),
            message: other.to_string(),
        },
    }
}

/// Runs blocking file work off the async runtime.
async fn blocking<T: Send + 'static>(
    key: &str,
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Io {
            key: key.to_owned(),
            source: std::io::Error::other(format!("storage task failed: {e}")),
        })?
}

/// Write to a temporary file beside the target, fsync it, rename it over the target, then fsync
/// the folder: after a crash the key holds the old bytes or the new ones, never a torn file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("a key always has a parent folder"))?;
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object");
    let temp = dir.join(format!(".{name}.{}.tmp", Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = std::fs::File::create_new(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

/// [`write_atomically`] for the contents of the file at `source`, copied without reading it
/// into memory.
fn copy_atomically(source: &Path, path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("a key always has a parent folder"))?;
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object");
    let temp = dir.join(format!(".{name}.{}.tmp", Uuid::new_v4().simple()));
    let written = (|| {
        let mut from = std::fs::File::open(source)?;
        let mut file = std::fs::File::create_new(&temp)?;
        std::io::copy(&mut from, &mut file)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    // Directories cannot be opened for syncing here; the rename is still atomic.
    Ok(())
}

/// Removes a folder and everything in it, counting the stored objects (not our temporary files).
fn remove_tree(dir: &Path) -> std::io::Result<usize> {
    fn count_objects(dir: &Path) -> std::io::Result<usize> {
        let mut count = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                count += count_objects(&entry.path())?;
            } else if !entry.file_name().to_string_lossy().starts_with('.') {
                count += 1;
            }
        }
        Ok(count)
    }
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        // A plain object of that name is not "under" the prefix; nothing is there to remove.
        Ok(_) => return Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    }
    let count = count_objects(dir)?;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(count),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(count),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_the_store_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/..",
            "a//b",
            "a/./b",
            ".hidden",
            "a\\b",
            "a b",
            "ключ",
        ] {
            assert!(
                matches!(validate_key(bad), Err(StorageError::InvalidKey { .. })),
                "`{bad}` was accepted"
            );
        }
        validate_key("avatars/5f0e/photo-1.jpg").expect("a normal key");
    }

    #[test]
    fn photo_keys_follow_the_documented_layout() {
        let id = Uuid::nil();
        assert_eq!(
            photo_key(id, "abc", ImageFormat::Webp),
            "avatars/00000000-0000-0000-0000-000000000000/abc.webp"
        );
        validate_key(&photo_key(id, "abc", ImageFormat::Jpeg)).expect("generated keys are valid");
    }

    #[test]
    fn copies_and_archives_live_under_the_avatars_prefix() {
        let id = Uuid::nil();
        let fal = "https://v3.fal.media/files/rabbit/Ab-1_x/pytorch_lora_weights.safetensors";
        let key = copy_key(id, fal);
        assert!(
            key.starts_with(&format!("{}/copies/", avatar_prefix(id))),
            "{key}"
        );
        assert!(key.ends_with("/pytorch_lora_weights.safetensors"), "{key}");
        validate_key(&key).expect("copy keys are valid");
        // One file per URL, whatever its name; names that are not key material are cleaned.
        assert_ne!(
            key,
            copy_key(
                id,
                "https://v3.fal.media/files/other/pytorch_lora_weights.safetensors"
            )
        );
        assert_eq!(copy_key(id, fal), key);
        for odd in [
            "http://h/",
            "http://h/a b?.png?x=1",
            "http://h/..",
            "не url",
        ] {
            validate_key(&copy_key(id, odd)).unwrap_or_else(|e| panic!("{odd}: {e}"));
        }
        let archive = archive_key(id, "train:42");
        assert_eq!(
            archive,
            "avatars/00000000-0000-0000-0000-000000000000/archives/train_42.zip"
        );
        validate_key(&archive).expect("archive keys are valid");
    }

    #[test]
    fn storage_urls_parse_into_locations() {
        assert_eq!(
            StorageLocation::parse("file://./data/photos").unwrap(),
            StorageLocation::Local("./data/photos".into())
        );
        assert_eq!(
            StorageLocation::parse("file:///var/lib/aisha").unwrap(),
            StorageLocation::Local("/var/lib/aisha".into())
        );
        assert_eq!(
            StorageLocation::parse("s3://my-bucket/aisha/photos/").unwrap(),
            StorageLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: "aisha/photos".into()
            }
        );
        assert_eq!(
            StorageLocation::parse("s3://my-bucket").unwrap(),
            StorageLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: String::new()
            }
        );
        assert!(
            matches!(StorageLocation::parse("gs://b/p"), Err(StorageError::UnsupportedUrl(s)) if s == "gs")
        );
        assert!(matches!(
            StorageLocation::parse("file://"),
            Err(StorageError::InvalidUrl(_))
        ));
        assert!(matches!(
            StorageLocation::parse("s3://"),
            Err(StorageError::InvalidUrl(_))
        ));
        assert!(matches!(
            StorageLocation::parse("s3://bucket/../x"),
            Err(StorageError::InvalidKey { .. })
        ));
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_being_echoed() {
        let err = StorageLocation::parse("s3://AKIDEXAMPLE:s3cr3t@bucket/p").unwrap_err();
        assert!(matches!(err, StorageError::InvalidUrl(_)));
        assert!(!err.to_string().contains("s3cr3t"));
    }
}
