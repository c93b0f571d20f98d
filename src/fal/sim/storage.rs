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

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

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

/// A multipart upload whose parts are arriving.
#[derive(Debug, Clone)]
pub(super) struct MultipartUpload {
    file_id: String,
    file_name: String,
    content_type: String,
    /// Part number → (ETag, bytes).
    parts: BTreeMap<u32, (String, Bytes)>,
}

/// How long a CDN upload token works.
const CDN_TOKEN_LIFETIME: chrono::Duration = chrono::Duration::hours(1);

/// Whether a call goes to one of the CDN's upload endpoints.
pub(super) fn is_cdn_upload_path(method: &Method, path: &str) -> bool {
    let create =
        method == Method::POST && (path == "/files/upload" || path == "/files/upload/multipart");
    create || (path.starts_with("/files/") && path.contains("/multipart/"))
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

/// `POST /rest/storage/auth/token?storage_type=fal-cdn-v3`: a token for the CDN's upload
/// endpoints, and the CDN's base URL (this simulator's own).
pub(super) async fn cdn_token(State(state): State<Arc<SimState>>) -> Response {
    let token = new_id();
    let expires_at = Utc::now() + CDN_TOKEN_LIFETIME;
    state.lock().cdn_tokens.insert(token.clone(), expires_at);
    Json(json!({
        "token": token,
        "token_type": "Bearer",
        "base_url": state.base_url,
        // Whole seconds and a numeric offset: what any ISO parser (Python's included) reads.
        "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
    }))
    .into_response()
}

/// Whether a CDN call carries a token this simulator handed out and that still works.
fn cdn_authorized(state: &SimState, headers: &HeaderMap) -> bool {
    if !state.config.require_auth {
        return true;
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, token)| token.trim().to_owned());
    let Some(token) = token else {
        return false;
    };
    let now = Utc::now();
    state
        .lock()
        .cdn_tokens
        .get(&token)
        .is_some_and(|expires| *expires > now)
}

fn cdn_refused() -> Response {
    error_response(
        StatusCode::UNAUTHORIZED,
        json!("Invalid or expired upload token"),
    )
}

fn content_type_of(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// The `X-Fal-File-Name` the client sent, or a name made up from the content type.
fn file_name_of(headers: &HeaderMap, content_type: &str) -> String {
    let given = headers
        .get("x-fal-file-name")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    match given {
        Some(name) => safe_name(name),
        None => {
            let extension = match content_type.split(';').next().unwrap_or_default().trim() {
                "application/zip" => "zip",
                "image/png" => "png",
                "image/jpeg" => "jpg",
                "image/webp" => "webp",
                "application/json" => "json",
                "text/plain" => "txt",
                _ => "bin",
            };
            format!("{}.{extension}", new_id())
        }
    }
}

/// `POST {CDN}/files/upload`: the bytes in the body, answered with the file's URL.
pub(super) async fn cdn_upload(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !cdn_authorized(&state, &headers) {
        return cdn_refused();
    }
    let content_type = content_type_of(&headers);
    let file_name = file_name_of(&headers, &content_type);
    let size = body.len();
    let url = store(&state, &file_name, &content_type, body);
    Json(json!({
        "access_url": url,
        "content_type": content_type,
        "file_name": file_name,
        "file_size": size,
    }))
    .into_response()
}

/// `POST {CDN}/files/upload/multipart`: opens a multipart upload.
pub(super) async fn multipart_create(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
) -> Response {
    if !cdn_authorized(&state, &headers) {
        return cdn_refused();
    }
    let content_type = content_type_of(&headers);
    let file_name = file_name_of(&headers, &content_type);
    let file_id = new_id();
    let upload_id = new_id();
    let access_url = state.url(&format!("/files/{file_id}/{file_name}"));
    state.lock().multipart.insert(
        upload_id.clone(),
        MultipartUpload {
            file_id,
            file_name,
            content_type,
            parts: BTreeMap::new(),
        },
    );
    Json(json!({ "access_url": access_url, "uploadId": upload_id })).into_response()
}

fn no_such_upload() -> Response {
    error_response(StatusCode::NOT_FOUND, json!("Multipart upload not found"))
}

/// `PUT {access_url}/multipart/<upload id>/<part>`: one part, answered with its ETag.
pub(super) async fn multipart_part(
    State(state): State<Arc<SimState>>,
    Path((id, name, upload_id, part)): Path<(String, String, String, u32)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !cdn_authorized(&state, &headers) {
        return cdn_refused();
    }
    if part == 0 {
        return error_response(StatusCode::BAD_REQUEST, json!("Part numbers start at 1"));
    }
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
    let mut inner = state.lock();
    let Some(upload) = inner
        .multipart
        .get_mut(&upload_id)
        .filter(|u| u.file_id == id && u.file_name == name)
    else {
        return no_such_upload();
    };
    upload.parts.insert(part, (etag.clone(), body));
    let mut response = StatusCode::OK.into_response();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

#[derive(Debug, Deserialize)]
struct CompleteMultipart {
    parts: Vec<CompletedPart>,
}

#[derive(Debug, Deserialize)]
struct CompletedPart {
    #[serde(rename = "partNumber")]
    part_number: u32,
    etag: String,
}

/// `POST {access_url}/multipart/<upload id>/complete`: joins the listed parts, in part order
/// (clients list them in the order they finished), into the file `access_url` serves.
pub(super) async fn multipart_complete(
    State(state): State<Arc<SimState>>,
    Path((id, name, upload_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !cdn_authorized(&state, &headers) {
        return cdn_refused();
    }
    let mut listed = match serde_json::from_slice::<CompleteMultipart>(&body) {
        Ok(complete) if !complete.parts.is_empty() => complete.parts,
        Ok(_) => {
            return error_response(StatusCode::BAD_REQUEST, json!("No parts listed"));
        }
        Err(e) => {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!([{"loc": ["body"], "msg": e.to_string(), "type": "value_error"}]),
            )
        }
    };
    listed.sort_by_key(|p| p.part_number);
    let mut inner = state.lock();
    let Some(upload) = inner
        .multipart
        .get(&upload_id)
        .filter(|u| u.file_id == id && u.file_name == name)
        .cloned()
    else {
        return no_such_upload();
    };
    let mut bytes = Vec::new();
    for part in &listed {
        match upload.parts.get(&part.part_number) {
            Some((etag, data)) if etag.trim_matches('"') == part.etag.trim_matches('"') => {
                bytes.extend_from_slice(data);
            }
            _ => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    json!(format!(
                        "Part {} is missing or its ETag does not match",
                        part.part_number
                    )),
                )
            }
        }
    }
    inner.multipart.remove(&upload_id);
    inner.files.insert(
        upload.file_id.clone(),
        StoredFile {
            bytes: bytes.into(),
            content_type: upload.content_type,
            file_name: upload.file_name.clone(),
        },
    );
    drop(inner);
    let access_url = state.url(&format!("/files/{}/{}", upload.file_id, upload.file_name));
    Json(json!({ "access_url": access_url })).into_response()
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
