//! The CDN's upload endpoints as fal-client's default repository uses them: a token, a one-shot
//! upload, and the multipart upload for large files.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::files::{MultipartUpload, StoredFile};
use super::state::{error_response, SimState};
use super::storage::{
    expiry, lifecycle_refused, new_id, requested_lifetime, safe_name, store_expiring,
};

/// How long a CDN upload token works.
const CDN_TOKEN_LIFETIME: chrono::Duration = chrono::Duration::hours(1);

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
pub(super) fn cdn_authorized(state: &SimState, headers: &HeaderMap) -> bool {
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

pub(super) fn cdn_refused() -> Response {
    error_response(
        StatusCode::UNAUTHORIZED,
        json!("Invalid or expired upload token"),
    )
}

pub(super) fn content_type_of(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// The `X-Fal-File-Name` the client sent, or a name made up from the content type.
pub(super) fn file_name_of(headers: &HeaderMap, content_type: &str) -> String {
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

pub(super) fn no_such_upload() -> Response {
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
pub(super) struct CompleteMultipart {
    pub(super) parts: Vec<CompletedPart>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CompletedPart {
    #[serde(rename = "partNumber")]
    pub(super) part_number: u32,
    pub(super) etag: String,
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
