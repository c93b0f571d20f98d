//! `GET /fal-inputs/<key>`: the files FAL fetches from us — training archives, and our copies
//! of LoRA weights and of images to upscale — by the signed, expiring URLs of
//! `actors::targets`. Anything that cannot be served (no such file any more, a wrong or expired
//! signature, a key outside those folders) answers the same 404, so a dead URL tells nothing.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use serde::Deserialize;

use crate::actors::targets::FILE_ROUTE;
use crate::actors::WebhookTargets;
use crate::photos::{PhotoStore, StorageError};

/// What the route needs: where the files are, and the key their URLs are signed with.
#[derive(Clone)]
pub struct FilesState {
    pub photos: PhotoStore,
    pub targets: WebhookTargets,
}

pub fn router(state: FilesState) -> Router {
    Router::new()
        .route(&format!("{FILE_ROUTE}/{{*key}}"), get(serve))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct Signature {
    expires: Option<i64>,
    token: Option<String>,
}

async fn serve(
    State(state): State<FilesState>,
    Path(key): Path<String>,
    Query(signature): Query<Signature>,
) -> Response {
    let (Some(expires), Some(token)) = (signature.expires, signature.token.as_deref()) else {
        return not_found();
    };
    if !servable(&key)
        || expires <= Utc::now().timestamp()
        || !state.targets.verify_file(&key, expires, token)
    {
        metrics::counter!("fal_inputs_served_total", "outcome" => "refused").increment(1);
        return not_found();
    }
    match state.photos.get_stream(&key).await {
        Ok(stream) => {
            metrics::counter!("fal_inputs_served_total", "outcome" => "ok").increment(1);
            (
                [(header::CONTENT_TYPE, content_type(&key))],
                Body::from_stream(stream),
            )
                .into_response()
        }
        Err(StorageError::NotFound(_)) => {
            metrics::counter!("fal_inputs_served_total", "outcome" => "gone").increment(1);
            not_found()
        }
        Err(e) => {
            tracing::error!(error = %crate::telemetry::chain(&e), "could not read a file FAL asked for");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Only what we keep for FAL is ever served: copies and archives, never an uploaded photo, even
/// under a valid signature.
fn servable(key: &str) -> bool {
    let segments: Vec<&str> = key.split('/').collect();
    matches!(
        segments.as_slice(),
        ["avatars", _, "copies" | "archives", ..]
    ) && crate::photos::store::validate_key(key).is_ok()
}

fn content_type(key: &str) -> &'static str {
    match key
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
    {
        Some(ext) if ext == "zip" => "application/zip",
        Some(ext) if ext == "json" => "application/json",
        Some(ext) if ext == "png" => "image/png",
        Some(ext) if ext == "jpg" || ext == "jpeg" => "image/jpeg",
        Some(ext) if ext == "webp" => "image/webp",
        _ => "application/octet-stream",
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_copies_and_archives_are_servable() {
        assert!(servable("avatars/a1/copies/0f/lora.safetensors"));
        assert!(servable("avatars/a1/archives/t.zip"));
        assert!(!servable("avatars/a1/photo-1.jpg"));
        assert!(!servable("avatars/a1/copies/../photo-1.jpg"));
        assert!(!servable("other/a1/copies/x"));
        assert_eq!(content_type("avatars/a/archives/t.zip"), "application/zip");
        assert_eq!(content_type("avatars/a/copies/h/x.JPG"), "image/jpeg");
        assert_eq!(
            content_type("avatars/a/copies/h/w.safetensors"),
            "application/octet-stream"
        );
    }
}
