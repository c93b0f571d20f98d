//! The audit and analytics API under `/api/`, for auditors and analysts: an avatar's events and
//! its state at any sequence, and daily analytics as JSON or CSV.
//!
//! Every route needs `Authorization: Bearer <ADMIN_TOKEN>`. Without `ADMIN_TOKEN` the API does
//! not exist (404), so a forgotten setting never opens it.

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use projections::analytics;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::AppState;
use crate::audit;
use crate::store::StoreError;

/// The longest analytics range one request may ask for, in days.
pub const MAX_RANGE_DAYS: i64 = 3_660;

/// The admin routes; empty (so every `/api/` path is 404) when no admin token is configured.
pub fn router(state: AppState) -> Router {
    if state.admin_token.is_none() {
        return Router::new();
    }
    Router::new()
        .route("/api/avatars/{avatar_id}/events", get(events))
        .route("/api/avatars/{avatar_id}/state", get(state_at))
        .route("/api/analytics/daily", get(daily_json))
        .route("/api/analytics/daily.csv", get(daily_csv))
        .route("/api/analytics/views/{view}", get(view_csv))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
        .with_state(state)
}

/// What the API answers when it cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    /// Logged in full; the client only learns that it failed.
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Internal(crate::telemetry::chain(&e))
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::from(StoreError::from(e))
    }
}

impl From<projections::ProjectionError> for ApiError {
    fn from(e: projections::ProjectionError) -> Self {
        Self::Internal(crate::telemetry::chain(&e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "admin API request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Lets a request through only with the configured bearer token.
async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = state.admin_token.as_ref().map(|t| t.expose()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let refusal = match bearer(request.headers()) {
        None => Some("missing bearer token"),
        Some(given) if !same_token(given, expected) => Some("wrong bearer token"),
        Some(_) => None,
    };
    if let Some(reason) = refusal {
        // The token itself is never logged, right or wrong.
        tracing::warn!(path = %request.uri().path(), method = %request.method(), reason,
            "admin API request refused");
        return ApiError::Unauthorized.into_response();
    }
    next.run(request).await
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares in constant time; hashing first hides the expected token's length as well.
fn same_token(given: &str, expected: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    given.ct_eq(&expected).into()
}

fn avatar_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::BadRequest(format!("`{raw}` is not an avatar id")))
}

/// `GET /api/avatars/{id}/events`: every event with who issued it and when.
async fn events(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = avatar_id(&raw)?;
    let history = state.store.history(id).await?;
    if history.is_empty() {
        return Err(ApiError::NotFound(format!("no events for avatar {id}")));
    }
    Ok(Json(json!({ "avatar_id": id, "events": history })))
}

#[derive(Debug, Deserialize)]
struct AtQuery {
    at: Option<u64>,
}

/// `GET /api/avatars/{id}/state?at=N`: the avatar right after event N (the latest without `at`).
async fn state_at(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Query(query): Query<AtQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let id = avatar_id(&raw)?;
    match audit::state_at(&state.store, id, query.at).await? {
        Some(found) => Ok(Json(found)),
        None => Err(ApiError::NotFound(match query.at {
            Some(at) => format!("avatar {id} has no event {at}"),
            None => format!("no events for avatar {id}"),
        })),
    }
}

#[derive(Debug, Deserialize)]
struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

impl RangeQuery {
    fn parse(&self) -> Result<(NaiveDate, NaiveDate), ApiError> {
        let day = |name: &str, value: &Option<String>| {
            let value = value.as_deref().ok_or_else(|| {
                ApiError::BadRequest(format!("`{name}` (YYYY-MM-DD) is required"))
            })?;
            NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .map_err(|_| ApiError::BadRequest(format!("`{name}` must be a date (YYYY-MM-DD)")))
        };
        let (from, to) = (day("from", &self.from)?, day("to", &self.to)?);
        if from > to {
            return Err(ApiError::BadRequest("`from` is after `to`".into()));
        }
        if (to - from).num_days() >= MAX_RANGE_DAYS {
            return Err(ApiError::BadRequest(format!(
                "at most {MAX_RANGE_DAYS} days per request"
            )));
        }
        Ok((from, to))
    }
}

async fn summary(state: &AppState, range: &RangeQuery) -> Result<analytics::Summary, ApiError> {
    let (from, to) = range.parse()?;
    let mut conn = state.store.database().acquire().await?;
    Ok(analytics::summary(&mut conn.tx(), from, to).await?)
}

/// `GET /api/analytics/daily?from=…&to=…`: per-day counts and totals, as JSON.
async fn daily_json(
    State(state): State<AppState>,
    Query(range): Query<RangeQuery>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(summary(&state, &range).await?))
}

/// `GET /api/analytics/daily.csv?from=…&to=…`: one line per day, for spreadsheets.
async fn daily_csv(
    State(state): State<AppState>,
    Query(range): Query<RangeQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let summary = summary(&state, &range).await?;
    let filename = format!(
        "attachment; filename=\"aisha-daily-{}-{}.csv\"",
        summary.from, summary.to
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        analytics::to_csv(&summary),
    ))
}

/// `GET /api/analytics/views/{view}?from=…&to=…`: one of the analytics views (packs, frames,
/// upscales, …) as CSV; the name must be one of `projections::analytics::VIEWS`.
async fn view_csv(
    State(state): State<AppState>,
    Path(view): Path<String>,
    Query(range): Query<RangeQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let view = view.strip_suffix(".csv").unwrap_or(&view).to_owned();
    let (from, to) = range.parse()?;
    let mut conn = state.store.database().acquire().await?;
    let Some(csv) = analytics::view_csv(&mut conn.tx(), &view, from, to).await? else {
        let known: Vec<&str> = analytics::VIEWS.iter().map(|v| v.name).collect();
        return Err(ApiError::NotFound(format!(
            "no view `{view}`; the views are {}",
            known.join(", ")
        )));
    };
    let filename = format!("attachment; filename=\"aisha-{view}-{from}-{to}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        csv,
    ))
}
