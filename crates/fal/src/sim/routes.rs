//! The simulator's routes, and what runs before every handler: logging the request, checking
//! the key, injecting faults; plus its own controls under `/_sim`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use crate::webhook::Jwks;

use super::state::{
    error_response, Fault, RecordedRequest, RequestKind, SimState, WebhookDelivery,
};
use super::{cdn, queue, storage};

pub(super) fn router(state: Arc<SimState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/queue/{*path}", any(queue::queue))
        .route("/rest/storage/upload/initiate", post(storage::initiate))
        .route("/rest/storage/auth/token", post(cdn::cdn_token))
        .route("/rest/.well-known/jwks.json", get(jwks))
        .route(
            "/platform/v1/models/requests/{id}/payloads",
            delete(queue::delete_payloads),
        )
        .route("/files/upload", post(cdn::cdn_upload))
        .route("/files/upload/multipart", post(cdn::multipart_create))
        .route("/files/upload/{token}", put(storage::upload))
        .route("/files/{id}/{name}", get(storage::download))
        .route(
            "/files/{id}/{name}/multipart/{upload_id}/complete",
            post(cdn::multipart_complete),
        )
        .route(
            "/files/{id}/{name}/multipart/{upload_id}/{part}",
            put(cdn::multipart_part),
        )
        .route("/_sim/requests", get(list_requests))
        .route("/_sim/webhooks", get(list_deliveries))
        .route("/_sim/fail-next", post(script_faults))
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, json!("Not Found")) })
        .layer(middleware::from_fn_with_state(state.clone(), gatekeeper))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Records the request, checks the key, and injects faults, before the handler runs.
async fn gatekeeper(State(state): State<Arc<SimState>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let kind = RequestKind::classify(&parts.method, parts.uri.path());
    let bytes = match axum::body::to_bytes(body, state.config.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!("Request body too large"),
            )
        }
    };
    let authorized = presented_key(&parts.headers).is_some();
    let accepted = !state.config.require_auth
        || !kind.needs_auth()
        || match (presented_key(&parts.headers), &state.config.accepted_key) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(given), Some(expected)) => given == expected,
        };
    // Refused calls consume no injected fault: faults are for calls FAL would have served.
    let fault = if !accepted || matches!(kind, RequestKind::Control | RequestKind::Other) {
        None
    } else {
        state.pick_fault(kind)
    };
    state.record(RecordedRequest {
        seq: 0,
        at: Utc::now(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        kind,
        // Uploads are file bytes, not worth keeping twice.
        body: (!matches!(kind, RequestKind::Upload | RequestKind::CdnUpload))
            .then(|| serde_json::from_slice(&bytes).ok())
            .flatten(),
        body_bytes: bytes.len(),
        authorized,
        fault: fault.map(Fault::describe),
    });
    if !accepted {
        return error_response(
            StatusCode::UNAUTHORIZED,
            json!("Invalid or missing API key"),
        );
    }

    let request = Request::from_parts(parts, Body::from(bytes));
    match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let detail = match code {
                429 => "Rate limit exceeded",
                _ => status.canonical_reason().unwrap_or("Simulated fault"),
            };
            tracing::debug!(?kind, code, "FAL simulator injecting an error");
            error_response(status, json!(detail))
        }
        Some(Fault::StallMs(ms)) => {
            // The work is done first: a client that gave up still caused it, as with FAL.
            let response = next.run(request).await;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            response
        }
        None => next.run(request).await,
    }
}

/// The key of an `Authorization: Key <key>` header, if well-formed.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let key = value.strip_prefix("Key ")?.trim();
    (!key.is_empty()).then_some(key)
}

async fn jwks(State(state): State<Arc<SimState>>) -> Json<Jwks> {
    let padded = state.config.jwks_padded;
    let mut keys: Vec<_> = state.decoys.iter().map(|d| d.jwk(padded)).collect();
    keys.push(state.signer().jwk(padded));
    Json(Jwks { keys })
}

async fn list_requests(State(state): State<Arc<SimState>>) -> Json<Vec<RecordedRequest>> {
    Json(state.lock().requests.clone())
}

async fn list_deliveries(State(state): State<Arc<SimState>>) -> Json<Vec<WebhookDelivery>> {
    Json(state.lock().deliveries.clone())
}

/// Body of `POST /_sim/fail-next`, for tests driving a standalone simulator.
#[derive(Debug, Deserialize)]
struct ScriptFaults {
    #[serde(default)]
    kind: Option<RequestKind>,
    faults: Vec<Fault>,
}

async fn script_faults(State(state): State<Arc<SimState>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<ScriptFaults>(&body) {
        Ok(script) => {
            let mut inner = state.lock();
            let count = script.faults.len();
            inner
                .scripted_faults
                .extend(script.faults.into_iter().map(|f| (script.kind, f)));
            Json(json!({ "queued": count })).into_response()
        }
        Err(e) => error_response(StatusCode::UNPROCESSABLE_ENTITY, json!(e.to_string())),
    }
}
