//! Showing users how far their training is: the status poller hands each reading to a
//! [`ProgressSink`] (the Telegram bot's progress bar in production).
//!
//! Readings are a courtesy, not a record: a sink that cannot show one logs and drops it, and
//! the next poll brings a fresh one. Nothing here may fail or slow down the watch itself.

use futures::future::BoxFuture;
use uuid::Uuid;

use crate::fal::progress::Progress;

/// Where readings of running trainings go.
pub trait ProgressSink: Send + Sync + 'static {
    /// The training of `avatar_id` (owned by `owner`) stands at `progress`.
    fn training_progress<'a>(
        &'a self,
        avatar_id: Uuid,
        owner: i64,
        progress: &'a Progress,
    ) -> BoxFuture<'a, ()>;

    /// The avatar is gone: forget whatever shows its training.
    fn training_gone(&self, _avatar_id: Uuid) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// For running without a bot (tests, the CLI): readings go to the debug log.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn training_progress<'a>(
        &'a self,
        avatar_id: Uuid,
        owner: i64,
        progress: &'a Progress,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            tracing::debug!(%avatar_id, owner, percent = progress.percent, "training progress (no bot attached)");
        })
    }
}
