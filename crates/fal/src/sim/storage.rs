//! Simulated FAL storage, in the three ways FAL's clients upload:
//! - upload tickets (`POST /rest/storage/upload/initiate`) and their pre-signed PUT targets
//!   (`/files/upload/<token>`): Aisha's client, and fal-client's `fal` repository;
//! - the CDN (fal-client's default `fal_v3` repository): a token from
//!   `POST /rest/storage/auth/token`, then `POST {CDN}/files/upload` with the bytes, answered
//!   `{"access_url"}`;
//! - the CDN's multipart upload for large files: `POST {CDN}/files/upload/multipart`, then
//!   `PUT {access_url}/multipart/<upload id>/<part>` (answered with an ETag) and
//!   `POST {access_url}/multipart/<upload id>/complete` with the parts and their ETags;
//!
//! and the stored files themselves (`/files/<id>/<name>`).
//!
//! Every upload may carry FAL's lifecycle header (`X-Fal-Object-Lifecycle-Preference`, or
//! `X-Fal-Object-Lifecycle` as FAL's JavaScript client names it on uploads), JSON
//! `{"expiration_duration_seconds": N}`: the file then answers 404 from N seconds after it was
//! stored, and the trainers cannot read it either. FAL's clients treat 0 and null as "no
//! expiration"; so does the simulator. The same header on a queue submission sets the lifetime
//! of the files the job produces. Deleting a request's payloads deletes the files in its output
//! (see `jobs`). Tests move time on with [`FalSimulator::advance_storage_clock`] instead of
//! waiting.

use std::io::{Cursor, Read};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::types::{InitiateUploadRequest, InitiateUploadResponse};

use super::files::{file_id_from_url, PendingUpload, StoredFile};
use super::inputs::{self, Fetched};
use super::state::{error_response, SimState};

/// The lifecycle headers, preferred name first.
pub(super) const LIFECYCLE_HEADERS: [&str; 2] = [
    "x-fal-object-lifecycle-preference",
    "x-fal-object-lifecycle",
];

/// The lifetime an upload (or a submission, for its outputs) asks for, or why its lifecycle
/// header cannot be read.
pub(super) fn requested_lifetime(headers: &HeaderMap) -> Result<Option<Duration>, &'static str> {
    let Some(value) = LIFECYCLE_HEADERS.iter().find_map(|name| headers.get(*name)) else {
        return Ok(None);
    };
    let parsed: serde_json::Value = value
        .to_str()
        .ok()
        .and_then(|v| serde_json::from_str(v).ok())
        .ok_or("not a JSON object")?;
    let object = parsed.as_object().ok_or("not a JSON object")?;
    match object.get("expiration_duration_seconds") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(seconds) => match seconds.as_u64() {
            Some(0) => Ok(None),
            Some(n) => Ok(Some(
                Duration::seconds(n.min(i64::MAX as u64 / 1000) as i64),
            )),
            None => Err("expiration_duration_seconds must be a whole number of seconds"),
        },
    }
}

/// The answer to a lifecycle header we cannot read. FAL does not document its own; refusing
/// keeps our client honest.
pub(super) fn lifecycle_refused(why: &str) -> Response {
    error_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!([{"loc": ["header", "X-Fal-Object-Lifecycle-Preference"], "msg": why, "type": "value_error"}]),
    )
}

pub(super) fn expiry(lifetime: Option<Duration>) -> Option<DateTime<Utc>> {
    lifetime.and_then(|l| Utc::now().checked_add_signed(l))
}

/// Gives the stored files `ids` the lifetime `lifetime`, counted from now (a job's outputs, as
/// its submission asked).
pub(super) fn expire_in(state: &SimState, ids: &[String], lifetime: Duration) {
    let at = expiry(Some(lifetime));
    let mut inner = state.lock();
    for id in ids {
        if let Some(file) = inner.files.get_mut(id) {
            file.expires_at = at;
        }
    }
}

