//! The status poller: the fallback for a training whose webhook never arrives. It asks FAL about
//! each submitted training after a while, records the result through the same idempotent command
//! as the webhook, and fails (and cancels) trainings that pass the deadline.

use chrono::Utc;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::training::report_training_result;
use super::work::WorkItem;
use super::{Outcome, Services, WorkHandler, POLLER_ACTOR};
use crate::fal::FalError;
use crate::store::StoreError;
use aggregates::avatar::RequestOutcome;
use aggregates::AvatarStatus;

pub const KIND: &str = "watch";

/// A submitted training to watch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchPayload {
    pub request_id: String,
    pub status_url: String,
    pub response_url: String,
    pub cancel_url: String,
}

pub struct StatusPoller {
    pub services: Services,
}

impl WorkHandler for StatusPoller {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, item: &'a WorkItem) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(self.poll(item))
    }
}

impl StatusPoller {
    async fn poll(&self, item: &WorkItem) -> Result<Outcome, StoreError> {
        let s = &self.services;
        let job: WatchPayload = item.payload()?;
        let avatar = s.store.load(item.avatar_id).await?;
        let pending = avatar.status != AvatarStatus::Deleted
            && avatar.requests.get(&job.request_id) == Some(&RequestOutcome::Pending);
        if !pending {
            return Ok(Outcome::Done);
        }
        let waited = (Utc::now() - item.created_at).to_std().unwrap_or_default();
        if waited > s.settings.training_deadline {
            tracing::warn!(avatar_id = %item.avatar_id, request_id = %job.request_id,
                "training passed its deadline; cancelling");
            let _ = s.fal.cancel(&job.cancel_url).await;
            let minutes = s.settings.training_deadline.as_secs().div_ceil(60);
            report_training_result(
                s,
                POLLER_ACTOR,
                item.avatar_id,
                &job.request_id,
                Err(format!("FAL gave no result within {minutes} min")),
            )
            .await?;
            return Ok(Outcome::Done);
        }
        let later = Outcome::RetryAfter(s.settings.status_poll_every);
        match s.fal.status(&job.status_url, false).await {
            Ok(status) if status.is_completed() => {}
            Ok(_) => return Ok(later),
            Err(e) => {
                tracing::warn!(request_id = %job.request_id, error = %e, "status poll failed");
                return Ok(later);
            }
        }
        let result = match s.fal.result::<Value>(&job.response_url).await {
            Ok(output) => Ok(output),
            Err(
                e @ (FalError::Validation { .. } | FalError::Http { .. } | FalError::Server { .. }),
            ) => Err(format!("FAL reported the training failed: {e}")),
            Err(e) => {
                tracing::warn!(request_id = %job.request_id, error = %e, "fetching the result failed");
                return Ok(later);
            }
        };
        tracing::info!(avatar_id = %item.avatar_id, request_id = %job.request_id, ok = result.is_ok(),
            "poller found a finished training");
        report_training_result(
            s,
            POLLER_ACTOR,
            item.avatar_id,
            &job.request_id,
            result.as_ref().map_err(Clone::clone),
        )
        .await?;
        Ok(Outcome::Done)
    }
}
