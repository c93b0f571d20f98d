//! The generation actor's work: submit the endpoint and arguments the aggregate chose, record
//! the FAL job in the avatar, poll until FAL is done, and record the images (or the failure).
//! Items run concurrently up to a bound, so a batch proceeds side by side and one failure does
//! not touch the others.
//!
//! As with trainings, the paid submission is entered by a compare-and-set only one claimant
//! wins, and runs to its recording even if the claim is lost; an item found mid-submission is
//! never resubmitted (the webhook adopts the job, or the deadline sweeper fails it).
//!
//! FAL gets our copy of every file of the avatar's it needs (the LoRA, an image to upscale;
//! see `copies`), never its own: the recorded arguments name FAL's URL, which leads to our
//! copy, and the input submitted carries a URL of our copy that lasts until the deadline. The
//! images a job makes are asked to expire a day past the deadline, a backstop for their
//! deletion at FAL once we hold our copies (`forget`).

use aggregates::{Action, Actor, AvatarError, AvatarEvent, Command, FalJob};
use chrono::Utc;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cancel::CancelReason;
use super::copies;
use super::training::cancel_orphan;
use super::work::WorkItem;
use super::{by, Outcome, Services, WorkHandler};
use crate::fal::types::GeneratorOutput;
use crate::fal::FalError;
use crate::results::generated_images;
use crate::store::StoreError;
use crate::telemetry;

pub const KIND: &str = "generate";
const PHASE_SUBMITTING: &str = "submitting";

/// What the reactor hands over from `GenerationRequested`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeneratePayload {
    pub generation_id: Uuid,
    pub endpoint: String,
    pub arguments: serde_json::Value,
}

pub struct GenerationHandler {
    pub services: Services,
}

impl WorkHandler for GenerationHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn concurrency(&self) -> usize {
        self.services.settings.generation_concurrency
    }

    fn run<'a>(&'a self, item: &'a WorkItem) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(self.generate(item))
    }

    fn give_up<'a>(&'a self, item: &'a WorkItem, error: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Ok(job) = item.payload::<GeneratePayload>() {
                let _ = fail(
                    &self.services,
                    item.avatar_id,
                    job.generation_id,
                    error,
                    true,
                )
                .await;
            }
        })
    }
}

impl GenerationHandler {
    async fn generate(&self, item: &WorkItem) -> Result<Outcome, StoreError> {
        let s = &self.services;
        let job: GeneratePayload = item.payload()?;
        let avatar = s.store.load(item.avatar_id).await?;
        let fal_job = match avatar.pending_generation(job.generation_id) {
            // Finished, or the avatar was deleted.
            None => return Ok(Outcome::Done),
            Some(Some(fal_job)) => fal_job.clone(),
            Some(None) if item.phase.is_some() => {
                // Cut short mid-submission: the webhook adopts the job, or the deadline ends it.
                return Ok(Outcome::RetryAfter(s.settings.generation_poll_every));
            }
            Some(None) => {
                // Before the paid step: making a copy or its URL may fail and be retried.
                let input = match copies::with_our_copies(
                    s,
                    item.avatar_id,
                    &avatar,
                    &job.arguments,
                    s.settings.generation_deadline,
                )
                .await
                {
                    Ok(input) => input,
                    Err(e) => return Ok(Outcome::Retry(format!("our copy for FAL: {e}"))),
                };
                s.queue
                    .enter_once(item, PHASE_SUBMITTING, s.settings.lease)
                    .await?;
                let webhook = s.generation_webhook(item.avatar_id, job.generation_id);
                let with_webhook = webhook.is_some();
                let task = tokio::spawn(submit_and_record(
                    s.clone(),
                    item.clone(),
                    job.clone(),
                    input,
                    webhook,
                ));
                match task
                    .await
                    .map_err(|e| StoreError::Task("the submission task failed", e))??
                {
                    // FAL has not even started it: with a webhook coming, the slot is better
                    // spent on the next submission than on asking at once.
                    Ok(_) if with_webhook => {
                        return Ok(Outcome::RetryAfter(s.settings.generation_poll_every));
                    }
                    Ok(fal_job) => fal_job,
                    Err(outcome) => return Ok(outcome),
                }
            }
        };
        self.poll(item, &job, &fal_job).await
    }

    async fn poll(
        &self,
        item: &WorkItem,
        job: &GeneratePayload,
        fal_job: &FalJob,
    ) -> Result<Outcome, StoreError> {
        let s = &self.services;
        let later = Outcome::RetryAfter(s.settings.generation_poll_every);
        match s.fal.status(&fal_job.status_url, false).await {
            Ok(status) if status.is_completed() => {}
            Ok(_) => return Ok(later),
            Err(e) => {
                return Ok(Outcome::Retry(format!(
                    "generation status poll: {}",
                    telemetry::chain(&e)
                )))
            }
        }
        match s.fal.result::<GeneratorOutput>(&fal_job.response_url).await {
            Ok(output) => {
                // Nothing is fetched from, or handed to Telegram at, an address off FAL's list.
                if let Err(refused) = s.fal.check_output_images(&output).await {
                    fail(
                        s,
                        item.avatar_id,
                        job.generation_id,
                        &refused.to_string(),
                        false,
                    )
                    .await?;
                    return Ok(Outcome::Done);
                }
                let command = Command::new(
                    Actor::System(by::GENERATION.into()),
                    Utc::now(),
                    Action::CompleteGeneration {
                        generation_id: job.generation_id,
                        images: generated_images(&output),
                    },
                );
                match s
                    .store
                    .execute(item.avatar_id, command, Uuid::new_v4())
                    .await
                {
                    Ok(_) | Err(StoreError::Rejected(_)) => Ok(Outcome::Done),
                    Err(e) => Err(e),
                }
            }
            Err(
                e @ (FalError::Validation { .. } | FalError::Http { .. } | FalError::Server { .. }),
            ) => {
                fail(
                    s,
                    item.avatar_id,
                    job.generation_id,
                    &format!("FAL could not generate: {e}"),
                    false,
                )
                .await?;
                Ok(Outcome::Done)
            }
            Err(e) => Ok(Outcome::Retry(format!(
                "fetching the images: {}",
                telemetry::chain(&e)
            ))),
        }
    }
}

