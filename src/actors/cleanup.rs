//! After a deletion: remove the avatar's photos from the photo store — and with them, under the
//! same prefix, our copies of its model and images and any training archive we served — so
//! nothing of the avatar is left behind (the original left them). FAL jobs still running are
//! cancelled by `cancel` items the reactor queues from the same event (items queued before that
//! carry the cancel URL). Every FAL request in the avatar's history is queued to be deleted at
//! FAL (`forget`), whether or not its deletion ran before: requests recorded before FAL was
//! asked to forget anything are in the history too, and their ids stay readable after the
//! avatar's key is gone.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::forget::{self, ForgetPayload, Subject};
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
                        tracing::warn!(avatar_id = %item.avatar_id, error = %crate::telemetry::chain(&e), "could not cancel the training")
                    }
                }
            }
            let mut requests = 0;
            for entry in s.store.history(item.avatar_id).await? {
                let Some(payload) = forget::for_event(&entry.event) else {
                    continue;
                };
                // The prefix delete below takes any archive with it.
                let payload = match payload.of {
                    Subject::Training { .. } => ForgetPayload {
                        of: Subject::Training { archive_key: None },
                        ..payload
                    },
                    _ => payload,
                };
                forget::enqueue_now(s, item.avatar_id, &payload).await?;
                requests += 1;
            }
            tracing::info!(avatar_id = %item.avatar_id, requests, "deletion of the avatar's FAL requests queued");
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
