//! After a deletion: remove the avatar's photos from the photo store, so nothing of the avatar
//! is left behind (the original left them). FAL jobs still running are cancelled by `cancel`
//! items the reactor queues from the same event; items queued before that carry the cancel URL.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::work::WorkItem;
use super::{Outcome, Services, WorkHandler};
use crate::fal::FalError;
use crate::photos::avatar_prefix;
use crate::store::StoreError;

pub const KIND: &str = "cleanup";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CleanupPayload {
    /// Only in items queued before cancels became their own work.
    #[serde(default)]
    pub running_training_cancel_url: Option<String>,
}

pub struct CleanupHandler {
    pub services: Services,
}

impl WorkHandler for CleanupHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, item: &'a WorkItem) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(async move {
            let s = &self.services;
            let job: CleanupPayload = item.payload()?;
            if let Some(url) = &job.running_training_cancel_url {
                match s.fal.cancel(url).await {
                    Ok(()) | Err(FalError::AlreadyCompleted) | Err(FalError::NotFound { .. }) => {}
                    Err(e) if e.is_transient() => {
                        return Ok(Outcome::Retry(format!("cancel: {e}")))
                    }
                    Err(e) => {
                        tracing::warn!(avatar_id = %item.avatar_id, error = %e, "could not cancel the training")
                    }
                }
            }
            match s.photos.delete_prefix(&avatar_prefix(item.avatar_id)).await {
                Ok(removed) => {
                    tracing::info!(avatar_id = %item.avatar_id, removed, "deleted avatar's photos");
                    Ok(Outcome::Done)
                }
                Err(e) => Ok(Outcome::Retry(format!("deleting photos: {e}"))),
            }
        })
    }
}
