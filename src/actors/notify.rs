//! Telling users what happened: one notification per outcome event, delivered by the notifier
//! actor through a [`Notifier`] (the Telegram bot in production).
//!
//! The reactor keys each notification by the event that caused it, so duplicate webhooks (which
//! append no event) and replays after a restart never produce a second message.
//!
//! Telegram has no idempotency key, so delivery is at least once: the item is marked `sending`
//! before the call, and an item claimed again in that phase (the process died or the call failed
//! after it began) is sent again — counted and logged, since that user may see the message
//! twice. Losing a notification would be worse than repeating one.

use std::sync::Arc;

use aggregates::GeneratedImage;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::work::{WorkItem, WorkQueue};
use super::{Outcome, WorkHandler};
use crate::store::StoreError;
use crate::telemetry;

pub const KIND: &str = "notify";

/// The phase of an item whose delivery has begun and whose outcome is not yet recorded.
pub const PHASE_SENDING: &str = "sending";

/// Something a user should hear about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notification {
    TrainingCompleted {
        owner: i64,
        avatar_id: Uuid,
    },
    TrainingFailed {
        owner: i64,
        avatar_id: Uuid,
        reason: String,
    },
    GenerationCompleted {
        owner: i64,
        avatar_id: Uuid,
        generation_id: Uuid,
        images: Vec<GeneratedImage>,
    },
    GenerationFailed {
        owner: i64,
        avatar_id: Uuid,
        generation_id: Uuid,
        reason: String,
    },
    /// Credits held for paid work came back to the balance because the work was not delivered.
    CreditsReturned {
        owner: i64,
        avatar_id: Uuid,
        credits: u32,
        reason: aggregates::ReleaseReason,
        /// The balance right after the credits came back.
        available: u64,
    },
}

impl Notification {
    pub fn owner(&self) -> i64 {
        match self {
            Self::TrainingCompleted { owner, .. }
            | Self::TrainingFailed { owner, .. }
            | Self::GenerationCompleted { owner, .. }
            | Self::GenerationFailed { owner, .. }
            | Self::CreditsReturned { owner, .. } => *owner,
        }
    }
}

/// Why a notification could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Worth another try later (network, rate limit).
    #[error("transient: {0}")]
    Transient(String),
    /// Will never work (the user blocked the bot, the chat is gone).
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Delivers notifications to users.
pub trait Notifier: Send + Sync + 'static {
    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), NotifyError>>;
}

/// A notifier for running without a bot: writes each notification to the log.
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            tracing::info!(
                owner = notification.owner(),
                ?notification,
                "notification (no bot attached)"
            );
            Ok(())
        })
    }
}

pub struct NotifyHandler {
    pub notifier: Arc<dyn Notifier>,
    pub queue: WorkQueue,
}

impl WorkHandler for NotifyHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    // Sending is mostly waiting (for FAL's image, for Telegram, for the send budget): a burst
    // of results goes out faster with more of it side by side.
    fn concurrency(&self) -> usize {
        16
    }

    fn run<'a>(&'a self, item: &'a WorkItem) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(async move {
            let notification: Notification = item.payload()?;
            if item.phase.as_deref() == Some(PHASE_SENDING) {
                telemetry::notification_resent();
                tracing::warn!(
                    owner = notification.owner(),
                    attempt = item.attempts,
                    "an earlier delivery was cut short after it began; sending again, so the user may see this twice"
                );
            }
            self.queue.set_phase(item, Some(PHASE_SENDING)).await?;
            Ok(match self.notifier.notify(&notification).await {
                Ok(()) => Outcome::Done,
                // The phase stays: a timeout or an album cut short may still have reached
                // the user, so the next attempt is counted as a possible repeat.
                Err(NotifyError::Transient(e)) => Outcome::Retry(e),
                Err(NotifyError::Permanent(e)) => Outcome::Failed(e),
            })
        })
    }
}
