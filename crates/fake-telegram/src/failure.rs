//! Telegram-style error answers (`{"ok":false,…}`), never a 5xx.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

/// An error the fake answers with, shaped like Telegram's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiFailure {
    pub code: u16,
    pub description: String,
    pub retry_after: Option<u32>,
}

impl ApiFailure {
    pub fn new(code: u16, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    /// A 400 whose description starts with "Bad Request: ", as teloxide expects for its error kinds.
    pub fn bad_request(detail: impl AsRef<str>) -> Self {
        Self::new(400, format!("Bad Request: {}", detail.as_ref()))
    }

    pub fn forbidden(detail: impl AsRef<str>) -> Self {
        Self::new(403, format!("Forbidden: {}", detail.as_ref()))
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized")
    }

    pub fn not_found() -> Self {
        Self::new(404, "Not Found")
    }

    pub fn too_large() -> Self {
        Self::new(413, "Request Entity Too Large")
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let mut body = json!({
            "ok": false,
            "error_code": self.code,
            "description": self.description,
        });
        if let Some(seconds) = self.retry_after {
            body["parameters"] = json!({ "retry_after": seconds });
        }
        // teloxide sleeps 10 s after any 5xx, so an injected server error is still sent as a 4xx.
        let status = StatusCode::from_u16(self.code)
            .ok()
            .filter(|s| s.is_client_error())
            .unwrap_or(StatusCode::BAD_REQUEST);
        (status, Json(body)).into_response()
    }
}
