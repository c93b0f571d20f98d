//! The training actor's work: pack the avatar's photos into a zip, hand it to FAL, submit the
//! trainer with the avatar's parameters and our webhook, and record the request id.
//!
//! When FAL can reach us, the archive is stored under the avatar's prefix and FAL fetches it by
//! a signed URL of ours that expires at the training deadline; it is deleted when the training
//! is over (`forget`) or with the avatar, and nothing of the photos is uploaded to FAL at all.
//! Without a URL FAL can reach, the archive is uploaded to FAL's storage, which deletes it at
//! the training deadline. Either way the trainer's output files are asked to expire a day past
//! the deadline, a backstop for the deletion at FAL that follows our copy (`copies`).
//!
//! A FAL submission is paid work and not idempotent. Entering it is a compare-and-set on the
//! work item (phase `submitting`) that only the current claimant can win, and the submission
//! with its recording runs to the end even if the claim is lost meanwhile, so a job FAL took is
//! always recorded (or, if the avatar refuses it, cancelled). An item found in `submitting`
//! again means the submitter died or stalled with the outcome unknown: it is never resubmitted;
//! the job's webhook names the avatar, so its result is adopted when it arrives (see
//! `http::webhooks`), and the deadline sweeper fails the training if nothing ever comes.

use aggregates::presets::TrainerParams;
use aggregates::{Action, Actor, AvatarError, Command};
use chrono::Utc;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cancel::{self, CancelPayload, CancelReason};
use super::copies;
use super::work::WorkItem;
use super::{by, Outcome, Services, WorkHandler};
use crate::fal::types::SubmitResponse;
use crate::fal::FalError;
use crate::photos::archive::TrainingArchive;
use crate::store::StoreError;
use crate::telemetry;

pub const KIND: &str = "train";
/// The phase of an item whose paid submission has begun.
pub const PHASE_SUBMITTING: &str = "submitting";

/// What the reactor hands over from `TrainingStarted`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainPayload {
    pub endpoint: String,
    pub params: TrainerParams,
}

pub struct TrainingHandler {
    pub services: Services,
}

impl WorkHandler for TrainingHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn concurrency(&self) -> usize {
        2
    }

    fn run<'a>(&'a self, item: &'a WorkItem) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(self.train(item))
    }

    fn give_up<'a>(&'a self, item: &'a WorkItem, error: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if item.phase.is_some() {
                // A submission may be running at FAL: its webhook or the deadline ends it.
                return;
            }
            let reason = format!("could not start the training: {error}");
            if let Err(e) = fail_before_submission(&self.services, item.avatar_id, &reason).await {
                tracing::error!(avatar_id = %item.avatar_id, error = %telemetry::chain(&e), "could not record the failed training");
            }
        })
    }
}

impl TrainingHandler {
    async fn train(&self, item: &WorkItem) -> Result<Outcome, StoreError> {
        let s = &self.services;
        let payload: TrainPayload = item.payload()?;
        let avatar = s.store.load(item.avatar_id).await?;
        if avatar.training_awaiting_submission().is_none() {
            // Deleted, already submitted (a replay, or adopted from the webhook), or failed.
            return Ok(Outcome::Done);
        }
        if item.phase.is_some() {
            if item.attempts == 0 {
                tracing::warn!(avatar_id = %item.avatar_id,
                    "a training submission was cut short before its outcome was recorded; \
                     not resubmitting, waiting for FAL's webhook or the deadline");
            }
            return Ok(Outcome::RetryAfter(s.settings.status_poll_every));
        }

        let archive = match TrainingArchive::build(&s.photos, &avatar.photos).await {
            Ok(a) => a,
            Err(e) => return Ok(Outcome::Retry(format!("packing photos: {e}"))),
        };
        // The archive is needed only while the training may still read it: past the deadline
        // we cancel the training.
        let until = Utc::now()
            + chrono::Duration::from_std(s.settings.training_deadline).unwrap_or_default();
        let seq = item.key.rsplit(':').next().unwrap_or("0");
        let key = crate::photos::store::archive_key(item.avatar_id, &format!("training-{seq}"));
        let served = match s.webhooks.file_url(&key, until) {
            Some(url) => match s.photos.put_file(&key, archive.path()).await {
                Ok(()) => Some(Ok(url)),
                Err(e) => return Ok(Outcome::Retry(format!("storing the archive: {e}"))),
            },
            None => None,
        };
        let uploaded = match served {
            Some(served) => served,
            None => {
                s.fal
                    .upload_expiring(
                        archive.path().to_path_buf(),
                        "application/zip",
                        "photos.zip",
                        s.settings.training_deadline,
                    )
                    .await
            }
        };
        let archive_url = match uploaded {
            Ok(url) => url,
            Err(e) if e.is_transient() => {
                return Ok(Outcome::Retry(format!("upload: {}", telemetry::chain(&e))))
            }
            Err(e) => {
                fail_before_submission(s, item.avatar_id, &format!("upload to FAL failed: {e}"))
                    .await?;
                return Ok(Outcome::Failed(e.to_string()));
            }
        };
        drop(archive);

        // The paid step: only one claimant ever gets past this line for this item.
        s.queue
            .enter_once(item, PHASE_SUBMITTING, s.settings.lease)
            .await?;
        // Submitting and recording run on their own task, so that a worker that loses its
        // claim meanwhile (and stops) still records what FAL accepted.
        let task = tokio::spawn(submit_and_record(
            s.clone(),
            item.clone(),
            payload,
            archive_url,
        ));
        task.await
            .map_err(|e| StoreError::Task("the submission task failed", e))?
    }
}