/// Submits once and records the job in the avatar; `Err(outcome)` when there is nothing to poll.
async fn submit_and_record(
    s: Services,
    item: WorkItem,
    job: GeneratePayload,
    input: serde_json::Value,
    webhook: Option<String>,
) -> Result<Result<FalJob, Outcome>, StoreError> {
    let results_lifetime = copies::results_lifetime(s.settings.generation_deadline);
    let answer = match s
        .fal
        .submit_expiring(&job.endpoint, &input, webhook.as_deref(), results_lifetime)
        .await
    {
        Ok(answer) => answer,
        Err(e @ (FalError::Connect(_) | FalError::RateLimited { .. })) => {
            s.queue.set_phase(&item, None).await?;
            return Ok(Err(Outcome::Retry(format!(
                "submit: {}",
                telemetry::chain(&e)
            ))));
        }
        Err(e @ (FalError::Timeout | FalError::Connection(_) | FalError::Decode(_))) => {
            tracing::warn!(generation_id = %job.generation_id, error = %telemetry::chain(&e),
                "FAL did not confirm the generation submission; waiting for its webhook");
            return Ok(Err(Outcome::RetryAfter(s.settings.generation_poll_every)));
        }
        Err(e) => {
            let reason = match &e {
                FalError::Validation { detail } => format!("FAL refused the request: {detail}"),
                other => format!("FAL did not accept the request ({other})"),
            };
            fail(&s, item.avatar_id, job.generation_id, &reason, false).await?;
            return Ok(Err(Outcome::Failed(e.to_string())));
        }
    };
    tracing::info!(generation_id = %job.generation_id, request_id = %answer.request_id,
        endpoint = %job.endpoint, "generation submitted to FAL");
    let fal_job = FalJob {
        request_id: answer.request_id,
        status_url: answer.status_url,
        response_url: answer.response_url,
        cancel_url: answer.cancel_url,
    };
    let record = Command::new(
        Actor::System(by::GENERATION.into()),
        Utc::now(),
        Action::RecordGenerationSubmission {
            generation_id: job.generation_id,
            request_id: fal_job.request_id.clone(),
            status_url: fal_job.status_url.clone(),
            response_url: fal_job.response_url.clone(),
            cancel_url: fal_job.cancel_url.clone(),
        },
    );
    let mut last_error = None;
    for attempt in 0..5u32 {
        match s
            .store
            .execute(item.avatar_id, record.clone(), Uuid::new_v4())
            .await
        {
            Ok(_) => return Ok(Ok(fal_job)),
            // A fast job's webhook may reach another instance first, which adopts this very
            // job from it and records its outcome: then nothing is left to do, and cancelling
            // would have FAL forget the images before our copies of them are made. A
            // generation that finished otherwise (its deadline passed) leaves this job an
            // orphan, cancelled below. A rare path: reading the history is affordable.
            Err(StoreError::Rejected(AvatarError::GenerationFinished(_)))
                if recorded_elsewhere(&s, item.avatar_id, &fal_job.request_id).await? =>
            {
                tracing::info!(generation_id = %job.generation_id, request_id = %fal_job.request_id,
                    "the generation finished before its submission was recorded here (its webhook came first)");
                return Ok(Err(Outcome::Done));
            }
            Err(StoreError::Rejected(refusal)) => {
                let reason = match refusal {
                    AvatarError::Deleted => CancelReason::Deleted,
                    _ => CancelReason::Refused,
                };
                tracing::warn!(generation_id = %job.generation_id, request_id = %fal_job.request_id,
                    refusal = %refusal, "the avatar refused a submitted generation; cancelling the FAL job");
                cancel_orphan(&s, item.avatar_id, &fal_job.cancel_url, reason).await?;
                return Ok(Err(Outcome::Done));
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

/// Whether the avatar recorded `request_id` as a generation's submission (adopted from its
/// webhook by another instance).
async fn recorded_elsewhere(
    s: &Services,
    avatar_id: Uuid,
    request_id: &str,
) -> Result<bool, StoreError> {
    Ok(s.store.history(avatar_id).await?.iter().any(|h| {
        matches!(&h.event, AvatarEvent::GenerationSubmitted { request_id: r, .. } if r == request_id)
    }))
}

/// Fails a generation; `abandon` when its FAL job may still run (it is then cancelled).
pub async fn fail(
    s: &Services,
    avatar_id: Uuid,
    generation_id: Uuid,
    reason: &str,
    abandon: bool,
) -> Result<(), StoreError> {
    let command = Command::new(
        Actor::System(by::GENERATION.into()),
        Utc::now(),
        Action::FailGeneration {
            generation_id,
            reason: reason.to_owned(),
            abandon,
        },
    );
    match s.store.execute(avatar_id, command, Uuid::new_v4()).await {
        Ok(_) | Err(StoreError::Rejected(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
