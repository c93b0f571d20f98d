//! Cancelling FAL jobs that nothing owns any more: one we gave up on at its deadline, one whose
//! avatar was deleted, one whose submission the avatar refused. A paid job must not run on
//! unseen, so the cancel is retried until FAL confirms it or says the job already finished.
//! Then FAL is asked to forget it (`forget`): a job nothing recorded is deleted there too.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::forget::{self, ForgetPayload, Subject};
use super::work::WorkItem;
use super::{ActorSettings, Outcome, Services, WorkHandler};
use crate::fal::FalError;
use crate::store::StoreError;
use crate::telemetry;

pub const KIND: &str = "cancel";

/// Why a job is being cancelled, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The training or generation passed its deadline.
    Deadline,
    /// The avatar was deleted while the job ran.
    Deleted,
    /// FAL accepted the job but the avatar refused to record it.
    Refused,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deadline => "deadline",
            Self::Deleted => "deleted",
            Self::Refused => "refused",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CancelPayload {
    pub cancel_url: String,
    pub reason: CancelReason,
}

/// The work-item key of the cancel of one job, so the same job is never queued twice.
pub fn key(cancel_url: &str) -> String {
    format!("cancel:{cancel_url}")
}

pub struct CancelHandler {
    pub services: Services,
}

impl WorkHandler for CancelHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    // Retried until FAL answers; the backoff grows to its longest pause.
    fn max_attempts(&self, _: &ActorSettings) -> Option<i32> {
        None
    }

    fn run<'a>(&'a self, item: &'a WorkItem) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(async move {
            let job: CancelPayload = item.payload()?;
            match self.services.fal.cancel(&job.cancel_url).await {
                Ok(()) => {
                    telemetry::fal_job_cancelled(job.reason.as_str());
                    tracing::info!(avatar_id = %item.avatar_id, reason = job.reason.as_str(),
                        "cancelled a FAL job nothing owns any more");
                    self.forget(item, &job).await?;
                    Ok(Outcome::Done)
                }
                Err(FalError::AlreadyCompleted) => {
                    tracing::info!(avatar_id = %item.avatar_id, reason = job.reason.as_str(),
                        "the FAL job to cancel had already finished");
                    self.forget(item, &job).await?;
                    Ok(Outcome::Done)
                }
                Err(FalError::NotFound { .. }) => {
                    tracing::info!(avatar_id = %item.avatar_id, reason = job.reason.as_str(),
                        "FAL does not know the job to cancel");
                    Ok(Outcome::Done)
                }
                Err(e) => Ok(Outcome::Retry(format!("cancel: {}", telemetry::chain(&e)))),
            }
        })
    }
}

impl CancelHandler {
    /// Queues the deletion of the cancelled job's payloads; a job the avatar recorded has its
    /// deletion queued already (with what it must keep first), and is not queued again.
    async fn forget(&self, item: &WorkItem, job: &CancelPayload) -> Result<(), StoreError> {
        let Some((request_id, status_url)) = forget::request_of(&job.cancel_url) else {
            return Ok(());
        };
        let payload = ForgetPayload {
            request_id,
            status_url,
            of: Subject::Orphan,
        };
        forget::enqueue_now(&self.services, item.avatar_id, &payload).await
    }
}
