//! The files the simulator serves and the uploads under way, and what their URLs and paths
//! say.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::Method;
use chrono::{DateTime, Duration, Utc};

/// A file the simulator serves.
#[derive(Debug, Clone)]
pub(super) struct StoredFile {
    pub bytes: Bytes,
    pub content_type: String,
    pub file_name: String,
    /// When FAL deletes it, as its uploader asked; `None`: kept.
    pub expires_at: Option<DateTime<Utc>>,
}

impl StoredFile {
    pub(super) fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// An upload ticket whose bytes have not arrived yet (or may be sent again).
#[derive(Debug, Clone)]
pub(super) struct PendingUpload {
    pub(super) file_id: String,
    pub(super) file_name: String,
    pub(super) content_type: String,
    /// Asked for at initiation; counted from when the bytes arrive.
    pub(super) lifetime: Option<Duration>,
}

/// A multipart upload whose parts are arriving.
#[derive(Debug, Clone)]
pub(super) struct MultipartUpload {
    pub(super) file_id: String,
    pub(super) file_name: String,
    pub(super) content_type: String,
    pub(super) lifetime: Option<Duration>,
    /// Part number → (ETag, bytes).
    pub(super) parts: BTreeMap<u32, (String, Bytes)>,
}

/// Whether a call goes to one of the CDN's upload endpoints.
pub(super) fn is_cdn_upload_path(method: &Method, path: &str) -> bool {
    let create =
        method == Method::POST && (path == "/files/upload" || path == "/files/upload/multipart");
    create || (path.starts_with("/files/") && path.contains("/multipart/"))
}

/// The file id in a `…/files/<id>/<name>` URL (any host, so that a public URL works too).
pub(super) fn file_id_from_url(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let rest = parsed.path().split("/files/").nth(1)?;
    let mut parts = rest.split('/');
    let id = parts.next()?;
    let _name = parts.next()?;
    (parts.next().is_none() && id != "upload" && !id.is_empty()).then(|| id.to_owned())
}
