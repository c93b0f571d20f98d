//! The HTTP server: health and metrics for operators ([`ops`]), the audit and analytics API
//! ([`api`]), FAL's webhook ([`webhooks`]), and the files FAL fetches from us ([`files`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::store::feed::Feed;
use crate::store::AvatarStore;

pub mod api;
pub mod files;
pub mod ops;
pub mod server;
pub mod webhooks;

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<AvatarStore>,
    /// For feed lag in `/healthz` and `/metrics`.
    pub feed: Feed,
    /// The admin API's bearer token; the API is off without one.
    pub admin_token: Option<crate::secret::Secret>,
    /// Renders `/metrics` (see [`crate::telemetry::prometheus`]).
    pub metrics: PrometheusHandle,
    /// `/healthz` reports degraded when a feed consumer's oldest unread event is older than this
    /// (`FEED_LAG_ALERT_SECS`).
    pub feed_lag_alert: Duration,
}

/// All routes, without a socket, so tests can call them directly.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(ops::router(state.clone()))
        .merge(api::router(state))
}
