//! Settling paid work: the credits the bot reserved when it accepted a training or a generation
//! are captured when the work is delivered and released when it is not (failure, deadline,
//! deletion), exactly once, driven by the avatar's outcome events through the work queue.
//!
//! How a reservation is found again: a generation's reservation id is its generation id; a
//! training's is the correlation id of the request that started it (the bot reserves and starts
//! under one correlation id), read from its `TrainingStarted` event. A reservation the avatar
//! never heard of (the process died between reserving and starting) is released by
//! [`sweep_orphans`] once it is older than `ActorSettings::orphan_reservation_after`.

use aggregates::account::ReservationPurpose;
use aggregates::{
    AccountAction, AccountCommand, AccountError, Actor, Avatar, AvatarEvent, AvatarStatus,
    ReleaseReason,
};
use chrono::Utc;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::notify::{self, Notification};
use super::work::WorkItem;
use super::{Outcome, Services, WorkHandler};
use crate::store::accounts::AccountStoreError;
use crate::store::StoreError;

pub const KIND: &str = "settle";
/// Which reservation an outcome settles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Settled {
    /// A generation's outcome; its reservation id is the generation id.
    Generation { generation_id: Uuid },
    /// A training's outcome, event `sequence` of the avatar: the reservation is the correlation
    /// id of the `TrainingStarted` before it.
    Training { sequence: u64 },
    /// The avatar was deleted: every open reservation for it comes back.
    AvatarDeleted,
}

/// What to do with the reservation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Settlement {
    Capture,
    Release { reason: ReleaseReason },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettlePayload {
    pub owner: i64,
    pub settled: Settled,
    pub settlement: Settlement,
}

/// The settle item an outcome event calls for, if any (the reactor enqueues it only while
/// credits are charged).
pub fn for_event(event: &AvatarEvent, sequence: u64) -> Option<SettlePayload> {
    let (owner, settled, settlement) = match event {
        AvatarEvent::GenerationCompleted {
            owner,
            generation_id,
            ..
        } => (
            *owner,
            Settled::Generation {
                generation_id: *generation_id,
            },
            Settlement::Capture,
        ),
        AvatarEvent::GenerationFailed {
            owner,
            generation_id,
            reason,
            ..
        } => (
            *owner,
            Settled::Generation {
                generation_id: *generation_id,
            },
            Settlement::Release {
                reason: release_reason(reason),
            },
        ),
        AvatarEvent::TrainingCompleted { owner, .. } => {
            (*owner, Settled::Training { sequence }, Settlement::Capture)
        }
        AvatarEvent::TrainingFailed { owner, reason, .. } => (
            *owner,
            Settled::Training { sequence },
            Settlement::Release {
                reason: release_reason(reason),
            },
        ),
        AvatarEvent::AvatarDeleted { owner, .. } => (
            *owner,
            Settled::AvatarDeleted,
            Settlement::Release {
                reason: ReleaseReason::AvatarDeleted,
            },
        ),
        _ => return None,
    };
    Some(SettlePayload {
        owner,
        settled,
        settlement,
    })
}

/// How every failure the deadline sweeper records begins, so settling can tell a passed
/// deadline from FAL's own failures.
pub const DEADLINE_REASON: &str = "FAL gave no ";

/// Whether a failure reason is the deadline sweeper's (the work passed its deadline).
pub fn is_deadline_reason(reason: &str) -> bool {
    reason.starts_with(DEADLINE_REASON)
}

/// A failure the deadline sweeper recorded is a passed deadline; a cancelled job a cancellation.
fn release_reason(reason: &str) -> ReleaseReason {
    if is_deadline_reason(reason) {
        ReleaseReason::DeadlinePassed
    } else if crate::fal::FailureKind::from_reason(reason) == crate::fal::FailureKind::Cancelled {
        ReleaseReason::Cancelled
    } else {
        ReleaseReason::Failed
    }
}

pub struct SettleHandler {
    pub services: Services,
}

impl WorkHandler for SettleHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, item: &'a WorkItem) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(async move {
            let payload: SettlePayload = item.payload()?;
            let reservations = match &payload.settled {
                Settled::Generation { generation_id } => vec![*generation_id],
                Settled::Training { sequence } => {
                    training_reservation(&self.services, item.avatar_id, *sequence)
                        .await?
                        .into_iter()
                        .collect()
                }
                Settled::AvatarDeleted => {
                    let open = self
                        .services
                        .accounts
                        .load(payload.owner)
                        .await
                        .map_err(ledger)?
                        .open_reservations_for_avatar(item.avatar_id);
                    // Work that finished before the deletion is captured by its own settle
                    // item, which may simply not have run yet: the deletion must not refund it.
                    let finished = finished_before_deletion(&self.services, item.avatar_id).await?;
                    open.into_iter().filter(|r| !finished.contains(r)).collect()
                }
            };
            for reservation_id in reservations {
                settle(
                    &self.services,
                    payload.owner,
                    item.avatar_id,
                    reservation_id,
                    payload.settlement,
                )
                .await?;
            }
            Ok(Outcome::Done)
        })
    }
}

