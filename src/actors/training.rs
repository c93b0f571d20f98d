//! The training actor's work: pack the avatar's photos into a zip, upload it to FAL storage,
//! submit the trainer with the avatar's parameters and our webhook, and record the request id.
//!
//! A FAL submission is paid work and not idempotent, so the item's phase is set to `submitting`
//! before the call. An item found in that phase again means a crash between "submitted" and
//! "recorded": it is not resubmitted; the training is failed with a message to the user instead.

use aggregates::presets::TrainerParams;
use aggregates::{Action, Actor, AvatarError, AvatarStatus, Command, TrainingOutput};
use chrono::Utc;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::work::WorkItem;
use super::{Outcome, Services, WorkHandler, TRAINING_ACTOR};
use crate::fal::FalError;
use crate::photos::archive::TrainingArchive;
use crate::store::StoreError;

pub const KIND: &str = "train";
const PHASE_SUBMITTING: &str = "submitting";

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
            let reason = format!("could not start the training: {error}");
            if let Err(e) = fail_before_submission(&self.services, item.avatar_id, &reason).await {
                tracing::error!(avatar_id = %item.avatar_id, error = %e, "could not record the failed training");
            }
        })
    }
}

impl TrainingHandler {
    async fn train(&self, item: &WorkItem) -> Result<Outcome, StoreError> {
        let s = &self.services;
        let payload: TrainPayload = item.payload()?;
        let avatar = s.store.load(item.avatar_id).await?;
        let waiting = avatar.status == AvatarStatus::Training
            && avatar
                .training
                .as_ref()
                .is_some_and(|t| t.request_id.is_none());
        if !waiting {
            // Deleted, already submitted (a replay), or failed meanwhile: nothing to do.
            return Ok(Outcome::Done);
        }
        if item.phase.as_deref() == Some(PHASE_SUBMITTING) {
            tracing::error!(avatar_id = %item.avatar_id,
                "a training submission was interrupted before its request id was recorded; not resubmitting");
            fail_before_submission(
                s,
                item.avatar_id,
                "the training was interrupted while it was being sent to FAL; please start it again",
            )
            .await?;
            return Ok(Outcome::Failed("interrupted submission".into()));
        }

        let archive = match TrainingArchive::build(&s.photos, &avatar.photos).await {
            Ok(a) => a,
            Err(e) => return Ok(Outcome::Retry(format!("packing photos: {e}"))),
        };
        let archive_url = match s
            .fal
            .upload(
                archive.path().to_path_buf(),
                "application/zip",
                "photos.zip",
            )
            .await
        {
            Ok(url) => url,
            Err(e) if e.is_transient() => return Ok(Outcome::Retry(format!("upload: {e}"))),
            Err(e) => {
                fail_before_submission(s, item.avatar_id, &format!("upload to FAL failed: {e}"))
                    .await?;
                return Ok(Outcome::Failed(e.to_string()));
            }
        };
        drop(archive);

        s.queue.set_phase(item.id, Some(PHASE_SUBMITTING)).await?;
        let input = payload.params.to_fal_input(&archive_url);
        let webhook = s.training_webhook(item.avatar_id);
        let submitted = match s
            .fal
            .submit(&payload.endpoint, &input, webhook.as_deref())
            .await
        {
            Ok(r) => r,
            Err(e @ (FalError::Connect(_) | FalError::RateLimited { .. })) => {
                // FAL never took the job: safe to submit again later.
                s.queue.set_phase(item.id, None).await?;
                return Ok(Outcome::Retry(format!("submit: {e}")));
            }
            Err(e) => {
                // FAL may or may not have started a paid job; never guess by resubmitting.
                let reason = match &e {
                    FalError::Validation { detail } => {
                        format!("FAL refused the training: {detail}")
                    }
                    other => format!("FAL did not confirm the training ({other})"),
                };
                fail_before_submission(s, item.avatar_id, &reason).await?;
                return Ok(Outcome::Failed(e.to_string()));
            }
        };
        tracing::info!(avatar_id = %item.avatar_id, request_id = %submitted.request_id,
            endpoint = %payload.endpoint, "training submitted to FAL");

        let record = Command::new(
            Actor::System(TRAINING_ACTOR.into()),
            Utc::now(),
            Action::RecordTrainingSubmission {
                request_id: submitted.request_id.clone(),
                endpoint: payload.endpoint.clone(),
                status_url: submitted.status_url.clone(),
                response_url: submitted.response_url.clone(),
                cancel_url: submitted.cancel_url.clone(),
                archive_url,
            },
        );
        // The request id must be recorded: retry the write a few times before the lease lapses.
        let mut last_error = None;
        for attempt in 0..5u32 {
            match s
                .store
                .execute(item.avatar_id, record.clone(), Uuid::new_v4())
                .await
            {
                Ok(_) => return Ok(Outcome::Done),
                Err(StoreError::Rejected(AvatarError::Deleted)) => {
                    // Deleted while submitting: stop the paid job.
                    let _ = s.fal.cancel(&submitted.cancel_url).await;
                    return Ok(Outcome::Done);
                }
                Err(StoreError::Rejected(refusal)) => {
                    return Ok(Outcome::Failed(format!(
                        "recording the submission: {refusal}"
                    )))
                }
                Err(e) => {
                    last_error = Some(e);
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        Err(last_error.unwrap_or(StoreError::Database("unknown".into())))
    }
}

/// Fails a training that never reached FAL (so it has no request id).
async fn fail_before_submission(
    s: &Services,
    avatar_id: Uuid,
    reason: &str,
) -> Result<(), StoreError> {
    let command = Command::new(
        Actor::System(TRAINING_ACTOR.into()),
        Utc::now(),
        Action::FailTraining {
            request_id: None,
            reason: reason.to_owned(),
        },
    );
    match s.store.execute(avatar_id, command, Uuid::new_v4()).await {
        Ok(_) => Ok(()),
        // Someone else already settled it (deleted, failed, submitted): nothing to add.
        Err(StoreError::Rejected(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Model data from a trainer's output JSON, whatever its shape; the aggregate judges it.
pub fn training_output(output: &Value) -> TrainingOutput {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    TrainingOutput {
        lora_file_url: text(output.pointer("/diffusers_lora_file/url")),
        config_file_url: text(output.pointer("/config_file/url")),
        finetune_id: text(output.get("finetune_id")),
    }
}

/// Records the outcome of a training request, from the webhook or the poller alike: duplicates
/// are no-ops in the aggregate, and data of the wrong shape fails the training visibly.
pub async fn report_training_result(
    s: &Services,
    actor: &str,
    avatar_id: Uuid,
    request_id: &str,
    result: Result<&Value, String>,
) -> Result<(), StoreError> {
    let by = Actor::System(actor.into());
    let action = match result {
        Ok(output) => Action::CompleteTraining {
            request_id: request_id.to_owned(),
            output: training_output(output),
        },
        Err(reason) => Action::FailTraining {
            request_id: Some(request_id.to_owned()),
            reason,
        },
    };
    let completing = matches!(action, Action::CompleteTraining { .. });
    match s
        .store
        .execute(
            avatar_id,
            Command::new(by.clone(), Utc::now(), action),
            Uuid::new_v4(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(StoreError::Rejected(refusal @ AvatarError::ModelDataMismatch { .. }))
            if completing =>
        {
            tracing::error!(%avatar_id, request_id, error = %refusal, "training result refused");
            let fail = Action::FailTraining {
                request_id: Some(request_id.to_owned()),
                reason: format!("FAL returned model data of the wrong shape: {refusal}"),
            };
            s.store
                .execute(
                    avatar_id,
                    Command::new(by, Utc::now(), fail),
                    Uuid::new_v4(),
                )
                .await
                .map(drop)
        }
        Err(e) => Err(e),
    }
}