async fn submit_and_record(
    s: Services,
    item: WorkItem,
    payload: TrainPayload,
    archive_url: String,
) -> Result<Outcome, StoreError> {
    let input = payload.params.to_fal_input(&archive_url);
    let webhook = s.training_webhook(item.avatar_id);
    let results_lifetime = copies::results_lifetime(s.settings.training_deadline);
    let submitted = match s
        .fal
        .submit_expiring(
            &payload.endpoint,
            &input,
            webhook.as_deref(),
            results_lifetime,
        )
        .await
    {
        Ok(r) => r,
        Err(e @ (FalError::Connect(_) | FalError::RateLimited { .. })) => {
            // FAL never took the job: safe to submit again later.
            s.queue.set_phase(&item, None).await?;
            return Ok(Outcome::Retry(format!("submit: {}", telemetry::chain(&e))));
        }
        Err(e @ (FalError::Timeout | FalError::Connection(_) | FalError::Decode(_))) => {
            // FAL may have taken the job; its webhook will tell. Never guess by resubmitting.
            tracing::warn!(avatar_id = %item.avatar_id, error = %telemetry::chain(&e),
                "FAL did not confirm the training submission; waiting for its webhook");
            return Ok(Outcome::RetryAfter(s.settings.status_poll_every));
        }
        Err(e) => {
            // FAL answered that it did not take the job.
            let reason = match &e {
                FalError::Validation { detail } => format!("FAL refused the training: {detail}"),
                other => format!("FAL did not accept the training ({other})"),
            };
            fail_before_submission(&s, item.avatar_id, &reason).await?;
            return Ok(Outcome::Failed(e.to_string()));
        }
    };
    tracing::info!(avatar_id = %item.avatar_id, request_id = %submitted.request_id,
        endpoint = %payload.endpoint, "training submitted to FAL");
    record_submission(&s, &item, &payload.endpoint, submitted, Some(archive_url)).await
}

/// Records a job FAL accepted; if the avatar refuses it (deleted, failed or settled meanwhile),
/// the job has no owner and is cancelled.
async fn record_submission(
    s: &Services,
    item: &WorkItem,
    endpoint: &str,
    submitted: SubmitResponse,
    archive_url: Option<String>,
) -> Result<Outcome, StoreError> {
    let record = Command::new(
        Actor::System(by::TRAINING.into()),
        Utc::now(),
        Action::RecordTrainingSubmission {
            request_id: submitted.request_id.clone(),
            endpoint: endpoint.to_owned(),
            status_url: submitted.status_url.clone(),
            response_url: submitted.response_url.clone(),
            cancel_url: submitted.cancel_url.clone(),
            archive_url,
        },
    );
    // The request id must be recorded: retry the write a few times before giving the job to
    // its webhook.
    let mut last_error = None;
    for attempt in 0..5u32 {
        match s
            .store
            .execute(item.avatar_id, record.clone(), Uuid::new_v4())
            .await
        {
            Ok(_) => return Ok(Outcome::Done),
            Err(StoreError::Rejected(refusal)) => {
                let reason = match refusal {
                    AvatarError::Deleted => CancelReason::Deleted,
                    _ => CancelReason::Refused,
                };
                tracing::warn!(avatar_id = %item.avatar_id, request_id = %submitted.request_id,
                    refusal = %refusal, "the avatar refused a submitted training; cancelling the FAL job");
                cancel_orphan(s, item.avatar_id, &submitted.cancel_url, reason).await?;
                discard_archives(s, item.avatar_id).await;
                return Ok(Outcome::Done);
            }
            Err(e) => {
                last_error = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            }
        }
    }
    // The loop runs at least once, so an error is always there.
    Err(last_error.unwrap_or(StoreError::Conflict(5)))
}

/// Queues the cancel of a FAL job nothing owns (retried until FAL confirms).
pub async fn cancel_orphan(
    s: &Services,
    avatar_id: Uuid,
    cancel_url: &str,
    reason: CancelReason,
) -> Result<(), StoreError> {
    let payload = CancelPayload {
        cancel_url: cancel_url.to_owned(),
        reason,
    };
    s.queue
        .enqueue_now(cancel::KIND, &cancel::key(cancel_url), avatar_id, &payload)
        .await
}

/// Deletes the training archives we stored to serve FAL, when no training of the avatar will
/// read them (there is one training at a time); a failure is left to the avatar's deletion.
async fn discard_archives(s: &Services, avatar_id: Uuid) {
    let prefix = crate::photos::store::archives_prefix(avatar_id);
    if let Err(e) = s.photos.delete_prefix(&prefix).await {
        tracing::warn!(%avatar_id, error = %crate::telemetry::chain(&e), "could not delete an unused training archive");
    }
}

/// Fails a training that never reached FAL (so it has no request id).
async fn fail_before_submission(
    s: &Services,
    avatar_id: Uuid,
    reason: &str,
) -> Result<(), StoreError> {
    discard_archives(s, avatar_id).await;
    let command = Command::new(
        Actor::System(by::TRAINING.into()),
        Utc::now(),
        Action::FailTraining {
            request_id: None,
            reason: reason.to_owned(),
            abandon: false,
        },
    );
    match s.store.execute(avatar_id, command, Uuid::new_v4()).await {
        Ok(_) => Ok(()),
        // Someone else already settled it (deleted, failed, submitted): nothing to add.
        Err(StoreError::Rejected(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
