//! A simulated job as the queue keeps it: where it stands, how it ended, FAL's error shapes, and
//! the paths that name it.

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::types::LogEntry;

use super::validate::Endpoint;

/// What a path under `/queue/` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum QueuePath {
    /// A model id, possibly with a sub-path: a submission target.
    Model(String),
    Status {
        app: String,
        id: String,
    },
    /// `…/status/stream`: the status as server-sent events.
    StatusStream {
        app: String,
        id: String,
    },
    Result {
        app: String,
        id: String,
    },
    Cancel {
        app: String,
        id: String,
    },
    Invalid,
}

/// Splits the part of a path after `/queue/`.
pub(super) fn parse_queue_path(rest: &str) -> QueuePath {
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) || segments.len() < 2 {
        return QueuePath::Invalid;
    }
    match segments.iter().position(|s| *s == "requests") {
        Some(at) if at >= 2 => {
            let app = segments[..at].join("/");
            let Some(id) = segments.get(at + 1).map(|s| s.to_string()) else {
                return QueuePath::Invalid;
            };
            match &segments[at + 2..] {
                [] => QueuePath::Result { app, id },
                ["status"] => QueuePath::Status { app, id },
                ["status", "stream"] => QueuePath::StatusStream { app, id },
                ["cancel"] => QueuePath::Cancel { app, id },
                _ => QueuePath::Invalid,
            }
        }
        Some(_) => QueuePath::Invalid,
        None => QueuePath::Model(rest.to_owned()),
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    InQueue,
    InProgress,
    Completed,
}

impl Phase {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::InQueue => "IN_QUEUE",
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
        }
    }
}

/// How a finished job ended.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    Output(Value),
    Error(JobError),
}

/// FAL's `error_type` for an input its model refused (a 422 with a `detail` list).
pub(super) const VALIDATION_ERROR: &str = "validation_error";

/// A job that finished with an error, as FAL reports one.
#[derive(Debug, Clone)]
pub(super) struct JobError {
    /// The HTTP status its result answers with.
    pub status: u16,
    /// The `detail` of that answer: a list of validation errors (422) or a sentence.
    pub detail: Value,
    /// The machine-readable category: `error_type` on the status (and on request errors' bodies),
    /// and the `x-fal-error-type` header of the result.
    pub error_type: &'static str,
}

impl JobError {
    /// The model refused the input: 422 with FastAPI's `detail` list.
    pub(super) fn validation(issues: Vec<Value>) -> Self {
        Self {
            status: 422,
            detail: Value::Array(issues),
            error_type: VALIDATION_ERROR,
        }
    }

    /// A failure of the request itself (the runner crashed, timed out…): a sentence, with the
    /// category FAL's "Request Error Types" give the status.
    pub(super) fn request(status: u16, message: &str) -> Self {
        let error_type = match status {
            400 => "bad_request",
            499 => "client_cancelled",
            500 => "runner_server_error",
            502 => "runner_incomplete_response",
            503 => "runner_disconnected",
            504 => "request_timeout",
            _ => "internal_error",
        };
        Self {
            status,
            detail: json!(message),
            error_type,
        }
    }

    pub(super) fn cancelled() -> Self {
        Self {
            status: 400,
            detail: json!("Request was cancelled"),
            error_type: "client_cancelled",
        }
    }

