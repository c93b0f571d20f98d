//! Calling the Bot API robustly: network errors and flood waits are retried a few times, every
//! call is counted, and errors are classified for the notifier (try later, or never again).
//!
//! Messages go through [`sending`], which also keeps them within the [`SendLimiter`]'s budgets;
//! edits, callback answers and downloads are not counted by Telegram and use [`retrying`] alone.

use std::future::Future;
use std::time::Duration;

use teloxide::types::ChatId;
use teloxide::{ApiError, RequestError};

use super::limiter::SendLimiter;
use crate::telemetry;

/// Attempts per call, the first included.
const ATTEMPTS: u32 = 4;
/// First pause between attempts; doubles each time.
const BACKOFF: Duration = Duration::from_millis(250);
/// A flood wait longer than this is not waited out inside one handler.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Whether an error may go away by itself.
pub fn is_transient(error: &RequestError) -> bool {
    match error {
        RequestError::Network(_) | RequestError::Io(_) | RequestError::RetryAfter(_) => true,
        // An HTML error page from a proxy in front of the Bot API.
        RequestError::InvalidJson { .. } => true,
        // Telegram's own 5xx descriptions are not in teloxide's list.
        RequestError::Api(ApiError::Unknown(_)) => true,
        RequestError::Api(_) | RequestError::MigrateToChatId(_) => false,
    }
}

/// Whether an error means this chat will never accept messages from the bot again.
pub fn is_unreachable_chat(error: &RequestError) -> bool {
    matches!(
        error,
        RequestError::Api(
            ApiError::BotBlocked
                | ApiError::ChatNotFound
                | ApiError::UserNotFound
                | ApiError::UserDeactivated
                | ApiError::BotKicked
                | ApiError::BotKickedFromSupergroup
                | ApiError::BotKickedFromChannel
                | ApiError::CantInitiateConversation
                | ApiError::CantTalkWithBots
                | ApiError::GroupDeactivated
        )
    )
}

fn outcome(error: &RequestError) -> &'static str {
    match error {
        RequestError::RetryAfter(_) => "rate_limited",
        RequestError::Network(_) | RequestError::Io(_) => "network_error",
        _ if is_unreachable_chat(error) => "unreachable",
        _ => "error",
    }
}

/// Runs `call` until it succeeds, fails for good, or runs out of attempts.
pub async fn retrying<T, F, Fut>(method: &'static str, mut call: F) -> Result<T, RequestError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RequestError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => {
                telemetry::telegram_send(method, "ok");
                return Ok(value);
            }
            Err(error) if attempt < ATTEMPTS && is_transient(&error) => {
                let pause = match &error {
                    RequestError::RetryAfter(after) => after.duration().min(MAX_RETRY_AFTER),
                    _ => BACKOFF * 2u32.pow(attempt - 1),
                };
                telemetry::telegram_retry(method);
                tracing::warn!(method, attempt, error = %telemetry::chain(&error), ?pause, "Telegram call failed; retrying");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            Err(error) => {
                telemetry::telegram_send(method, outcome(&error));
                return Err(error);
            }
        }
    }
}

/// Sends `cost` messages to `chat` with `call`, retried like [`retrying`]: every attempt first
/// waits for its slot in the chat's and the overall budget, and a 429 holds the chat back for
/// as long as Telegram asks (on every instance, when the budgets are shared).
pub async fn sending<T, F, Fut>(
    limiter: &SendLimiter,
    chat: ChatId,
    cost: u32,
    method: &'static str,
    mut call: F,
) -> Result<T, RequestError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RequestError>>,
{
    retrying(method, || {
        let attempt = call();
        async move {
            limiter.acquire(chat, cost).await;
            let result = attempt.await;
            if let Err(RequestError::RetryAfter(after)) = &result {
                // Every instance holds back, not only the one Telegram answered.
                limiter.flood_wait(chat, after.duration()).await;
            }
            result
        }
    })
    .await
}
