//! Everything that can go wrong talking to FAL, typed from FAL's answers and from the wire.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::types::{
    pick_error_type, with_error_type, ErrorDetail, FailureKind, QueueStatus,
    UNEXPECTED_MEDIA_ADDRESS,
};

/// The header FAL repeats a failed request's `error_type` in.
pub const HEADER_ERROR_TYPE: &str = "x-fal-error-type";

/// Everything that can go wrong talking to FAL.
#[derive(Debug, thiserror::Error)]
pub enum FalError {
    #[error("FAL refused the API key (HTTP {status})")]
    Unauthorized { status: u16 },
    #[error("FAL rejected the input: {detail}")]
    Validation { detail: String },
    #[error("FAL's rate or concurrency limit was reached")]
    RateLimited { retry_after: Option<Duration> },
    /// `detail` ends with FAL's error type, when it gave one (see `types::with_error_type`).
    #[error("FAL server error (HTTP {status}): {detail}")]
    Server {
        status: u16,
        detail: String,
        error_type: Option<String>,
    },
    #[error("FAL found no such request or file: {detail}")]
    NotFound { detail: String },
    #[error("the request had already completed and cannot be cancelled")]
    AlreadyCompleted,
    #[error("FAL answered HTTP {status}: {detail}")]
    Http {
        status: u16,
        detail: String,
        error_type: Option<String>,
    },
    /// FAL finished the request and reports that it failed (`error` / `error_type` on its
    /// COMPLETED status); `message` ends with the type, as `detail` does above.
    #[error("FAL reports the request failed: {message}")]
    Job {
        message: String,
        error_type: Option<String>,
    },
    /// A result names a file we do not fetch (off the media allow-list, a private address, a
    /// redirect elsewhere): nothing was fetched, and the URL must not be handed on either.
    #[error("FAL returned an image from an unexpected address ({reason}) [fal error_type={UNEXPECTED_MEDIA_ADDRESS}]")]
    UnexpectedMediaUrl { url: String, reason: String },
    #[error("FAL did not answer in time")]
    Timeout,
    /// The connection was never made, so the request certainly did not reach FAL.
    #[error("could not connect to FAL")]
    Connect(#[source] reqwest::Error),
    /// The connection broke after it was made; the request may have reached FAL.
    #[error("the connection to FAL failed")]
    Connection(#[source] reqwest::Error),
    #[error("could not decode FAL's answer: {0}")]
    Decode(String),
    #[error("the download is larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("invalid URL {url:?}")]
    InvalidUrl { url: String },
    #[error("could not read the file to upload")]
    Io(#[from] std::io::Error),
    #[error("the FAL key holds characters an HTTP header cannot carry")]
    InvalidKey,
    #[error("could not build the HTTP client")]
    Setup(#[source] reqwest::Error),
}

impl FalError {
    /// The HTTP status FAL answered with, when the error is an answer.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { status }
            | Self::Server { status, .. }
            | Self::Http { status, .. } => Some(*status),
            Self::Validation { .. } => Some(422),
            Self::RateLimited { .. } => Some(429),
            Self::NotFound { .. } => Some(404),
            Self::AlreadyCompleted => Some(400),
            _ => None,
        }
    }

    /// FAL's category for the failure (`request_timeout`, `content_policy_violation`, …), for
    /// logs and analytics; our own `unexpected_media_address` for a refused result file.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            Self::Server { error_type, .. }
            | Self::Http { error_type, .. }
            | Self::Job { error_type, .. } => error_type.as_deref(),
            Self::Validation { detail } => crate::types::error_type_of_reason(detail),
            Self::UnexpectedMediaUrl { .. } => Some(UNEXPECTED_MEDIA_ADDRESS),
            _ => None,
        }
    }

    /// What the failure means for the user (the bot has one sentence per kind).
    pub fn failure_kind(&self) -> FailureKind {
        self.error_type()
            .map_or(FailureKind::Other, FailureKind::from_error_type)
    }

    /// The failure a COMPLETED status reports (`error`, `error_type`), if it reports one.
    pub fn from_status(status: &QueueStatus) -> Option<Self> {
        if !status.is_failed() {
            return None;
        }
        let message = status
            .error
            .clone()
            .unwrap_or_else(|| "FAL reported an error without details".to_owned());
        let error_type = status.error_type.clone();
        count_failure("status", error_type.as_deref());
        Some(Self::Job {
            message: with_error_type(message, error_type.as_deref()),
            error_type,
        })
    }

