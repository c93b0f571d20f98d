//! Metrics: the Prometheus recorder and the names of everything Aisha counts, so call sites
//! record through one function each and `/metrics` lists every series from the start.
//!
//! Series (all counters unless noted):
//! - `commands_total{command, outcome}` — Avatar commands: `accepted`, `unchanged` (nothing to
//!   record, e.g. a duplicate), `rejected` (the domain refused), `conflict`, `error`;
//! - `fal_calls_total{op, endpoint, status, outcome}` (every attempt), `fal_retries_total{op}` — FAL HTTP calls (the FAL client);
//! - `webhook_verifications_total{result}` — FAL webhooks: `ok`, or why they were refused
//!   (`invalid_signature`, `stale`, `unsigned`, `malformed`, `keys_unavailable`);
//! - `telegram_sends_total{method, outcome}`, `telegram_retries_total{method}` — Bot API calls;
//! - `feed_lag_events{consumer}` (gauge) — events a feed consumer has yet to apply;
//! - `feed_lag_seconds{consumer}` (gauge) — age of the oldest event it has yet to apply;
//! - `feed_apply_delay_seconds{consumer}` (gauge) — commit to applied, for its last batch;
//! - `feed_events_applied_total{consumer}` — events a projection runner applied.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Outcome labels of `commands_total`.
pub mod outcome {
    pub const ACCEPTED: &str = "accepted";
    pub const UNCHANGED: &str = "unchanged";
    pub const REJECTED: &str = "rejected";
    pub const CONFLICT: &str = "conflict";
    pub const ERROR: &str = "error";
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle; the first call installs the recorder (no listener of its
/// own: `/metrics` on our HTTP server renders it). If some other recorder was installed first,
/// the handle renders an empty page rather than failing the service.
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = match PrometheusBuilder::new().install_recorder() {
                Ok(handle) => handle,
                Err(e) => {
                    tracing::warn!(error = %crate::telemetry::chain(&e), "metrics recorder not installed; /metrics will be empty");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            };
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!("commands_total", "Avatar commands by command and outcome");
    describe_counter!(
        "fal_calls_total",
        "FAL HTTP call attempts by operation, endpoint, status and outcome"
    );
    describe_counter!("fal_retries_total", "FAL HTTP calls retried, by operation");
    describe_counter!(
        "webhook_verifications_total",
        "FAL webhooks by verification result"
    );
    describe_counter!(
        "telegram_sends_total",
        "Telegram Bot API calls by method and outcome"
    );
    describe_counter!(
        "telegram_retries_total",
        "Telegram Bot API calls retried, by method"
    );
    describe_counter!(
        "telegram_sends_delayed_total",
        "Telegram messages held back by the send budgets"
    );
    describe_histogram!(
        "telegram_send_delay_seconds",
        Unit::Seconds,
        "How long a held-back Telegram message waited for the send budgets"
    );
    describe_gauge!("feed_lag_events", "Events a feed consumer has yet to apply");
    describe_gauge!(
        "feed_lag_seconds",
        Unit::Seconds,
        "Age of the oldest event a feed consumer has yet to apply"
    );
    describe_gauge!(
        "feed_apply_delay_seconds",
        Unit::Seconds,
        "Time from an event's commit to its projection, for the consumer's last batch"
    );
    describe_counter!(
        "feed_events_applied_total",
        "Events applied by a projection runner"
    );
    describe_counter!(
        "notifications_resent_total",
        "Notifications sent again after an attempt that may have reached the user was cut short"
    );
    describe_counter!(
        "work_panics_total",
        "Work handlers that panicked (the item is retried), by kind"
    );
    describe_counter!(
        "fal_jobs_cancelled_total",
        "FAL jobs we cancelled because nothing owned them any more, by reason"
    );
    describe_counter!(
        "fal_jobs_adopted_total",
        "FAL jobs whose submission was recorded from their webhook after the submitter died"
    );
    describe_counter!(
        "deadlines_enforced_total",
        "Trainings and generations failed by the deadline sweeper, by kind"
    );
    describe_counter!("work_items_pruned_total", "Finished work items deleted");
    describe_counter!(
        "fal_failures_total",
        "FAL job failures by where they were seen and their kind"
    );
    describe_counter!(
        "fal_media_refused_total",
        "Result files FAL named at an address off the media allow-list (never fetched)"
    );
    describe_counter!(
        "jwks_waits_timed_out_total",
        "Webhooks answered 503 because FAL's signing keys could not be had in time"
    );
    describe_counter!(
        "telegram_updates_total",
        "Telegram updates taken from the inbox, by outcome (handled, skipped, failed)"
    );
    describe_counter!(
        "telegram_updates_handled_again_total",
        "Telegram updates handled again because their first handling was interrupted"
    );
    describe_counter!(
        "telegram_sends_granted_total",
        "Bot API sends let through by the send budgets, by budgets (shared, local)"
    );
    // Zero-valued series, so dashboards and alerts see them before the first occurrence.
    metrics::counter!("notifications_resent_total").absolute(0);
    metrics::counter!("telegram_updates_handled_again_total").absolute(0);
    for result in ["ok", "invalid_signature", "foreign_target", "foreign_user"] {
        metrics::counter!("webhook_verifications_total", "result" => result).absolute(0);
    }
}

/// An error with its causes, outermost first (`a: b: c`), for logs.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Wrappers often repeat their cause's text; say each thing once.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Counts one work handler panic.
pub fn work_panicked(kind: &'static str) {
    metrics::counter!("work_panics_total", "kind" => kind).increment(1);
}

/// Counts one FAL job cancelled because nothing owns it; `reason` e.g. `deadline`, `deleted`.
pub fn fal_job_cancelled(reason: &'static str) {
    metrics::counter!("fal_jobs_cancelled_total", "reason" => reason).increment(1);
}

/// Counts one FAL job adopted from its webhook.
pub fn fal_job_adopted() {
    metrics::counter!("fal_jobs_adopted_total").increment(1);
}

/// Counts one operation failed by its deadline; `kind` is `training` or `generation`.
pub fn deadline_enforced(kind: &'static str) {
    metrics::counter!("deadlines_enforced_total", "kind" => kind).increment(1);
}

/// Counts pruned work items.
pub fn work_items_pruned(n: u64) {
    metrics::counter!("work_items_pruned_total").increment(n);
}

/// Counts one Avatar command.
pub fn command(command: &'static str, outcome: &'static str) {
    metrics::counter!("commands_total", "command" => command, "outcome" => outcome).increment(1);
}

/// Counts one Telegram Bot API call; `outcome` is e.g. `ok`, `error`, `rate_limited`.
pub fn telegram_send(method: &'static str, outcome: &'static str) {
    metrics::counter!("telegram_sends_total", "method" => method, "outcome" => outcome)
        .increment(1);
}

/// Counts one retried Telegram Bot API call.
pub fn telegram_retry(method: &'static str) {
    metrics::counter!("telegram_retries_total", "method" => method).increment(1);
}

/// Counts one message that waited `seconds` for its send budget.
pub fn telegram_send_delayed(seconds: f64) {
    metrics::counter!("telegram_sends_delayed_total").increment(1);
    metrics::histogram!("telegram_send_delay_seconds").record(seconds);
}

/// Counts one notification sent again after an interrupted attempt (the user may see it twice).
pub fn notification_resent() {
    metrics::counter!("notifications_resent_total").increment(1);
}

/// Records how far a feed consumer is behind.
pub fn feed_lag(consumer: &str, events_behind: i64, oldest_unread_seconds: f64) {
    let consumer = consumer.to_owned();
    metrics::gauge!("feed_lag_events", "consumer" => consumer.clone()).set(events_behind as f64);
    metrics::gauge!("feed_lag_seconds", "consumer" => consumer).set(oldest_unread_seconds);
}

/// Records a projection runner's committed batch.
pub fn feed_applied(consumer: &'static str, events: usize, delay_seconds: f64) {
    metrics::counter!("feed_events_applied_total", "consumer" => consumer).increment(events as u64);
    metrics::gauge!("feed_apply_delay_seconds", "consumer" => consumer).set(delay_seconds);
}