/// The ids of the files of this simulator that `value` names anywhere (a job's output).
pub(super) fn file_ids_in(state: &SimState, value: &serde_json::Value) -> Vec<String> {
    let own = state.url("/files/");
    let mut ids = Vec::new();
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::String(text) if text.starts_with(&own) => {
                ids.extend(file_id_from_url(text));
            }
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(fields) => stack.extend(fields.values()),
            _ => {}
        }
    }
    ids
}

/// A stored file by id, unless FAL would have deleted it by now.
pub(super) fn live_file(state: &SimState, id: &str) -> Option<StoredFile> {
    let now = Utc::now();
    state
        .lock()
        .files
        .get(id)
        .filter(|file| file.is_live(now))
        .cloned()
}

/// A file name safe to put in a URL path.
pub(super) fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "file".to_owned()
    } else {
        cleaned
    }
}

pub(super) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Stores `bytes`, kept until the simulator stops, and returns the URL that serves them.
pub(super) fn store(state: &SimState, file_name: &str, content_type: &str, bytes: Bytes) -> String {
    store_expiring(state, file_name, content_type, bytes, None)
}

/// Stores `bytes` for `lifetime` (or for good) and returns the URL that serves them.
pub(super) fn store_expiring(
    state: &SimState,
    file_name: &str,
    content_type: &str,
    bytes: Bytes,
    lifetime: Option<Duration>,
) -> String {
    let id = new_id();
    let file_name = safe_name(file_name);
    let url = state.url(&format!("/files/{id}/{file_name}"));
    state.lock().files.insert(
        id,
        StoredFile {
            bytes,
            content_type: content_type.to_owned(),
            file_name,
            expires_at: expiry(lifetime),
        },
    );
    url
}

pub(super) async fn initiate(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lifetime = match requested_lifetime(&headers) {
        Ok(lifetime) => lifetime,
        Err(why) => return lifecycle_refused(why),
    };
    let ticket: InitiateUploadRequest = match serde_json::from_slice(&body) {
        Ok(ticket) => ticket,
        Err(e) => {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!([{"loc": ["body"], "msg": e.to_string(), "type": "value_error"}]),
            )
        }
    };
    let token = new_id();
    let file_id = new_id();
    let file_name = safe_name(&ticket.file_name);
    let answer = InitiateUploadResponse {
        upload_url: state.url(&format!("/files/upload/{token}")),
        file_url: state.url(&format!("/files/{file_id}/{file_name}")),
    };
    state.lock().uploads.insert(
        token,
        PendingUpload {
            file_id,
            file_name,
            content_type: ticket.content_type,
            lifetime,
        },
    );
    Json(answer).into_response()
}

pub(super) async fn upload(
    State(state): State<Arc<SimState>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = state.lock();
    let Some(pending) = inner.uploads.get(&token).cloned() else {
        return error_response(
            StatusCode::FORBIDDEN,
            json!("Invalid or expired upload URL"),
        );
    };
    // A pre-signed URL is signed for the content type given at initiation.
    let sent_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if sent_type != pending.content_type {
        return error_response(
            StatusCode::FORBIDDEN,
            json!(format!(
                "Content-Type {sent_type:?} does not match the upload ticket's {:?}",
                pending.content_type
            )),
        );
    }
    inner.files.insert(
        pending.file_id,
        StoredFile {
            bytes: body,
            content_type: pending.content_type,
            file_name: pending.file_name,
            expires_at: expiry(pending.lifetime),
        },
    );
    StatusCode::OK.into_response()
}

pub(super) async fn download(
    State(state): State<Arc<SimState>>,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    match live_file(&state, &id) {
        Some(file) if file.file_name == name => {
            ([(header::CONTENT_TYPE, file.content_type)], file.bytes).into_response()
        }
        _ => error_response(StatusCode::NOT_FOUND, json!("File not found")),
    }
}

