//! The deadline sweeper: ends trainings and generations that FAL never finished, whatever
//! happened to their work items. It reads the jobs and generations read models (rebuilt from
//! events, so it cannot itself be lost), fails each overdue one through the avatar (which
//! records the FAL job to cancel; the reactor queues the cancel and the user's message), and
//! prunes finished work items past their retention. Every instance sweeps; the avatar's rules
//! make a second failure of the same job a no-op.

use std::time::Duration;

use aggregates::{Action, Actor, AvatarStatus, Command};
use chrono::Utc;
use uuid::Uuid;

use super::settle::DEADLINE_REASON;
use super::{by, Services};
use crate::store::StoreError;
use crate::telemetry;

/// Most overdue jobs of each kind handled in one sweep.
const SWEEP_LIMIT: i64 = 200;

/// Runs until the task is dropped.
pub async fn run(s: Services) {
    loop {
        if let Err(e) = sweep(&s).await {
            tracing::warn!(error = %telemetry::chain(&e), "deadline sweep failed; will try again");
        }
        tokio::time::sleep(s.settings.deadline_sweep_every).await;
    }
}

/// One pass: overdue trainings, overdue generations, old work items and, while credits are
/// charged, reservations that their work never settled.
pub async fn sweep(s: &Services) -> Result<(), StoreError> {
    let now = Utc::now();
    let training_cutoff = now
        - chrono::Duration::from_std(s.settings.training_deadline)
            .unwrap_or_else(|_| chrono::Duration::days(1));
    let generation_cutoff = now
        - chrono::Duration::from_std(s.settings.generation_deadline)
            .unwrap_or_else(|_| chrono::Duration::hours(1));
    let (trainings, generations) = {
        let mut conn = s.store.database().acquire().await?;
        let mut tx = conn.tx();
        (
            projections::jobs::running_since_before(&mut tx, training_cutoff, SWEEP_LIMIT).await?,
            projections::generations::pending_since_before(&mut tx, generation_cutoff, SWEEP_LIMIT)
                .await?,
        )
    };
    for job in trainings {
        fail_training(s, job.avatar_id).await?;
    }
    for generation in generations {
        fail_generation(s, generation.avatar_id, generation.generation_id).await?;
    }
    if s.charging {
        super::settle::sweep_orphans(s).await?;
    }
    let retention = chrono::Duration::from_std(s.settings.work_retention)
        .unwrap_or_else(|_| chrono::Duration::days(7));
    let pruned = s.queue.prune(now - retention).await?;
    if pruned > 0 {
        telemetry::work_items_pruned(pruned);
        tracing::debug!(pruned, "pruned finished work items");
    }
    Ok(())
}

async fn fail_training(s: &Services, avatar_id: Uuid) -> Result<(), StoreError> {
    let avatar = s.store.load(avatar_id).await?;
    let Some(run) = avatar
        .training
        .as_ref()
        .filter(|_| avatar.status == AvatarStatus::Training)
    else {
        return Ok(());
    };
    let minutes = minutes(s.settings.training_deadline);
    let command = Command::new(
        Actor::System(by::POLLER.into()),
        Utc::now(),
        Action::FailTraining {
            request_id: run.request_id.clone(),
            reason: format!("{DEADLINE_REASON}result within {minutes} min"),
            abandon: true,
        },
    );
    match s.store.execute(avatar_id, command, Uuid::new_v4()).await {
        Ok(done) if !done.events.is_empty() => {
            telemetry::deadline_enforced("training");
            tracing::warn!(%avatar_id, request_id = ?run.request_id, "training passed its deadline; failed it");
            Ok(())
        }
        Ok(_) | Err(StoreError::Rejected(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn fail_generation(
    s: &Services,
    avatar_id: Uuid,
    generation_id: Uuid,
) -> Result<(), StoreError> {
    let command = Command::new(
        Actor::System(by::POLLER.into()),
        Utc::now(),
        Action::FailGeneration {
            generation_id,
            reason: format!(
                "{DEADLINE_REASON}images within {} min",
                minutes(s.settings.generation_deadline)
            ),
            abandon: true,
        },
    );
    match s.store.execute(avatar_id, command, Uuid::new_v4()).await {
        Ok(done) if !done.events.is_empty() => {
            telemetry::deadline_enforced("generation");
            tracing::warn!(%avatar_id, %generation_id, "generation passed its deadline; failed it");
            Ok(())
        }
        Ok(_) | Err(StoreError::Rejected(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn minutes(d: Duration) -> u64 {
    d.as_secs().div_ceil(60).max(1)
}