    /// A sentence for the status's `error`: the detail, or its validation errors one by one.
    pub(super) fn message(&self) -> String {
        match &self.detail {
            Value::String(text) => text.clone(),
            Value::Array(issues) => issues
                .iter()
                .map(|issue| {
                    let loc: Vec<String> = issue["loc"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|part| match part {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    format!(
                        "{}: {}",
                        loc.join("."),
                        issue["msg"].as_str().unwrap_or("invalid")
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        }
    }

    /// The body of the result: `{"detail"}` for a model's validation errors; request errors
    /// repeat their category as `error_type`, as FAL's request errors do.
    pub(super) fn body(&self) -> Value {
        if self.status == 422 {
            json!({ "detail": self.detail })
        } else {
            json!({ "detail": self.detail, "error_type": self.error_type })
        }
    }

    pub(super) fn response(&self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        response.headers_mut().insert(
            "x-fal-error-type",
            HeaderValue::from_static(self.error_type),
        );
        response
    }
}

/// One simulated request.
pub(super) struct Job {
    pub request_id: String,
    pub gateway_request_id: String,
    pub app_id: String,
    pub endpoint: Endpoint,
    pub input: Value,
    pub webhook_url: Option<String>,
    pub phase: Phase,
    pub submitted_at: Instant,
    /// The model id the job was submitted to, as in the queue path.
    pub model_id: String,
    /// When each webhook delivery attempt started (its POST about to go out).
    pub webhooks_sent: Vec<std::time::Instant>,
    /// When the receiver answered each attempt that got an answer, whatever its status.
    pub webhooks_answered: Vec<std::time::Instant>,
    pub logs: Vec<LogEntry>,
    pub outcome: Option<Outcome>,
    pub inference_time: Option<f64>,
    /// How long the files the job produces are kept, as its submission asked; `None`: kept.
    pub results_lifetime: Option<chrono::Duration>,
    /// The stored files in its output, until its payloads are deleted.
    pub output_files: Vec<String>,
    /// Whether its payloads (input and output) were deleted.
    pub payloads_deleted: bool,
    /// Moves this job may still make while jobs are paused.
    pub allowance: u64,
    pub(super) cancel: Arc<Notify>,
    pub(super) fails: bool,
    /// Bumped on every change of phase or logs, for status streams.
    pub(super) changed: watch::Sender<u64>,
}

impl Job {
    pub(super) fn log(&mut self, message: impl Into<String>) {
        self.logs.push(LogEntry {
            message: message.into(),
            level: Some("INFO".to_owned()),
            source: Some("USER".to_owned()),
            timestamp: Some(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)),
        });
        self.touch();
    }

    /// Tells status streams that something changed.
    pub(super) fn touch(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The app id a model id belongs to: its first two segments.
pub(super) fn app_id(model_id: &str) -> String {
    model_id.split('/').take(2).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use super::*;

    #[test]
    fn job_errors_take_fals_shapes() {
        let invalid = JobError::validation(vec![validate::issue(
            &[json!("body"), json!("loras"), json!(0), json!("path")],
            "Could not load LoRA weights from this URL",
            "value_error",
            None,
        )]);
        assert_eq!(
            invalid.message(),
            "body.loras.0.path: Could not load LoRA weights from this URL"
        );
        assert_eq!(invalid.body()["detail"][0]["type"], "value_error");
        assert!(invalid.body().get("error_type").is_none());
        let crashed = JobError::request(500, "boom");
        assert_eq!(
            crashed.body(),
            json!({"detail": "boom", "error_type": "runner_server_error"})
        );
        assert_eq!(crashed.message(), "boom");
        let response = crashed.response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()["x-fal-error-type"],
            "runner_server_error"
        );
        assert_eq!(JobError::request(504, "slow").error_type, "request_timeout");
    }

    #[test]
    fn queue_paths_split_into_app_and_request() {
        assert_eq!(
            parse_queue_path("fal-ai/flux-pro/v1.1-ultra-finetuned"),
            QueuePath::Model("fal-ai/flux-pro/v1.1-ultra-finetuned".into())
        );
        assert_eq!(
            parse_queue_path("fal-ai/flux-pro/requests/abc/status"),
            QueuePath::Status {
                app: "fal-ai/flux-pro".into(),
                id: "abc".into()
            }
        );
        assert_eq!(
            parse_queue_path("fal-ai/flux-lora/requests/abc"),
            QueuePath::Result {
                app: "fal-ai/flux-lora".into(),
                id: "abc".into()
            }
        );
        assert_eq!(
            parse_queue_path("fal-ai/flux-lora/requests/abc/status/stream"),
            QueuePath::StatusStream {
                app: "fal-ai/flux-lora".into(),
                id: "abc".into()
            }
        );
        assert_eq!(
            parse_queue_path("fal-ai/flux-lora/requests/abc/status/other"),
            QueuePath::Invalid
        );
        assert_eq!(
            parse_queue_path("fal-ai/flux-lora/requests/abc/cancel"),
            QueuePath::Cancel {
                app: "fal-ai/flux-lora".into(),
                id: "abc".into()
            }
        );
        assert_eq!(parse_queue_path("fal-ai"), QueuePath::Invalid);
        assert_eq!(parse_queue_path("fal-ai/x/requests"), QueuePath::Invalid);
        assert_eq!(parse_queue_path("fal-ai//x"), QueuePath::Invalid);
        assert_eq!(
            app_id("fal-ai/flux-pro/v1.1-ultra-finetuned"),
            "fal-ai/flux-pro"
        );
    }
}
