//! FAL forgets what it can: one `forget` item per FAL request, queued as soon as the request is
//! on record (and, for requests FAL took that nothing recorded, once their cancel is through).
//! When the request is over — the avatar has its outcome and FAL reports it finished — the files
//! that must last are copied into our store (see `copies`), the training archive we served is
//! deleted, and the request's payloads and output files are deleted at FAL with *Delete request
//! payloads*. Retried until FAL confirms: a deletion must not be lost.

use aggregates::AvatarStatus;
use db::Tx;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::copies::{self, CopyError};
use super::work::{enqueue, WorkItem};
use super::{ActorSettings, Outcome, Services, WorkHandler};
use crate::fal::FalError;
use crate::store::StoreError;
use crate::telemetry;

pub const KIND: &str = "forget";
/// The phase of an item whose copies are made: a retry goes straight to the deletion.
const PHASE_COPIED: &str = "copied";

/// One FAL request whose payloads are to be deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetPayload {
    pub request_id: String,
    /// Where FAL tells whether the request has finished.
    pub status_url: String,
    pub of: Subject,
}

/// What the request was for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Subject {
    /// A training of the avatar; `archive_key` is the archive we served it, if we did.
    Training {
        archive_key: Option<String>,
    },
    Generation {
        generation_id: Uuid,
    },
    /// A job FAL took that the avatar never recorded (its cancel is through).
    Orphan,
}

/// The work-item key of one request's deletion, so that it is queued once.
pub fn key(request_id: &str) -> String {
    format!("forget:{request_id}")
}

/// Queues the deletion of a request the avatar recorded, in the reactor's transaction.
pub async fn enqueue_for(
    tx: &mut Tx<'_>,
    avatar_id: Uuid,
    event: &aggregates::AvatarEvent,
) -> Result<(), sqlx::Error> {
    let Some(payload) = for_event(event) else {
        return Ok(());
    };
    let key = key(&payload.request_id);
    enqueue(tx, KIND, &key, avatar_id, &payload, chrono::Utc::now()).await
}

/// The deletion a `TrainingSubmitted` or `GenerationSubmitted` event calls for.
pub fn for_event(event: &aggregates::AvatarEvent) -> Option<ForgetPayload> {
    use aggregates::AvatarEvent::*;
    match event {
        TrainingSubmitted {
            request_id,
            status_url,
            archive_url,
            ..
        } => Some(ForgetPayload {
            request_id: request_id.clone(),
            status_url: status_url.clone(),
            of: Subject::Training {
                archive_key: archive_url.as_deref().and_then(copies::stored_key_of),
            },
        }),
        GenerationSubmitted {
            generation_id,
            request_id,
            status_url,
            ..
        } => Some(ForgetPayload {
            request_id: request_id.clone(),
            status_url: status_url.clone(),
            of: Subject::Generation {
                generation_id: *generation_id,
            },
        }),
        _ => None,
    }
}

/// Queues the deletion of a request outside the reactor (an orphan, a deleted avatar's
/// request); a request queued before is not queued again.
pub async fn enqueue_now(
    s: &Services,
    avatar_id: Uuid,
    payload: &ForgetPayload,
) -> Result<(), StoreError> {
    s.queue
        .enqueue_now(KIND, &key(&payload.request_id), avatar_id, payload)
        .await
}

/// The request id and status URL behind a queue URL of FAL's
/// (`…/requests/<id>/cancel`, `…/requests/<id>/status` or `…/requests/<id>`).
pub fn request_of(queue_url: &str) -> Option<(String, String)> {
    let (base, rest) = queue_url.split_once("/requests/")?;
    let id = rest.split(['/', '?']).next().filter(|id| !id.is_empty())?;
    Some((id.to_owned(), format!("{base}/requests/{id}/status")))
}

pub struct ForgetHandler {
    pub services: Services,
}

impl WorkHandler for ForgetHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    // Retried until FAL answers; the backoff grows to its longest pause.
    fn max_attempts(&self, _: &ActorSettings) -> Option<i32> {
        None
    }

    fn run<'a>(&'a self, item: &'a WorkItem) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(self.forget(item))
    }
}

