//! The HTTP server: health for operators now; FAL and Telegram webhooks, metrics and the admin
//! API join here as they are built.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::store::{AvatarStore, Database};

pub mod webhooks;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<AvatarStore>,
}

/// All routes, without a socket, so tests can call them directly.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match ping(state.store.database()).await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok", "database": "reachable"}))),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "database": "unreachable"})),
            )
        }
    }
}

async fn ping(db: &Database) -> Result<(), sqlx::Error> {
    match db {
        Database::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        Database::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
    }
}
