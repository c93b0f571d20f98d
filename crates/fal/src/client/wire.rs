//! What every call shares on the wire: headers, URL parsing, reading an answer, and the labels
//! of the call metrics.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;

use super::error::FalError;

/// Upload lifecycle headers. FAL's JavaScript client sends the first on upload initiation, its
/// Python client both (its comment: the CDN reads the first, storage-backed initiation the
/// second), and FAL's data-retention page names the second; we send both, as Python does.
/// The value is JSON: `{"expiration_duration_seconds": N}`.
pub const HEADER_OBJECT_LIFECYCLE: &str = "x-fal-object-lifecycle";
pub const HEADER_OBJECT_LIFECYCLE_PREFERENCE: &str = "x-fal-object-lifecycle-preference";
/// The Platform API's optional retry key ("prevents duplicate deletions on retries").
pub const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Whether a failed attempt may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repeat {
    /// Repeating changes nothing on FAL's side.
    Idempotent,
    /// Repeating may start a second paid job: only when the first never left this machine.
    OnlyIfNotSent,
}

/// The lifecycle header value for `lifetime`: `{"expiration_duration_seconds":N}`, N ≥ 1.
pub fn lifecycle_header(lifetime: Duration) -> HeaderValue {
    let seconds = lifetime.as_secs().max(1);
    HeaderValue::from_str(
        &serde_json::json!({ "expiration_duration_seconds": seconds }).to_string(),
    )
    .expect("JSON of a number is a valid header value")
}

pub(super) fn parse_url(url: &str) -> Result<Url, FalError> {
    Url::parse(url).map_err(|_| FalError::InvalidUrl {
        url: url.to_owned(),
    })
}

/// Sends and reads the whole answer.
pub(super) async fn send(
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, HeaderMap, Bytes), FalError> {
    let response = request.send().await.map_err(FalError::from_reqwest)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(FalError::from_reqwest)?;
    Ok((status, headers, body))
}

/// Sends and decodes a JSON answer; any non-2xx becomes its typed error.
pub(super) async fn json_answer<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<T, FalError> {
    let (status, headers, body) = send(request).await?;
    if !status.is_success() {
        return Err(FalError::from_response(status, &headers, &body));
    }
    serde_json::from_slice(&body).map_err(|e| FalError::Decode(e.to_string()))
}

/// The FAL app a call went to, for metric labels: the model id of a submit, or the app path in
/// front of `/requests/` of a queue URL; other URLs (storage, files) are labelled by host only, so
/// request ids never become label values.
pub(super) fn metric_endpoint(target: &str) -> String {
    if !target.contains("://") {
        return target.to_owned();
    }
    let Ok(url) = reqwest::Url::parse(target) else {
        return "unknown".to_owned();
    };
    match url.path().split_once("/requests/") {
        Some((app, _)) => app
            .trim_start_matches('/')
            .trim_start_matches("queue/")
            .to_owned(),
        None => url.host_str().unwrap_or("unknown").to_owned(),
    }
}

/// An attempt's outcome as a metric label: the HTTP status, or what went wrong on the wire.
pub(super) fn metric_status(error: &FalError) -> String {
    match error.http_status() {
        Some(status) => status.to_string(),
        None => match error {
            FalError::Timeout => "timeout".to_owned(),
            FalError::Connect(_) | FalError::Connection(_) => "network".to_owned(),
            _ => "other".to_owned(),
        },
    }
}

#[cfg(test)]
mod metric_label_tests {
    use super::*;

    #[test]
    fn endpoint_labels_never_carry_request_ids() {
        assert_eq!(metric_endpoint("fal-ai/flux-lora"), "fal-ai/flux-lora");
        assert_eq!(
            metric_endpoint("https://queue.fal.run/fal-ai/flux-pro/requests/abc-123/status"),
            "fal-ai/flux-pro"
        );
        assert_eq!(
            metric_endpoint("http://127.0.0.1:9/queue/fal-ai/flux-lora/requests/r1"),
            "fal-ai/flux-lora"
        );
        assert_eq!(
            metric_endpoint("https://v3.fal.media/files/x.png"),
            "v3.fal.media"
        );
        assert_eq!(metric_status(&FalError::Timeout), "timeout");
        assert_eq!(
            metric_status(&FalError::RateLimited { retry_after: None }),
            "429"
        );
    }
}