/// The reservations of the avatar's work that completed (its generations' ids, and the
/// reservations of its completed trainings): theirs is a capture, whatever comes after.
async fn finished_before_deletion(
    s: &Services,
    avatar_id: Uuid,
) -> Result<std::collections::HashSet<Uuid>, StoreError> {
    let history = s.store.history(avatar_id).await?;
    let mut finished = std::collections::HashSet::new();
    for entry in &history {
        match &entry.event {
            AvatarEvent::GenerationCompleted { generation_id, .. } => {
                finished.insert(*generation_id);
            }
            AvatarEvent::TrainingCompleted { .. } => {
                finished.extend(training_reservation_in(&history, entry.sequence));
            }
            _ => {}
        }
    }
    Ok(finished)
}

/// The reservation of the training whose outcome is event `sequence` of the avatar.
async fn training_reservation(
    s: &Services,
    avatar_id: Uuid,
    sequence: u64,
) -> Result<Option<Uuid>, StoreError> {
    let history = s.store.history(avatar_id).await?;
    Ok(training_reservation_in(&history, sequence))
}

/// [`training_reservation`] in a history already read: the correlation id of the last
/// `TrainingStarted` before event `sequence`.
fn training_reservation_in(history: &[crate::store::HistoryEntry], sequence: u64) -> Option<Uuid> {
    history
        .iter()
        .rev()
        .filter(|e| e.sequence < sequence)
        .find(|e| matches!(e.event, AvatarEvent::TrainingStarted { .. }))
        .and_then(|e| e.correlation_id.as_deref())
        .and_then(|c| Uuid::parse_str(c).ok())
}

/// Captures or releases one reservation, and tells the user when credits came back. A
/// reservation that does not exist (the work was free, or accepted while credits were not
/// charged) or has already ended the same way is left as it is; the notification is keyed by
/// the reservation, so a retry after a crash tells the user once.
pub async fn settle(
    s: &Services,
    owner: i64,
    avatar_id: Uuid,
    reservation_id: Uuid,
    settlement: Settlement,
) -> Result<(), StoreError> {
    let action = match settlement {
        Settlement::Capture => AccountAction::Capture { reservation_id },
        Settlement::Release { reason } => AccountAction::Release {
            reservation_id,
            reason,
        },
    };
    let command = AccountCommand::new(
        Actor::System(super::by::SETTLEMENT.into()),
        Utc::now(),
        action,
    );
    let done = match s.accounts.execute(owner, command, reservation_id).await {
        Ok(done) => done,
        Err(AccountStoreError::Rejected(AccountError::UnknownReservation(_))) => return Ok(()),
        Err(AccountStoreError::Rejected(refusal)) => {
            // Captured and then failed (or the reverse): the first outcome stands.
            tracing::warn!(owner, %avatar_id, %reservation_id, %refusal, "reservation already ended the other way");
            return Ok(());
        }
        Err(e) => return Err(ledger(e)),
    };
    let Settlement::Release { reason } = settlement else {
        if !done.events.is_empty() {
            metrics::counter!("credits_captured_total").increment(1);
            tracing::info!(owner, %avatar_id, %reservation_id, "reservation captured");
        }
        return Ok(());
    };
    let Some(ended) = done
        .state
        .ended_reservations
        .iter()
        .find(|r| r.reservation_id == reservation_id)
    else {
        return Ok(());
    };
    if !done.events.is_empty() {
        metrics::counter!("credits_released_total").increment(1);
        tracing::info!(owner, %avatar_id, %reservation_id, credits = ended.credits, ?reason, "reservation released");
    }
    let notification = Notification::CreditsReturned {
        owner,
        avatar_id,
        credits: ended.credits,
        reason,
        available: done.state.available(),
    };
    s.queue
        .enqueue_now(
            notify::KIND,
            &format!("notify:returned:{reservation_id}"),
            avatar_id,
            &notification,
        )
        .await
}

