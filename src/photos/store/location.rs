//! Where `STORAGE_URL` points: a local folder or an S3-compatible bucket, parsed but not opened.

use std::fmt;
use std::path::PathBuf;

use super::error::StorageError;
use super::keys::validate_key;

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

pub(super) fn valid_bucket_name(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}
