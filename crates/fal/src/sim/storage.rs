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

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::inputs::{self, Fetched};
use super::{error_response, FalSimulator, SimState};
use crate::types::{InitiateUploadRequest, InitiateUploadResponse};

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
    fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// An upload ticket whose bytes have not arrived yet (or may be sent again).
#[derive(Debug, Clone)]
pub(super) struct PendingUpload {
    file_id: String,
    file_name: String,
    content_type: String,
    /// Asked for at initiation; counted from when the bytes arrive.
    lifetime: Option<Duration>,
}

/// A multipart upload whose parts are arriving.
#[derive(Debug, Clone)]
pub(super) struct MultipartUpload {
    file_id: String,
    file_name: String,
    content_type: String,
    lifetime: Option<Duration>,
    /// Part number → (ETag, bytes).
    parts: BTreeMap<u32, (String, Bytes)>,
}

/// How long a CDN upload token works.
const CDN_TOKEN_LIFETIME: chrono::Duration = chrono::Duration::hours(1);

/// The lifecycle headers, preferred name first.
const LIFECYCLE_HEADERS: [&str; 2] = [
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

fn expiry(lifetime: Option<Duration>) -> Option<DateTime<Utc>> {
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
fn live_file(state: &SimState, id: &str) -> Option<StoredFile> {
    let now = Utc::now();
    state
        .lock()
        .files
        .get(id)
        .filter(|file| file.is_live(now))
        .cloned()
}

impl FalSimulator {
    /// Moves the storage clock on by `by`: every stored file is that much older, so one whose
    /// lifetime ends within `by` answers 404 from now on — without a test having to wait.
    pub fn advance_storage_clock(&self, by: std::time::Duration) {
        let by = Duration::from_std(by).unwrap_or(Duration::MAX);
        for file in self.state.lock().files.values_mut() {
            if let Some(at) = file.expires_at.as_mut() {
                *at = at
                    .checked_sub_signed(by)
                    .unwrap_or(DateTime::<Utc>::MIN_UTC);
            }
        }
    }

    /// When the file at `url` expires: `Some(None)` if it is kept, `None` if nothing is stored
    /// there (any more).
    pub fn file_expires_at(&self, url: &str) -> Option<Option<DateTime<Utc>>> {
        let id = file_id_from_url(url)?;
        live_file(&self.state, &id).map(|file| file.expires_at)
    }
}

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

/// Stores `bytes`, kept until the simulator stops, and returns the URL that serves them.
pub(super) fn store(state: &SimState, file_name: &str, content_type: &str, bytes: Bytes) -> String {
    store_expiring(state, file_name, content_type, bytes, None)
}

/// Stores `bytes` for `lifetime` (or for good) and returns the URL that serves them.
fn store_expiring(
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

/// The file id in a `…/files/<id>/<name>` URL (any host, so that a public URL works too).
pub(super) fn file_id_from_url(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let rest = parsed.path().split("/files/").nth(1)?;
    let mut parts = rest.split('/');
    let id = parts.next()?;
    let _name = parts.next()?;
    (parts.next().is_none() && id != "upload" && !id.is_empty()).then(|| id.to_owned())
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
    let lifetime = match requested_lifetime(&headers) {
        Ok(lifetime) => lifetime,
        Err(why) => return lifecycle_refused(why),
    };
    let content_type = content_type_of(&headers);
    let file_name = file_name_of(&headers, &content_type);
    let size = body.len();
    let url = store_expiring(&state, &file_name, &content_type, body, lifetime);
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
    let lifetime = match requested_lifetime(&headers) {
        Ok(lifetime) => lifetime,
        Err(why) => return lifecycle_refused(why),
    };
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
            lifetime,
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
            expires_at: expiry(upload.lifetime),
        },
    );
    drop(inner);
    let access_url = state.url(&format!("/files/{}/{}", upload.file_id, upload.file_name));
    Json(json!({ "access_url": access_url })).into_response()
}

#[cfg(test)]
mod tests {
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