    /// Whether repeating the same call may succeed (rate limits, server errors, lost connections).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Timeout
                | Self::Connect(_)
                | Self::Connection(_)
        )
    }

    pub(super) fn from_reqwest(error: reqwest::Error) -> Self {
        // Our resolver refused the address a media host resolved to: nothing was sent.
        if let Some(refused) = find_source::<NonPublicAddress>(&error) {
            return Self::UnexpectedMediaUrl {
                url: error.url().map(Url::to_string).unwrap_or_default(),
                reason: refused.to_string(),
            };
        }
        // A connect timeout is a connect error too: nothing was sent.
        if error.is_connect() {
            Self::Connect(error)
        } else if error.is_timeout() {
            Self::Timeout
        } else if error.is_decode() {
            Self::Decode(error.to_string())
        } else {
            Self::Connection(error)
        }
    }

    /// The typed error for a non-success answer.
    pub(super) fn from_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Self {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let detail = json
            .as_ref()
            .and_then(|v| v.get("detail"))
            .map(|d| ErrorDetail::from_value(d.clone()).to_human())
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("no details").to_owned()
                } else {
                    text.chars().take(300).collect()
                }
            });
        let queue_status = json
            .as_ref()
            .and_then(|v| v.get("status"))
            .and_then(Value::as_str);
        // FAL's category: `error_type` in the body, else the `x-fal-error-type` header (as FAL's
        // Python client reads them), or the `type` of a model error in `detail`.
        let explicit = json
            .as_ref()
            .and_then(|v| v.get("error_type"))
            .and_then(Value::as_str)
            .or_else(|| headers.get(HEADER_ERROR_TYPE).and_then(|v| v.to_str().ok()));
        let detail_type = json
            .as_ref()
            .and_then(|v| v.get("detail"))
            .map(|d| ErrorDetail::from_value(d.clone()));
        let error_type = pick_error_type(
            explicit,
            detail_type.as_ref().and_then(ErrorDetail::error_type),
        );
        if status.as_u16() == 422 || status.is_server_error() || error_type.is_some() {
            count_failure("answer", error_type.as_deref());
        }
        let detail = with_error_type(detail, error_type.as_deref());
        match status.as_u16() {
            401 | 403 => Self::Unauthorized {
                status: status.as_u16(),
            },
            422 => Self::Validation { detail },
            429 => Self::RateLimited {
                retry_after: headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
            },
            404 => Self::NotFound { detail },
            400 if queue_status == Some("ALREADY_COMPLETED") => Self::AlreadyCompleted,
            code if code >= 500 => Self::Server {
                status: code,
                detail,
                error_type,
            },
            code => Self::Http {
                status: code,
                detail,
                error_type,
            },
        }
    }
}

/// Counts a FAL failure by what it means (FAL's raw types are open-ended, so not a label).
fn count_failure(source: &'static str, error_type: Option<&str>) {
    let kind = error_type.map_or(FailureKind::Other, FailureKind::from_error_type);
    metrics::counter!("fal_failures_total", "source" => source, "kind" => kind.metric_label())
        .increment(1);
}

/// The resolver's refusal, found again in a reqwest error's sources.
#[derive(Debug)]
pub(super) struct NonPublicAddress {
    pub(super) host: String,
    pub(super) ip: IpAddr,
}

impl fmt::Display for NonPublicAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} resolves to {}, not a public address",
            self.host, self.ip
        )
    }
}

impl std::error::Error for NonPublicAddress {}

/// The first error of type `E` in `error`'s chain of sources.
fn find_source<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn error_answers_become_typed_errors() {
        let h = HeaderMap::new();
        let e = FalError::from_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &h,
            br#"{"detail":[{"loc":["body","prompt"],"msg":"Field required","type":"missing"}]}"#,
        );
        assert!(
            matches!(e, FalError::Validation { ref detail } if detail == "body.prompt: Field required [fal error_type=missing]"),
            "{e:?}"
        );
        assert_eq!(e.error_type(), Some("missing"));
        let e = FalError::from_response(
            StatusCode::BAD_REQUEST,
            &h,
            br#"{"status":"ALREADY_COMPLETED"}"#,
        );
        assert!(matches!(e, FalError::AlreadyCompleted));
        let mut h429 = HeaderMap::new();
        h429.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        let e = FalError::from_response(StatusCode::TOO_MANY_REQUESTS, &h429, b"");
        assert!(
            matches!(e, FalError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(3))
        );
        let e = FalError::from_response(StatusCode::BAD_GATEWAY, &h, b"<html>oops</html>");
        assert!(matches!(e, FalError::Server { status: 502, .. }));
        assert!(e.is_transient());
        let e = FalError::from_response(StatusCode::UNAUTHORIZED, &h, b"{}");
        assert!(matches!(e, FalError::Unauthorized { status: 401 }));
        assert!(!e.is_transient());
    }

    #[test]
    fn error_types_come_from_the_body_the_header_or_a_model_error() {
        let mut typed = HeaderMap::new();
        typed.insert(
            HEADER_ERROR_TYPE,
            HeaderValue::from_static("request_timeout"),
        );
        let e = FalError::from_response(
            StatusCode::GATEWAY_TIMEOUT,
            &typed,
            br#"{"detail":"Request timed out"}"#,
        );
        assert_eq!(e.error_type(), Some("request_timeout"));
        assert_eq!(e.failure_kind(), FailureKind::Busy);
        assert!(
            e.to_string().contains("[fal error_type=request_timeout]"),
            "{e}"
        );

        // The body wins over the header, as in FAL's Python client.
        let e = FalError::from_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &typed,
            br#"{"detail":"Runner disconnected","error_type":"runner_disconnected"}"#,
        );
        assert!(
            matches!(&e, FalError::Server { status: 503, error_type: Some(t), .. } if t == "runner_disconnected")
        );

        // A model error the user can act on names its kind, whatever the header says.
        let mut validation = HeaderMap::new();
        validation.insert(
            HEADER_ERROR_TYPE,
            HeaderValue::from_static("validation_error"),
        );
        let e = FalError::from_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &validation,
            br#"{"detail":[{"loc":["body","prompt"],"msg":"The content was flagged.","type":"content_policy_violation"}]}"#,
        );
        assert!(matches!(e, FalError::Validation { .. }));
        assert_eq!(e.failure_kind(), FailureKind::ContentPolicy);

        let status: QueueStatus = serde_json::from_value(serde_json::json!({
            "status": "COMPLETED", "error": "Runner disconnected", "error_type": "runner_disconnected"
        }))
        .unwrap();
        let e = FalError::from_status(&status).unwrap();
        assert!(
            matches!(&e, FalError::Job { error_type: Some(t), .. } if t == "runner_disconnected")
        );
        assert!(!e.is_transient());
    }
}
