//! The reactor: a feed consumer that turns committed events into work items, in the same
//! transaction as its checkpoint, so every side effect is driven by an event exactly once.

use std::time::Duration;

use aggregates::AvatarEvent;
use chrono::Utc;
use db::Tx;
use futures::future::BoxFuture;
use projections::{FeedEvent, Projection, ProjectionError};

use super::cancel::{self, CancelPayload, CancelReason};
use super::cleanup::{self, CleanupPayload};
use super::forget;
use super::generation::{self, GeneratePayload};
use super::notify::{self, Notification};
use super::settle;
use super::starter;
use super::training::{self, TrainPayload};
use super::watch::{self, WatchPayload};
use super::work::enqueue;

/// The reactor's checkpoint name.
pub const NAME: &str = "reactor:actors";

pub struct ActorReactor {
    /// How long after a submission the poller first looks.
    pub status_poll_after: Duration,
    /// Whether outcomes settle credits (payments on); off, no settle items exist at all.
    pub charging: bool,
}

impl Projection for ActorReactor {
    fn name(&self) -> &'static str {
        NAME
    }

    // Work items are not a read model: a rebuild must never enqueue work again.
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        events: &'a [FeedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            for e in events {
                self.react(tx, e).await?;
            }
            Ok(())
        })
    }
}

impl ActorReactor {
    /// The work one event calls for, enqueued in the reactor's transaction.
    async fn react(&self, tx: &mut Tx<'_>, e: &FeedEvent) -> Result<(), ProjectionError> {
        let id = e.avatar_id;
        let now = Utc::now();
        let notify_key = format!("notify:{id}:{}", e.sequence);
        if self.charging {
            if let Some(payload) = settle::for_event(&e.event, e.sequence) {
                let key = format!("settle:{id}:{}", e.sequence);
                enqueue(tx, settle::KIND, &key, id, &payload, now).await?;
            }
        }
        // Every FAL request on record is deleted at FAL once it is over (see `forget`).
        forget::enqueue_for(tx, id, &e.event).await?;
        match &e.event {
            AvatarEvent::TrainingStarted {
                owner,
                endpoint,
                params,
                at,
                ..
            } => {
                let payload = TrainPayload {
                    endpoint: endpoint.clone(),
                    params: params.clone(),
                };
                let key = format!("train:{id}:{}", e.sequence);
                enqueue(tx, training::KIND, &key, id, &payload, now).await?;
                crate::bot::quotas::record_training_start(tx, id, e.sequence, *owner, *at).await?;
            }
            AvatarEvent::TrainingSubmitted {
                request_id,
                status_url,
                response_url,
                cancel_url,
                ..
            } => {
                let payload = WatchPayload {
                    request_id: request_id.clone(),
                    status_url: status_url.clone(),
                    response_url: response_url.clone(),
                    cancel_url: cancel_url.clone(),
                };
                let due =
                    now + chrono::Duration::from_std(self.status_poll_after).unwrap_or_default();
                let key = format!("watch:{request_id}");
                enqueue(tx, watch::KIND, &key, id, &payload, due).await?;
            }
            AvatarEvent::TrainingCompleted { owner, .. } => {
                let n = Notification::TrainingCompleted {
                    owner: *owner,
                    avatar_id: id,
                };
                enqueue(tx, notify::KIND, &notify_key, id, &n, now).await?;
                // The handler knows whether samples are on; the item is cheap either way.
                let key = format!("starter:{id}:{}", e.sequence);
                enqueue(tx, starter::KIND, &key, id, &(), now).await?;
            }
            AvatarEvent::TrainingFailed {
                owner,
                reason,
                cancel_url,
                ..
            } => {
                let n = Notification::TrainingFailed {
                    owner: *owner,
                    avatar_id: id,
                    reason: reason.clone(),
                };
                enqueue(tx, notify::KIND, &notify_key, id, &n, now).await?;
                if let Some(url) = cancel_url {
                    enqueue_cancel(tx, id, url, CancelReason::Deadline).await?;
                }
            }
            AvatarEvent::GenerationRequested {
                generation_id,
                endpoint,
                arguments,
                ..
            } => {
                let payload = GeneratePayload {
                    generation_id: *generation_id,
                    endpoint: endpoint.clone(),
                    arguments: arguments.clone(),
                };
                let key = format!("generate:{generation_id}");
                enqueue(tx, generation::KIND, &key, id, &payload, now).await?;
            }
            AvatarEvent::GenerationCompleted {
                owner,
                generation_id,
                images,
                ..
            } => {
                let n = Notification::GenerationCompleted {
                    owner: *owner,
                    avatar_id: id,
                    generation_id: *generation_id,
                    images: images.clone(),
                };
                enqueue(tx, notify::KIND, &notify_key, id, &n, now).await?;
            }
            AvatarEvent::GenerationFailed {
                owner,
                generation_id,
                reason,
                cancel_url,
                ..
            } => {
                let n = Notification::GenerationFailed {
                    owner: *owner,
                    avatar_id: id,
                    generation_id: *generation_id,
                    reason: reason.clone(),
                };
                enqueue(tx, notify::KIND, &notify_key, id, &n, now).await?;
                if let Some(url) = cancel_url {
                    enqueue_cancel(tx, id, url, CancelReason::Deadline).await?;
                }
            }
            AvatarEvent::AvatarDeleted {
                running_training_cancel_url,
                running_generation_cancel_urls,
                ..
            } => {
                for url in running_training_cancel_url
                    .iter()
                    .chain(running_generation_cancel_urls)
                {
                    enqueue_cancel(tx, id, url, CancelReason::Deleted).await?;
                }
                let payload = CleanupPayload {
                    running_training_cancel_url: None,
                };
                let key = format!("cleanup:{id}");
                enqueue(tx, cleanup::KIND, &key, id, &payload, now).await?;
                // Everything the deletion needs from the avatar's data is queued above (in
                // plain, in this transaction); now its key goes, and with it every sealed
                // field of its events, and what earlier work items kept of it.
                crate::store::keys::shred_avatar_in(tx, id).await?;
                for sql in [
                    "DELETE FROM work_items WHERE avatar_id = $1 AND status <> 'pending'",
                    "DELETE FROM training_progress WHERE avatar_id = $1",
                ] {
                    tx.execute(sql, vec![id.to_string().into()]).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Queues the cancel of a FAL job nothing owns any more (retried until FAL confirms).
async fn enqueue_cancel(
    tx: &mut Tx<'_>,
    avatar_id: uuid::Uuid,
    cancel_url: &str,
    reason: CancelReason,
) -> Result<(), sqlx::Error> {
    let payload = CancelPayload {
        cancel_url: cancel_url.to_owned(),
        reason,
    };
    enqueue(
        tx,
        cancel::KIND,
        &cancel::key(cancel_url),
        avatar_id,
        &payload,
        Utc::now(),
    )
    .await
}
