//! For operators: `GET /healthz` (database reachable, how far each feed consumer is behind, and
//! whether one is too far behind) and `GET /metrics` (Prometheus text format).
//!
//! The server answers both from a [`HealthCache`] that a background task refreshes about every
//! second, so asking them costs no database query however often anyone asks; [`router`] asks
//! the database on every call (for tests calling the router directly).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use crate::store::feed::ConsumerStatus;
use crate::store::runner;
use crate::store::Database;
use crate::telemetry;

/// Neither route reads a body.
const MAX_OPS_BODY_BYTES: usize = 1024;

/// The routes, querying the database on each call.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_OPS_BODY_BYTES))
        .with_state(state)
}

/// The routes, answered from `cache` (see [`spawn_health_cache`]).
pub fn cached_router(state: AppState, cache: HealthCache) -> Router {
    Router::new()
        .route("/healthz", get(cached_healthz))
        .route("/metrics", get(cached_metrics))
        .layer(DefaultBodyLimit::max(MAX_OPS_BODY_BYTES))
        .with_state(CachedOps {
            metrics: state.metrics,
            cache,
        })
}

/// The latest `/healthz` answer, refreshed in the background.
#[derive(Clone)]
pub struct HealthCache {
    latest: tokio::sync::watch::Receiver<Option<Arc<Snapshot>>>,
}

struct Snapshot {
    code: StatusCode,
    body: serde_json::Value,
    taken: Instant,
}

#[derive(Clone)]
struct CachedOps {
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    cache: HealthCache,
}

/// How long one refresh may take before the database counts as unreachable.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(5);
/// A snapshot this old means the refresher is gone: 503.
const STALE_AFTER: Duration = Duration::from_secs(30);

/// Starts the task that checks the database and the feed consumers every `every` (and refreshes
/// the feed-lag gauges of `/metrics`); abort the handle to stop it.
pub fn spawn_health_cache(
    state: AppState,
    every: Duration,
) -> (HealthCache, tokio::task::JoinHandle<()>) {
    let (tx, latest) = tokio::sync::watch::channel(None);
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let (code, body) = match tokio::time::timeout(REFRESH_TIMEOUT, check(&state)).await {
                Ok((code, body, consumers)) => {
                    if let Some(consumers) = consumers {
                        refresh_gauges(&consumers);
                    }
                    (code, body)
                }
                Err(_) => {
                    tracing::warn!("health check: the database did not answer within 5 s");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"status": "unavailable", "database": "not answering"}),
                    )
                }
            };
            let snapshot = Snapshot {
                code,
                body,
                taken: Instant::now(),
            };
            if tx.send(Some(Arc::new(snapshot))).is_err() {
                return;
            }
        }
    });
    (HealthCache { latest }, task)
}

async fn cached_healthz(State(ops): State<CachedOps>) -> impl IntoResponse {
    let mut latest = ops.cache.latest.clone();
    // Only right after start is there nothing yet.
    let snapshot = tokio::time::timeout(REFRESH_TIMEOUT, latest.wait_for(Option::is_some))
        .await
        .ok()
        .and_then(|r| r.ok().and_then(|s| s.clone()));
    match snapshot {
        Some(s) if s.taken.elapsed() <= STALE_AFTER => (s.code, Json(s.body.clone())),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "health": "not checked recently"})),
        ),
    }
}

/// Renders every series; the feed-lag gauges are as of the last refresh.
async fn cached_metrics(State(ops): State<CachedOps>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ops.metrics.render(),
    )
}

/// 200 `ok` when the database answers and every feed consumer keeps up, with each consumer's lag.
/// 503 `degraded`, with a reason per consumer, when a read model or reactor has left an event
/// unread for longer than `FEED_LAG_ALERT_SECS`: users then wait for their results and
/// notifications. (Restarting would not help it catch up: alert on it, do not restart on it.)
/// 503 `unavailable` when the database does not answer.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let (code, body, _) = check(&state).await;
    (code, Json(body))
}

/// The `/healthz` answer now, with the consumers when they could be read.
async fn check(state: &AppState) -> (StatusCode, serde_json::Value, Option<Vec<ConsumerStatus>>) {
    if let Err(e) = ping(state.store.database()).await {
        tracing::warn!(error = %crate::telemetry::chain(&e), "health check: database unreachable");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "database": "unreachable"}),
            None,
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
            let body = json!({
                "status": status,
                "reasons": reasons,
                "database": "reachable",
                "backend": state.store.database().backend_name(),
                "consumers": consumers.iter().map(consumer_json).collect::<Vec<_>>(),
            });
            (code, body, Some(consumers))
        }
        Err(e) => {
            tracing::warn!(error = %crate::telemetry::chain(&e), "health check: feed checkpoints unreadable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "unavailable", "database": "reachable",
                       "feed": "unreadable"}),
                None,
            )
        }
    }
}

/// One reason per consumer whose oldest unread event is older than `alert_after`. A rebuild's
/// shadow consumer replays old events by design and is not reported.
fn lag_alerts(consumers: &[ConsumerStatus], alert_after: Duration) -> Vec<String> {
    consumers
        .iter()
        .filter(|c| !runner::is_rebuild_consumer(&c.consumer))
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
        Ok(consumers) => refresh_gauges(&consumers),
        Err(e) => {
            tracing::warn!(error = %crate::telemetry::chain(&e), "metrics: feed lag not refreshed")
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

fn refresh_gauges(consumers: &[ConsumerStatus]) {
    for c in consumers {
        let seconds = c.lag.oldest_unread_age.map_or(0.0, |d| d.as_secs_f64());
        telemetry::feed_lag(&c.consumer, c.lag.events_behind, seconds);
    }
}

async fn ping(db: &Database) -> Result<(), sqlx::Error> {
    let mut conn = db.acquire().await?;
    conn.tx().execute("SELECT 1", vec![]).await.map(drop)
}