/// Releases old reservations whose work the avatar never accepted, and settles any whose
/// outcome was recorded but not settled (a settle item that gave up).
pub async fn sweep_orphans(s: &Services) -> Result<(), StoreError> {
    let age = chrono::Duration::from_std(s.settings.orphan_reservation_after)
        .unwrap_or_else(|_| chrono::Duration::minutes(2));
    let cutoff = Utc::now() - age;
    let open = crate::store::money::open_reservations_before(s.store.database(), cutoff).await?;
    for (owner, reservation_id) in open {
        let account = s.accounts.load(owner).await.map_err(ledger)?;
        let Some(reservation) = account.reservation(reservation_id) else {
            continue;
        };
        let avatar_id = reservation.purpose.avatar_id();
        let avatar = s.store.load(avatar_id).await?;
        let Some(settlement) =
            orphan_settlement(s, &avatar, avatar_id, reservation_id, &reservation.purpose).await?
        else {
            continue;
        };
        tracing::warn!(owner, %avatar_id, %reservation_id, ?settlement, "settling a reservation its work did not settle");
        settle(s, owner, avatar_id, reservation_id, settlement).await?;
    }
    Ok(())
}

/// What an old open reservation should become, judged by the avatar; `None` while its work runs.
async fn orphan_settlement(
    s: &Services,
    avatar: &Avatar,
    avatar_id: Uuid,
    reservation_id: Uuid,
    purpose: &ReservationPurpose,
) -> Result<Option<Settlement>, StoreError> {
    let release = |reason| Some(Settlement::Release { reason });
    // Work that completed is captured even if the avatar was deleted since: the deletion only
    // gives back what never came.
    let deleted = avatar.status == AvatarStatus::Deleted;
    match purpose {
        ReservationPurpose::Generation { generation_id, .. } => {
            if !deleted && avatar.pending_generations.contains_key(generation_id) {
                return Ok(None);
            }
            Ok(match avatar.generation(*generation_id) {
                Some(g) if !g.images.is_empty() => Some(Settlement::Capture),
                _ if deleted => release(ReleaseReason::AvatarDeleted),
                Some(_) => release(ReleaseReason::Failed),
                None => release(ReleaseReason::Refused),
            })
        }
        ReservationPurpose::Training { .. } => {
            // While a training runs, its own reservation is settled by its outcome; an orphan
            // beside it (a retry after a crash) waits for that outcome, rather than every sweep
            // reading the whole history of every running training.
            if avatar.status == AvatarStatus::Training {
                return Ok(None);
            }
            let history = s.store.history(avatar_id).await?;
            let started = history.iter().position(|e| {
                matches!(e.event, AvatarEvent::TrainingStarted { .. })
                    && e.correlation_id.as_deref() == Some(reservation_id.to_string().as_str())
            });
            let Some(started) = started else {
                return Ok(release(if deleted {
                    ReleaseReason::AvatarDeleted
                } else {
                    ReleaseReason::Refused
                }));
            };
            let outcome = history[started + 1..].iter().find_map(|e| match &e.event {
                AvatarEvent::TrainingCompleted { .. } => Some(Settlement::Capture),
                AvatarEvent::TrainingFailed { .. } => release(ReleaseReason::Failed),
                _ => None,
            });
            // Neither outcome on record: still running, unless the avatar is gone.
            Ok(match outcome {
                Some(settlement) => Some(settlement),
                None if deleted => release(ReleaseReason::AvatarDeleted),
                None => None,
            })
        }
    }
}

fn ledger(e: AccountStoreError) -> StoreError {
    StoreError::Ledger(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_capture_or_release_and_other_events_settle_nothing() {
        let generation_id = Uuid::new_v4();
        let failed = |reason: &str| AvatarEvent::GenerationFailed {
            owner: 7,
            generation_id,
            reason: reason.into(),
            cancel_url: None,
            at: Utc::now(),
        };
        let released = |reason| Settlement::Release { reason };
        let deadline = format!("{}images within 10 min", "FAL gave no ");
        assert!(super::is_deadline_reason(&deadline));
        assert_eq!(
            for_event(&failed(&deadline), 4).map(|p| p.settlement),
            Some(released(ReleaseReason::DeadlinePassed))
        );
        assert_eq!(
            for_event(&failed("FAL error: boom"), 4).map(|p| p.settlement),
            Some(released(ReleaseReason::Failed))
        );
        let completed = AvatarEvent::GenerationCompleted {
            owner: 7,
            generation_id,
            images: vec![],
            at: Utc::now(),
        };
        assert_eq!(
            for_event(&completed, 5),
            Some(SettlePayload {
                owner: 7,
                settled: Settled::Generation { generation_id },
                settlement: Settlement::Capture,
            })
        );
        let renamed = AvatarEvent::AvatarRenamed {
            name: aggregates::AvatarName::parse("Vera").unwrap(),
            at: Utc::now(),
        };
        assert_eq!(for_event(&renamed, 6), None);
    }
}
