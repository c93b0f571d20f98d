//! How updates get into the inbox: Telegram's webhook, answered only once the update is
//! stored, or the one long poller, which confirms updates to Telegram (by asking for the next
//! offset) only once it has stored them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use teloxide::prelude::*;
use teloxide::{ApiError, RequestError};
use tokio::sync::{watch, Semaphore};

use super::{Inbox, Incoming};
use crate::bot::{send, TgBot, WEBHOOK_PATH};

/// Long-poll timeout; the HTTP client's own timeout (17 s in teloxide) must be longer.
const POLL_TIMEOUT_SECS: u32 = 10;
/// The header Telegram repeats the webhook's secret token in.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Wakes this instance's idle workers, one per new update (other instances find updates on
/// their next look).
#[derive(Clone)]
pub struct Wake {
    permits: Arc<Semaphore>,
    workers: usize,
}

impl Wake {
    pub fn new(workers: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(0)),
            workers,
        }
    }

    /// `n` updates arrived.
    pub fn arrived(&self, n: u64) {
        // More permits than workers would only wake them to find nothing.
        let room = self
            .workers
            .saturating_sub(self.permits.available_permits());
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(room);
        if n > 0 {
            self.permits.add_permits(n);
        }
    }

    /// Waits for an arrival, at most `idle`.
    pub async fn wait(&self, idle: Duration) {
        if let Ok(Ok(permit)) = tokio::time::timeout(idle, self.permits.acquire()).await {
            permit.forget();
        }
    }
}

#[derive(Clone)]
struct Webhook {
    inbox: Inbox,
    wake: Wake,
    secret: Arc<str>,
    /// Cleared when the instance stops: Telegram then retries on another one.
    accepting: Arc<AtomicBool>,
}

/// The webhook route: `POST /webhooks/telegram`, checked against `secret`.
pub fn webhook_router(
    inbox: Inbox,
    wake: Wake,
    secret: String,
    accepting: Arc<AtomicBool>,
) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(receive))
        .with_state(Webhook {
            inbox,
            wake,
            secret: secret.into(),
            accepting,
        })
}

async fn receive(State(hook): State<Webhook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let given = headers
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !same_secret(given, hook.secret.as_bytes()) {
        return StatusCode::UNAUTHORIZED;
    }
    if !hook.accepting.load(Ordering::Acquire) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let incoming = match Incoming::from_body(&body) {
        Ok(incoming) => incoming,
        Err(e) => {
            // Not an update at all: Telegram never sends one, so retrying would not help.
            tracing::warn!(error = %crate::telemetry::chain(&e), bytes = body.len(), "a webhook body that is not an update");
            return StatusCode::BAD_REQUEST;
        }
    };
    match hook.inbox.keep(std::slice::from_ref(&incoming)).await {
        Ok(new) => {
            if new == 0 {
                tracing::debug!(
                    update_id = incoming.update_id,
                    "a duplicated update, kept once"
                );
            }
            hook.wake.arrived(new);
            StatusCode::OK
        }
        Err(e) => {
            // Not acknowledged: Telegram delivers it again.
            tracing::error!(update_id = incoming.update_id, error = %crate::telemetry::chain(&e),
                "could not keep a Telegram update; Telegram will retry");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// Compares in time independent of where the inputs differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Long-polls Telegram into the inbox until `stop`. Only the instance holding the poller role
/// runs this; the offset advances past an update only once it is stored.
pub async fn poll(bot: TgBot, inbox: Inbox, wake: Wake, mut stop: watch::Receiver<bool>) {
    if let Err(e) = send::retrying("deleteWebhook", || bot.delete_webhook().send()).await {
        tracing::warn!(error = %crate::telemetry::chain(&e), "could not delete the webhook before polling");
    }
    let mut offset: i32 = 0;
    let mut failures: u32 = 0;
    loop {
        let request = bot
            .get_updates()
            .offset(offset)
            .timeout(POLL_TIMEOUT_SECS)
            .send();
        let updates = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            updates = request => updates,
        };
        let updates = match updates {
            Ok(updates) => {
                failures = 0;
                updates
            }
            Err(e) => {
                failures += 1;
                match &e {
                    RequestError::Api(ApiError::TerminatedByOtherGetUpdates) => {
                        tracing::warn!("another getUpdates is running for this bot")
                    }
                    _ => {
                        tracing::warn!(error = %crate::telemetry::chain(&e), failures, "getUpdates failed; retrying")
                    }
                }
                let backoff = Duration::from_millis(250 * u64::from(failures.min(20)));
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                continue;
            }
        };
        if updates.is_empty() {
            continue;
        }
        let mut incoming = Vec::with_capacity(updates.len());
        for update in &updates {
            match Incoming::from_update(update) {
                Ok(u) => incoming.push(u),
                Err(e) => {
                    tracing::error!(update_id = update.id.0, error = %crate::telemetry::chain(&e),
                    "could not serialise an update for the inbox; it is dropped")
                }
            }
        }
        // Until this commits the offset stays: the same updates come again.
        loop {
            match inbox.keep(&incoming).await {
                Ok(new) => {
                    wake.arrived(new);
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %crate::telemetry::chain(&e),
                        "could not keep polled updates; trying again");
                    tokio::select! {
                        _ = stop.wait_for(|stop| *stop) => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        let last = updates.iter().map(|u| u.id.0).max().unwrap_or(0);
        offset = i32::try_from(last).unwrap_or(i32::MAX).saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}
