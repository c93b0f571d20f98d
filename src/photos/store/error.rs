//! Why the photo store could not do what was asked, with the key and the backend's own error.

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
        source: crate::photos::metadata::MetadataError,
    },
}

pub(super) fn io(key: &str, source: std::io::Error) -> StorageError {
    if source.kind() == std::io::ErrorKind::NotFound {
        StorageError::NotFound(key.to_owned())
    } else {
        StorageError::Io {
            key: key.to_owned(),
            source,
        }
    }
}

pub(super) fn remote(key: &str, e: object_store::Error) -> StorageError {
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
