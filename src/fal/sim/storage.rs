//! Simulated FAL storage: upload tickets (`/rest/storage/upload/initiate`), pre-signed PUT
//! targets (`/files/upload/<token>`), and the stored files (`/files/<id>/<name>`).

use std::io::{Cursor, Read};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{error_response, SimState};
use crate::fal::types::{InitiateUploadRequest, InitiateUploadResponse};

/// A file the simulator serves.
#[derive(Debug, Clone)]
pub(super) struct StoredFile {
    pub bytes: Bytes,
    pub content_type: String,
    pub file_name: String,
}

/// An upload ticket whose bytes have not arrived yet (or may be sent again).
#[derive(Debug, Clone)]
pub(super) struct PendingUpload {
    file_id: String,
    file_name: String,
    content_type: String,
}

/// A file name safe to put in a URL path.
fn safe_name(name: &str) -> String {
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

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Stores `bytes` and returns the URL that serves them.
pub(super) fn store(state: &SimState, file_name: &str, content_type: &str, bytes: Bytes) -> String {
    let id = new_id();
    let file_name = safe_name(file_name);
    let url = state.url(&format!("/files/{id}/{file_name}"));
    state.lock().files.insert(
        id,
        StoredFile {
            bytes,
            content_type: content_type.to_owned(),
            file_name,
        },
    );
    url
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

pub(super) async fn initiate(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
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
        },
    );
    StatusCode::OK.into_response()
}

pub(super) async fn download(
    State(state): State<Arc<SimState>>,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    let file = state.lock().files.get(&id).cloned();
    match file {
        Some(file) if file.file_name == name => {
            ([(header::CONTENT_TYPE, file.content_type)], file.bytes).into_response()
        }
        _ => error_response(StatusCode::NOT_FOUND, json!("File not found")),
    }
}

/// Checks that `url` is a zip stored here holding at least one image; answers the image count
/// or why the trainer would refuse it.
pub(super) fn check_archive(state: &SimState, url: &str) -> Result<usize, String> {
    let Some(id) = file_id_from_url(url) else {
        return Err("Could not download the archive: not a FAL storage URL".to_owned());
    };
    let Some(file) = state.lock().files.get(&id).cloned() else {
        return Err("Could not download the archive: file not found".to_owned());
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(file.bytes))
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

/// Whether `url` names a LoRA weights file stored here.
pub(super) fn is_lora_file(state: &SimState, url: &str) -> bool {
    file_id_from_url(url)
        .and_then(|id| state.lock().files.get(&id).cloned())
        .is_some_and(|file| file.file_name.ends_with(".safetensors"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
