//! For operators: `GET /healthz` (database reachable, how far each feed consumer is behind, and
//! whether one is too far behind) and `GET /metrics` (Prometheus text format).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use crate::store::feed::{self, ConsumerStatus};
use crate::store::Database;
use crate::telemetry;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// 200 `ok` when the database answers and every feed consumer keeps up, with each consumer's lag.
/// 503 `degraded`, with a reason per consumer, when a read model or reactor has left an event
/// unread for longer than `FEED_LAG_ALERT_SECS`: users then wait for their results and
/// notifications. (Restarting would not help it catch up: alert on it, do not restart on it.)
/// 503 `unavailable` when the database does not answer.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = ping(state.store.database()).await {
        tracing::warn!(error = %e, "health check: database unreachable");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "database": "unreachable"})),
        );
    }
    match state.feed.consumers(&projections::names()).await {
        Ok(consumers) => {
            let reasons = lag_alerts(&consumers, state.feed_lag_alert);
            let (code, status) = if reasons.is_empty() {
                (StatusCode::OK, "ok")
            } else {
                tracing::warn!(?reasons, "health check: feed consumers behind");
                (StatusCode::SERVICE_UNAVAILABLE, "degraded")
            };
            (
                code,
                Json(json!({
                    "status": status,
                    "reasons": reasons,
                    "database": "reachable",
                    "backend": state.store.database().backend_name(),
                    "consumers": consumers.iter().map(consumer_json).collect::<Vec<_>>(),
                })),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "health check: feed checkpoints unreadable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "database": "reachable",
                            "feed": "unreadable"})),
            )
        }
    }
}

/// One reason per consumer whose oldest unread event is older than `alert_after`. A rebuild's
/// shadow consumer replays old events by design and is not reported.
fn lag_alerts(consumers: &[ConsumerStatus], alert_after: Duration) -> Vec<String> {
    consumers
        .iter()
        .filter(|c| !feed::is_rebuild_consumer(&c.consumer))
        .filter_map(|c| {
            let age = c.lag.oldest_unread_age.filter(|age| *age > alert_after)?;
            Some(format!(
                "consumer {} is behind: oldest unread event {:.1} s old, {} unread (alert after \
                 {} s)",
                c.consumer,
                age.as_secs_f64(),
                c.lag.events_behind,
                alert_after.as_secs_f64()
            ))
        })
        .collect()
}

fn consumer_json(c: &ConsumerStatus) -> serde_json::Value {
    json!({
        "consumer": c.consumer,
        "position": c.position,
        "txid": c.txid,
        "updated_at": c.updated_at,
        "events_behind": c.lag.events_behind,
        "oldest_unread_seconds": c.lag.oldest_unread_age.map(|d| d.as_secs_f64()),
    })
}

/// Refreshes the feed-lag gauges from the checkpoints (so every instance reports the shared
/// truth), then renders every series.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match state.feed.consumers(&projections::names()).await {
        Ok(consumers) => {
            for c in consumers {
                let seconds = c.lag.oldest_unread_age.map_or(0.0, |d| d.as_secs_f64());
                telemetry::feed_lag(&c.consumer, c.lag.events_behind, seconds);
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: feed lag not refreshed"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn ping(db: &Database) -> Result<(), sqlx::Error> {
    match db {
        Database::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        Database::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
    }
}