/// Checks that `url` is a zip (stored here, or downloaded from elsewhere) holding at least one
/// image; answers the image count or why the trainer would refuse it.
pub(super) fn check_archive(
    state: &SimState,
    url: &str,
    fetched: &Fetched,
) -> Result<usize, String> {
    let bytes = match fetched.get(url) {
        Some(Ok(bytes)) => bytes.clone(),
        Some(Err(why)) => return Err(format!("Could not download the archive: {why}")),
        None => {
            let Some(id) = file_id_from_url(url) else {
                return Err("Could not download the archive: not a URL".to_owned());
            };
            let Some(file) = live_file(state, &id) else {
                return Err("Could not download the archive: file not found".to_owned());
            };
            file.bytes
        }
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("The archive is not a valid zip file: {e}"))?;
    let mut images = 0;
    for index in 0..archive.len() {
        let Ok(mut entry) = archive.by_index(index) else {
            return Err("The archive is damaged".to_owned());
        };
        if entry.is_dir() || entry.name().starts_with("__MACOSX") {
            continue;
        }
        let mut head = Vec::with_capacity(32);
        if (&mut entry).take(32).read_to_end(&mut head).is_err() {
            return Err("The archive is damaged".to_owned());
        }
        if image::guess_format(&head).is_ok() {
            images += 1;
        }
    }
    if images == 0 {
        return Err("The archive contains no images".to_owned());
    }
    Ok(images)
}

/// Whether `url` names LoRA weights: a safetensors file stored here, or downloaded from
/// elsewhere.
pub(super) fn is_lora_file(state: &SimState, url: &str, fetched: &Fetched) -> bool {
    if let Some(download) = fetched.get(url) {
        return download
            .as_ref()
            .is_ok_and(|bytes| inputs::is_safetensors(bytes));
    }
    file_id_from_url(url)
        .and_then(|id| live_file(state, &id))
        .is_some_and(|file| file.file_name.ends_with(".safetensors"))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn lifecycle_headers_are_read_as_fal_clients_write_them() {
        let lifetime = |name: &str, value: &str| requested_lifetime(&headers(name, value)).ok();
        for name in LIFECYCLE_HEADERS {
            assert_eq!(
                lifetime(name, r#"{"expiration_duration_seconds": 3600}"#),
                Some(Some(Duration::hours(1)))
            );
        }
        assert_eq!(requested_lifetime(&HeaderMap::new()).ok(), Some(None));
        // FAL's clients: 0 and null mean "no expiration"; an ACL alone sets no lifetime.
        let never = [
            r#"{"expiration_duration_seconds": 0}"#,
            r#"{"expiration_duration_seconds": null}"#,
            r#"{"initial_acl": {"default": "forbid"}}"#,
        ];
        for value in never {
            assert_eq!(lifetime(LIFECYCLE_HEADERS[0], value), Some(None), "{value}");
        }
        for bad in [
            "3600",
            "not json",
            r#"{"expiration_duration_seconds": -5}"#,
            r#"{"expiration_duration_seconds": "1h"}"#,
        ] {
            let refused = requested_lifetime(&headers(LIFECYCLE_HEADERS[0], bad));
            assert!(refused.is_err(), "{bad} was accepted");
            assert_eq!(
                lifecycle_refused(refused.unwrap_err()).status(),
                StatusCode::UNPROCESSABLE_ENTITY
            );
        }
    }

    #[test]
    fn a_file_is_served_until_its_lifetime_ends() {
        let now = Utc::now();
        let file = |expires_at| StoredFile {
            bytes: Bytes::new(),
            content_type: "application/zip".into(),
            file_name: "a.zip".into(),
            expires_at,
        };
        assert!(file(None).is_live(now));
        assert!(file(Some(now + Duration::seconds(1))).is_live(now));
        assert!(!file(Some(now)).is_live(now));
    }

    #[test]
    fn file_ids_come_from_files_urls_only() {
        assert_eq!(
            file_id_from_url("http://h/files/abc/x.zip").as_deref(),
            Some("abc")
        );
        assert_eq!(
            file_id_from_url("http://h/base/files/abc/x.zip").as_deref(),
            Some("abc")
        );
        assert_eq!(file_id_from_url("http://h/files/upload/tok"), None);
        assert_eq!(file_id_from_url("http://h/other/abc/x.zip"), None);
        assert_eq!(file_id_from_url("not a url"), None);
        assert_eq!(safe_name("my photos (1).zip"), "my_photos__1_.zip");
        assert_eq!(safe_name(".."), "file");
    }
}
