//! FAL's error answers and what a failure means: the `detail` shapes, the `error_type` kept
//! with a message, and the failure kinds the bot tells users.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The category to record for a failure: the `type` of a model error when it names something
/// the user can act on, else FAL's explicit `error_type`, else whatever `type` there is.
pub fn pick_error_type(explicit: Option<&str>, detail_type: Option<&str>) -> Option<String> {
    let explicit = explicit.map(str::trim).filter(|t| !t.is_empty());
    let detail_type = detail_type.map(str::trim).filter(|t| !t.is_empty());
    match detail_type {
        Some(kind) if FailureKind::from_error_type(kind) != FailureKind::Other => Some(kind),
        _ => explicit.or(detail_type),
    }
    .map(str::to_owned)
}

/// The marker a failure reason carries its FAL error type in; see [`with_error_type`].
const ERROR_TYPE_MARKER: &str = " [fal error_type=";

/// `message [fal error_type=TYPE]`: the reason recorded for a failure, so that the log, the
/// events (and the analytics reading them) keep FAL's category next to the readable text.
pub fn with_error_type(message: String, error_type: Option<&str>) -> String {
    match error_type.map(str::trim).filter(|t| !t.is_empty()) {
        Some(kind) if !message.contains(ERROR_TYPE_MARKER) => {
            format!("{message}{ERROR_TYPE_MARKER}{kind}]")
        }
        _ => message,
    }
}

/// The FAL error type a reason made by [`with_error_type`] carries.
pub fn error_type_of_reason(reason: &str) -> Option<&str> {
    let start = reason.rfind(ERROR_TYPE_MARKER)? + ERROR_TYPE_MARKER.len();
    let rest = &reason[start..];
    let kind = &rest[..rest.find(']')?];
    (!kind.is_empty()).then_some(kind)
}

/// What a failure means for the user, from FAL's error type; each kind has one short sentence
/// in the bot's texts (its [`FailureKind::text_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// FAL ran out of time or could not start or reach a worker; trying again later may work.
    Busy,
    /// The prompt or a picture was flagged by FAL's content checker.
    ContentPolicy,
    /// The model produced nothing usable (e.g. `no_media_generated`).
    NothingGenerated,
    /// The request was refused as invalid: our fault, not the user's.
    Rejected,
    /// The request was cancelled or its client went away.
    Cancelled,
    /// The result named a file at an address we do not fetch from (see `FalClient::check_media_url`).
    UnexpectedAddress,
    /// Anything else, including types this version does not know.
    Other,
}

impl FailureKind {
    /// The kind for one of FAL's error types (request errors and model errors alike).
    pub fn from_error_type(error_type: &str) -> Self {
        match error_type.trim() {
            "request_timeout"
            | "startup_timeout"
            | "runner_scheduling_failure"
            | "runner_connection_timeout"
            | "runner_disconnected"
            | "runner_connection_refused"
            | "runner_connection_error"
            | "runner_incomplete_response"
            | "runner_server_error"
            | "internal_error" => Self::Busy,
            "content_policy_violation" => Self::ContentPolicy,
            "no_media_generated" => Self::NothingGenerated,
            "client_disconnected" | "client_cancelled" => Self::Cancelled,
            "bad_request" => Self::Rejected,
            UNEXPECTED_MEDIA_ADDRESS => Self::UnexpectedAddress,
            _ => Self::Other,
        }
    }

    /// The kind a recorded failure reason names, [`FailureKind::Other`] when it names none.
    pub fn from_reason(reason: &str) -> Self {
        error_type_of_reason(reason).map_or(Self::Other, Self::from_error_type)
    }

    /// The bot's text for this kind (ru/en sentences live in `bot::texts`).
    pub fn text_key(self) -> &'static str {
        match self {
            Self::Busy => "fal_failure_busy",
            Self::ContentPolicy => "fal_failure_content_policy",
            Self::NothingGenerated => "fal_failure_nothing_generated",
            Self::Rejected => "fal_failure_rejected",
            Self::Cancelled => "fal_failure_cancelled",
            Self::UnexpectedAddress => "fal_failure_unexpected_address",
            Self::Other => "fal_failure_other",
        }
    }

    /// A bounded label for metrics (FAL's raw types are open-ended).
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::ContentPolicy => "content_policy",
            Self::NothingGenerated => "nothing_generated",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::UnexpectedAddress => "unexpected_address",
            Self::Other => "other",
        }
    }
}

/// Our own error type for a result that names a file off the media allow-list.
pub const UNEXPECTED_MEDIA_ADDRESS: &str = "unexpected_media_address";

/// Body of FAL's error answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub detail: ErrorDetail,
}

/// FAL's `detail`: a sentence, or a list of validation errors (422).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorDetail {
    Message(String),
    Validation(Vec<ValidationIssue>),
    /// Any other shape, kept as it came.
    Other(Value),
}

/// One validation error in a 422 `detail` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationIssue {
    /// Where: e.g. `["body", "prompt"]` or `["body", "loras", 0, "path"]`.
    #[serde(default)]
    pub loc: Vec<Value>,
    pub msg: String,
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl ValidationIssue {
    /// `body.loras.0.path`-style location.
    pub fn location(&self) -> String {
        self.loc
            .iter()
            .map(|part| match part {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}

impl ErrorDetail {
    pub fn from_value(value: Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or(Self::Other(value))
    }

    /// The `type` of the first typed validation entry (`content_policy_violation`, …).
    pub fn error_type(&self) -> Option<&str> {
        match self {
            Self::Validation(issues) => issues
                .iter()
                .map(|issue| issue.kind.as_str())
                .find(|kind| !kind.is_empty()),
            _ => None,
        }
    }

    /// One line a person can read: `body.prompt: Field required; …`.
    pub fn to_human(&self) -> String {
        match self {
            Self::Message(message) => message.clone(),
            Self::Validation(issues) if issues.is_empty() => "invalid input".to_owned(),
            Self::Validation(issues) => issues
                .iter()
                .map(|issue| {
                    let location = issue.location();
                    if location.is_empty() {
                        issue.msg.clone()
                    } else {
                        format!("{location}: {}", issue.msg)
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
            Self::Other(value) => value.to_string(),
        }
    }
}
