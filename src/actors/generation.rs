//! The generation actor's work: submit the endpoint and arguments the aggregate chose, poll until
//! FAL is done, and record the images (or the failure). Items run concurrently up to a bound, so
//! a batch proceeds side by side and one failure does not touch the others.

use aggregates::{Action, Actor, AvatarStatus, Command, GeneratedImage};
use chrono::Utc;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::work::WorkItem;
use super::{Outcome, Services, WorkHandler, GENERATION_ACTOR};
use crate::fal::types::GeneratorOutput;
use crate::fal::FalError;
use crate::store::StoreError;

pub const KIND: &str = "generate";
const PHASE_SUBMITTING: &str = "submitting";

/// What the reactor hands over from `GenerationRequested`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeneratePayload {
    pub generation_id: Uuid,
    pub endpoint: String,
    pub arguments: serde_json::Value,
}

/// Kept in the item's phase once FAL accepted the job, so polling resumes after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Submitted {
    request_id: String,
    status_url: String,
    response_url: String,
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
                let _ = fail(&self.services, item.avatar_id, job.generation_id, error).await;
            }
        })
    }
}

impl GenerationHandler {
    async fn generate(&self, item: &WorkItem) -> Result<Outcome, StoreError> {
        let s = &self.services;
        let job: GeneratePayload = item.payload()?;
        let avatar = s.store.load(item.avatar_id).await?;
        if avatar.status == AvatarStatus::Deleted
            || !avatar.pending_generations.contains_key(&job.generation_id)
        {
            return Ok(Outcome::Done);
        }
        let submitted = match item.phase.as_deref() {
            Some(PHASE_SUBMITTING) => {
                fail(s, item.avatar_id, job.generation_id,
                    "the generation was interrupted while it was being sent to FAL; please try again").await?;
                return Ok(Outcome::Failed("interrupted submission".into()));
            }
            Some(phase) => serde_json::from_str::<Submitted>(phase)
                .map_err(|e| StoreError::Corrupt(format!("generation phase: {e}")))?,
            None => match self.submit(item, &job).await? {
                Ok(submitted) => submitted,
                Err(outcome) => return Ok(outcome),
            },
        };

        let waited = (Utc::now() - item.created_at).to_std().unwrap_or_default();
        if waited > s.settings.generation_deadline {
            fail(
                s,
                item.avatar_id,
                job.generation_id,
                "FAL took too long to generate the images",
            )
            .await?;
            return Ok(Outcome::Done);
        }
        let later = Outcome::RetryAfter(s.settings.generation_poll_every);
        match s.fal.status(&submitted.status_url, false).await {
            Ok(status) if status.is_completed() => {}
            Ok(_) => return Ok(later),
            Err(e) => {
                tracing::warn!(request_id = %submitted.request_id, error = %e, "generation status poll failed");
                return Ok(later);
            }
        }
        match s
            .fal
            .result::<GeneratorOutput>(&submitted.response_url)
            .await
        {
            Ok(output) => {
                let images = output
                    .images
                    .iter()
                    .enumerate()
                    .map(|(i, img)| GeneratedImage {
                        url: img.url.clone(),
                        width: img.width,
                        height: img.height,
                        content_type: img.content_type.clone(),
                        nsfw: output.is_nsfw(i),
                    })
                    .collect();
                let command = Command::new(
                    Actor::System(GENERATION_ACTOR.into()),
                    Utc::now(),
                    Action::CompleteGeneration {
                        generation_id: job.generation_id,
                        images,
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
                )
                .await?;
                Ok(Outcome::Done)
            }
            Err(e) => {
                tracing::warn!(request_id = %submitted.request_id, error = %e, "fetching the images failed");
                Ok(later)
            }
        }
    }

    /// Submits once; `Err(outcome)` when there is nothing to poll.
    async fn submit(
        &self,
        item: &WorkItem,
        job: &GeneratePayload,
    ) -> Result<Result<Submitted, Outcome>, StoreError> {
        let s = &self.services;
        s.queue.set_phase(item.id, Some(PHASE_SUBMITTING)).await?;
        let webhook = s.generation_webhook(item.avatar_id, job.generation_id);
        match s
            .fal
            .submit(&job.endpoint, &job.arguments, webhook.as_deref())
            .await
        {
            Ok(answer) => {
                let submitted = Submitted {
                    request_id: answer.request_id,
                    status_url: answer.status_url,
                    response_url: answer.response_url,
                };
                let phase = serde_json::to_string(&submitted).unwrap_or_default();
                s.queue.set_phase(item.id, Some(&phase)).await?;
                tracing::info!(generation_id = %job.generation_id, request_id = %submitted.request_id,
                    endpoint = %job.endpoint, "generation submitted to FAL");
                Ok(Ok(submitted))
            }
            Err(e @ (FalError::Connect(_) | FalError::RateLimited { .. })) => {
                s.queue.set_phase(item.id, None).await?;
                Ok(Err(Outcome::Retry(format!("submit: {e}"))))
            }
            Err(e) => {
                let reason = match &e {
                    FalError::Validation { detail } => format!("FAL refused the request: {detail}"),
                    other => format!("FAL did not confirm the request ({other})"),
                };
                fail(s, item.avatar_id, job.generation_id, &reason).await?;
                Ok(Err(Outcome::Failed(e.to_string())))
            }
        }
    }
}

async fn fail(
    s: &Services,
    avatar_id: Uuid,
    generation_id: Uuid,
    reason: &str,
) -> Result<(), StoreError> {
    let command = Command::new(
        Actor::System(GENERATION_ACTOR.into()),
        Utc::now(),
        Action::FailGeneration {
            generation_id,
            reason: reason.to_owned(),
        },
    );
    match s.store.execute(avatar_id, command, Uuid::new_v4()).await {
        Ok(_) | Err(StoreError::Rejected(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
