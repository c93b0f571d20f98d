//! The photo store: photo bytes under stable keys, in a local folder or an S3-compatible bucket.
//!
//! `STORAGE_URL` chooses the backend: `file://DIR` is our own folder backend (atomic, fsynced
//! writes), `s3://BUCKET/PREFIX` goes through `object_store` with credentials, region and
//! endpoint from the usual `AWS_*` variables, so MinIO and other S3-compatible servers work too.

mod error;
mod keys;
mod local;
mod location;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use error::{io, remote};
use keys::{local_path, object_path};
use local::{blocking, copy_atomically, remove_tree, write_atomically};
use location::valid_bucket_name;

pub use error::StorageError;
pub use keys::{archive_key, archives_prefix, avatar_prefix, copy_key, photo_key, validate_key};
pub(crate) use local::file_chunks;
pub use location::StorageLocation;

/// A stored object read piece by piece, so large objects never sit in memory whole.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

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
