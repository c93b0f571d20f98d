//! The status poller: the fallback for a training whose webhook never arrives. It asks FAL about
//! each submitted training after a while and records the result through the same idempotent
//! command as the webhook. A poll that finds the job still running is not a failed attempt;
//! errors back off but never end the watch: the deadline sweeper (`deadlines`) is what ends a
//! training that never finishes, whatever happened to this item.
//!
//! Each poll asks for the job's logs too, and hands how far the training is to the
//! [`ProgressSink`](super::ProgressSink), which shows it to the user.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::work::WorkItem;
use super::{by, ActorSettings, Outcome, Services, WorkHandler};
use crate::fal::{progress, FalError};
use crate::results::report_training_result;
use crate::store::StoreError;

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

    fn max_attempts(&self, _: &ActorSettings) -> Option<i32> {
        None
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
        if !avatar.training_request_pending(&job.request_id) {
            if avatar.status == aggregates::AvatarStatus::Deleted {
                // Deleted mid-training: no outcome will be told, so nothing else clears its bar.
                s.progress.training_gone(item.avatar_id).await;
            }
            return Ok(Outcome::Done);
        }
        let status = match s.fal.status(&job.status_url, true).await {
            // Logs are for the progress bar only: logs we cannot read must not stop the watch.
            Err(FalError::Decode(e)) => {
                tracing::warn!(avatar_id = %item.avatar_id, request_id = %job.request_id, error = %e,
                    "could not read a training's status with its logs; asking without");
                s.fal.status(&job.status_url, false).await
            }
            status => status,
        };
        match status {
            Ok(status) if status.is_completed() => {}
            Ok(status) => {
                // The item was enqueued as FAL accepted the job: the submission time, near enough.
                let params = avatar.training.as_ref().map(|run| &run.params);
                let reading =
                    progress::of_status(&status, params, item.created_at, chrono::Utc::now());
                tracing::debug!(avatar_id = %item.avatar_id, request_id = %job.request_id,
                    state = status.status.as_str(), percent = reading.percent, "training still running");
                s.progress
                    .training_progress(item.avatar_id, avatar.owner, &reading)
                    .await;
                return Ok(Outcome::RetryAfter(s.settings.status_poll_every));
            }
            Err(e) => {
                return Ok(Outcome::Retry(format!(
                    "status poll: {}",
                    crate::telemetry::chain(&e)
                )))
            }
        }
        let result = match s.fal.result::<Value>(&job.response_url).await {
            Ok(output) => Ok(output),
            Err(
                e @ (FalError::Validation { .. } | FalError::Http { .. } | FalError::Server { .. }),
            ) => Err(format!("FAL reported the training failed: {e}")),
            Err(e) => {
                return Ok(Outcome::Retry(format!(
                    "fetching the result: {}",
                    crate::telemetry::chain(&e)
                )))
            }
        };
        tracing::info!(avatar_id = %item.avatar_id, request_id = %job.request_id, ok = result.is_ok(),
            "poller found a finished training");
        report_training_result(
            &s.store,
            by::POLLER,
            item.avatar_id,
            &job.request_id,
            result.as_ref().map_err(Clone::clone),
        )
        .await?;
        Ok(Outcome::Done)
    }
}
