//! Telling users what happened: one notification per outcome event, delivered by the notifier
//! actor through a [`Notifier`] (the Telegram bot in production).
//!
//! The reactor keys each notification by the event that caused it, so duplicate webhooks (which
//! append no event) and replays after a restart never produce a second message.

use aggregates::GeneratedImage;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::work::WorkItem;
use super::{Outcome, WorkHandler};
use crate::store::StoreError;
use std::sync::Arc;

pub const KIND: &str = "notify";

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
}

impl Notification {
    pub fn owner(&self) -> i64 {
        match self {
            Self::TrainingCompleted { owner, .. }
            | Self::TrainingFailed { owner, .. }
            | Self::GenerationCompleted { owner, .. }
            | Self::GenerationFailed { owner, .. } => *owner,
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
}

impl WorkHandler for NotifyHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn concurrency(&self) -> usize {
        8
    }

    fn run<'a>(&'a self, item: &'a WorkItem) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(async move {
            let notification: Notification = item.payload()?;
            Ok(match self.notifier.notify(&notification).await {
                Ok(()) => Outcome::Done,
                Err(NotifyError::Transient(e)) => Outcome::Retry(e),
                Err(NotifyError::Permanent(e)) => Outcome::Failed(e),
            })
        })
    }
}