impl ForgetHandler {
    async fn forget(&self, item: &WorkItem) -> Result<Outcome, StoreError> {
        let s = &self.services;
        let job: ForgetPayload = item.payload()?;
        let avatar = s.store.load(item.avatar_id).await?;
        let deleted = avatar.status == AvatarStatus::Deleted;
        let poll = match job.of {
            Subject::Generation { .. } => s.settings.generation_poll_every,
            _ => s.settings.status_poll_every,
        };
        // While the avatar waits for the request's outcome, FAL still works on it.
        let pending = match &job.of {
            Subject::Training { .. } => avatar.training_request_pending(&job.request_id),
            Subject::Generation { generation_id } => avatar
                .pending_generation(*generation_id)
                .flatten()
                .is_some_and(|fal_job| fal_job.request_id == job.request_id),
            Subject::Orphan => false,
        };
        if pending && !deleted {
            return Ok(Outcome::RetryAfter(poll));
        }
        // The outcome is on record: copy what must last at once, while the avatar still
        // remembers it (it keeps the latest generations only).
        if !deleted && item.phase.as_deref() != Some(PHASE_COPIED) {
            if let Some(outcome) = self.keep_copies(item, &job, &avatar).await? {
                return Ok(outcome);
            }
        }
        // FAL must be done too: files a job makes after its payloads were deleted would stay.
        match s.fal.status(&job.status_url, false).await {
            Ok(status) if status.is_completed() => {}
            Ok(_) => return Ok(Outcome::RetryAfter(poll)),
            // FAL no longer knows the request: there is nothing left to wait for.
            Err(FalError::NotFound { .. }) => {}
            Err(e) => return Ok(Outcome::Retry(format!("status: {}", telemetry::chain(&e)))),
        }
        if let Subject::Training { archive_key } = &job.of {
            // The training is over: nothing reads its archive any more. A submission adopted
            // from its webhook did not record the archive's URL; then the avatar's archives go
            // unless another training of it is under way (one runs at a time).
            let deleted_archive = match archive_key {
                Some(key) => s.photos.delete(key).await.map(drop),
                None if deleted || avatar.status == AvatarStatus::Training => Ok(()),
                None => {
                    let prefix = crate::photos::store::archives_prefix(item.avatar_id);
                    s.photos.delete_prefix(&prefix).await.map(drop)
                }
            };
            if let Err(e) = deleted_archive {
                return Ok(Outcome::Retry(format!(
                    "deleting the training archive: {e}"
                )));
            }
        }
        match s.fal.delete_payloads(&job.request_id).await {
            Ok(answer) => {
                for failed in answer.failures() {
                    // The payloads are gone, so asking again would not find this file: FAL
                    // deletes it at the end of the lifetime the submission asked for.
                    metrics::counter!("fal_forget_total", "outcome" => "file_kept").increment(1);
                    tracing::error!(avatar_id = %item.avatar_id, request_id = %job.request_id,
                        exception = failed.exception.as_deref().unwrap_or_default(),
                        "FAL could not delete a file of a request; it expires on its own");
                }
                metrics::counter!("fal_forget_total", "outcome" => "deleted").increment(1);
                tracing::info!(avatar_id = %item.avatar_id, request_id = %job.request_id,
                    files = answer.cdn_delete_results.len(), "FAL deleted a request's payloads");
                Ok(Outcome::Done)
            }
            Err(FalError::NotFound { .. }) => {
                metrics::counter!("fal_forget_total", "outcome" => "unknown").increment(1);
                tracing::info!(avatar_id = %item.avatar_id, request_id = %job.request_id,
                    "FAL no longer knows the request: nothing to delete");
                Ok(Outcome::Done)
            }
            Err(e) => {
                let outcome = match &e {
                    FalError::Unauthorized { .. } => "refused",
                    _ => "failed",
                };
                metrics::counter!("fal_forget_total", "outcome" => outcome).increment(1);
                if matches!(e, FalError::Unauthorized { .. }) {
                    tracing::error!(request_id = %job.request_id,
                        "FAL refused to delete a request's payloads: FAL_KEY needs FAL's ADMIN scope");
                }
                Ok(Outcome::Retry(format!(
                    "deleting payloads: {}",
                    telemetry::chain(&e)
                )))
            }
        }
    }

    /// Copies what the request made that must last (the model's files, the images shown);
    /// `Some(outcome)` when the item must stop here for now.
    async fn keep_copies(
        &self,
        item: &WorkItem,
        job: &ForgetPayload,
        avatar: &aggregates::Avatar,
    ) -> Result<Option<Outcome>, StoreError> {
        let s = &self.services;
        let urls: Vec<String> = match &job.of {
            // The model the avatar holds now, whichever request made it: a generation may need
            // it at any time, and FAL's copy is about to go.
            Subject::Training { .. } => avatar
                .model
                .as_ref()
                .map(|model| {
                    copies::model_files(model)
                        .into_iter()
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            // The images the bot shows; flagged ones are never shown.
            Subject::Generation { generation_id } => avatar
                .generations
                .get(generation_id)
                .map(|record| {
                    record
                        .images
                        .iter()
                        .filter(|image| !image.nsfw)
                        .map(|image| image.url.clone())
                        .collect()
                })
                .unwrap_or_default(),
            Subject::Orphan => Vec::new(),
        };
        let mut kept = Vec::new();
        for url in &urls {
            match copies::keep(s, item.avatar_id, url).await {
                Ok(key) => kept.push(key),
                Err(e @ CopyError::Gone { .. }) => {
                    // Nothing to copy any more (FAL let it expire): still forget the rest.
                    tracing::error!(avatar_id = %item.avatar_id, request_id = %job.request_id,
                        error = %crate::telemetry::chain(&e), "a file FAL made is gone before we copied it");
                }
                Err(e) if e.is_transient() => {
                    return Ok(Some(Outcome::Retry(format!("copying: {e}"))));
                }
                Err(e) => {
                    tracing::error!(avatar_id = %item.avatar_id, request_id = %job.request_id,
                        error = %crate::telemetry::chain(&e), "could not keep a copy of a file FAL made");
                }
            }
        }
        // Deleted while we copied: the cleanup may have run before our copies landed.
        if !kept.is_empty() && s.store.load(item.avatar_id).await?.status == AvatarStatus::Deleted {
            for key in &kept {
                if let Err(e) = s.photos.delete(key).await {
                    return Ok(Some(Outcome::Retry(format!(
                        "removing a copy of a deleted avatar: {e}"
                    ))));
                }
            }
        }
        s.queue.set_phase(item, Some(PHASE_COPIED)).await?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_come_from_fals_queue_urls() {
        assert_eq!(
            request_of("https://queue.fal.run/fal-ai/flux-lora/requests/r-1/cancel"),
            Some((
                "r-1".to_owned(),
                "https://queue.fal.run/fal-ai/flux-lora/requests/r-1/status".to_owned()
            ))
        );
        assert_eq!(
            request_of("http://127.0.0.1:9/queue/fal-ai/flux-pro/requests/abc").map(|r| r.0),
            Some("abc".to_owned())
        );
        assert_eq!(request_of("https://queue.fal.run/fal-ai/flux-lora"), None);
        assert_eq!(request_of("https://queue.fal.run/x/requests/"), None);
    }
}
