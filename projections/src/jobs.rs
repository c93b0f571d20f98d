//! Training jobs: one row per training an avatar started, with its FAL request id, endpoint,
//! times, outcome and durations. Operators look a request id up here; analysts measure trainers.
//!
//! A job is keyed by (avatar, sequence of its `TrainingStarted`), so a training that failed
//! before reaching FAL (no request id) is a job too. Deleting the avatar removes its jobs (they
//! name the owner and why a training failed); the daily analytics keep the counts.

use std::collections::{BTreeSet, HashMap};

use aggregates::AvatarEvent;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use uuid::Uuid;

use crate::gallery::uuid;
use crate::{FeedEvent, Projection, ProjectionError};
use db::{Arg, SqlRow, Tx};

pub const NAME: &str = "training_jobs";
pub const TABLE: &str = "training_jobs";

/// Job statuses as stored.
pub mod status {
    /// Asked for; not yet submitted to FAL.
    pub const STARTED: &str = "started";
    /// Submitted; FAL holds a request id.
    pub const SUBMITTED: &str = "submitted";
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";
}

/// Builds `training_jobs`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TrainingJobs;

impl Projection for TrainingJobs {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[TABLE]
    }

    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        events: &'a [FeedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(apply_all(tx, events))
    }
}

fn concerns_jobs(event: &AvatarEvent) -> bool {
    matches!(
        event,
        AvatarEvent::TrainingStarted { .. }
            | AvatarEvent::TrainingSubmitted { .. }
            | AvatarEvent::TrainingCompleted { .. }
            | AvatarEvent::TrainingFailed { .. }
            | AvatarEvent::AvatarDeleted { .. }
    )
}

/// Loads the jobs of the avatars the batch trains or deletes once, applies the events in memory
/// and writes each changed job once.
async fn apply_all(tx: &mut Tx<'_>, events: &[FeedEvent]) -> Result<(), ProjectionError> {
    let relevant: Vec<&FeedEvent> = events.iter().filter(|e| concerns_jobs(&e.event)).collect();
    if relevant.is_empty() {
        return Ok(());
    }
    let mut avatars: Vec<Uuid> = relevant.iter().map(|e| e.avatar_id).collect();
    avatars.sort_unstable();
    avatars.dedup();
    let mut jobs: HashMap<Uuid, Vec<TrainingJob>> = HashMap::new();
    for row in &tx
        .fetch_in(
            &format!(
                "SELECT {COLUMNS} FROM training_jobs WHERE avatar_id IN ({{keys}})
                  ORDER BY avatar_id, started_sequence"
            ),
            avatars.into_iter().map(Arg::from).collect(),
        )
        .await?
    {
        let j = job(row)?;
        jobs.entry(j.avatar_id).or_default().push(j);
    }
    let mut changed: BTreeSet<(Uuid, i64)> = BTreeSet::new();
    let mut deleted: BTreeSet<Uuid> = BTreeSet::new();
    for e in relevant {
        if matches!(e.event, AvatarEvent::AvatarDeleted { .. }) {
            jobs.remove(&e.avatar_id);
            changed.retain(|(avatar, _)| *avatar != e.avatar_id);
            deleted.insert(e.avatar_id);
            continue;
        }
        let list = jobs.entry(e.avatar_id).or_default();
        for key in apply_to(list, e) {
            changed.insert(key);
        }
    }
    tx.execute_in(
        "DELETE FROM training_jobs WHERE avatar_id IN ({keys})",
        deleted.into_iter().map(Arg::from).collect(),
    )
    .await?;
    let upserts: Vec<Vec<Arg>> = changed
        .iter()
        .filter_map(|(avatar, sequence)| {
            jobs.get(avatar)?
                .iter()
                .find(|j| j.started_sequence == *sequence)
        })
        .map(job_args)
        .collect();
    tx.insert_rows(
        &format!("INSERT INTO training_jobs ({COLUMNS})"),
        upserts,
        UPSERT,
    )
    .await?;
    Ok(())
}

const UPSERT: &str = "ON CONFLICT (avatar_id, started_sequence) DO UPDATE SET
    owner = excluded.owner, avatar_type = excluded.avatar_type, preset = excluded.preset,
    endpoint = excluded.endpoint, request_id = excluded.request_id, status = excluded.status,
    started_at = excluded.started_at, submitted_at = excluded.submitted_at,
    finished_at = excluded.finished_at, duration_seconds = excluded.duration_seconds,
    fal_seconds = excluded.fal_seconds, failure_reason = excluded.failure_reason";

/// Applies one event (not the deletion, which removes the jobs) to an avatar's jobs, oldest
/// first; returns the keys of the jobs changed.
fn apply_to(jobs: &mut Vec<TrainingJob>, e: &FeedEvent) -> Vec<(Uuid, i64)> {
    let at = e.event.at();
    let key = |j: &TrainingJob| (j.avatar_id, j.started_sequence);
    match &e.event {
        AvatarEvent::TrainingStarted {
            owner,
            avatar_type,
            preset,
            endpoint,
            ..
        } => {
            let sequence = e.sequence as i64;
            if jobs.iter().any(|j| j.started_sequence == sequence) {
                return vec![];
            }
            jobs.push(TrainingJob {
                avatar_id: e.avatar_id,
                started_sequence: sequence,
                owner: *owner,
                avatar_type: avatar_type.as_str().to_owned(),
                preset: preset.as_str().to_owned(),
                endpoint: endpoint.clone(),
                request_id: None,
                status: status::STARTED.to_owned(),
                started_at: at,
                submitted_at: None,
                finished_at: None,
                duration_seconds: None,
                fal_seconds: None,
                failure_reason: None,
            });
            jobs.last().map(key).into_iter().collect()
        }
        AvatarEvent::TrainingSubmitted {
            request_id,
            endpoint,
            ..
        } => match newest_started(jobs) {
            Some(job) => {
                job.request_id = Some(request_id.clone());
                job.endpoint = endpoint.clone();
                job.submitted_at = Some(at);
                job.status = status::SUBMITTED.to_owned();
                vec![key(job)]
            }
            None => vec![],
        },
        AvatarEvent::TrainingCompleted { request_id, .. } => jobs
            .iter_mut()
            .filter(|j| j.request_id.as_ref() == Some(request_id))
            .map(|j| {
                finish(j, at, status::COMPLETED, None);
                key(j)
            })
            .collect(),
        AvatarEvent::TrainingFailed {
            request_id: Some(id),
            reason,
            ..
        } => jobs
            .iter_mut()
            .filter(|j| j.request_id.as_ref() == Some(id))
            .map(|j| {
                finish(j, at, status::FAILED, Some(reason));
                key(j)
            })
            .collect(),
        AvatarEvent::TrainingFailed {
            request_id: None,
            reason,
            ..
        } => match newest_started(jobs) {
            Some(job) => {
                finish(job, at, status::FAILED, Some(reason));
                vec![key(job)]
            }
            None => vec![],
        },
        _ => vec![],
    }
}

/// The avatar's newest job if it is still waiting to be submitted (only the newest can be).
fn newest_started(jobs: &mut [TrainingJob]) -> Option<&mut TrainingJob> {
    jobs.iter_mut()
        .max_by_key(|j| j.started_sequence)
        .filter(|j| j.status == status::STARTED)
}

/// Ends a job at `at`, with both durations.
fn finish(job: &mut TrainingJob, at: DateTime<Utc>, to: &str, reason: Option<&str>) {
    job.status = to.to_owned();
    job.finished_at = Some(at);
    job.duration_seconds = Some(seconds(job.started_at, at));
    job.fal_seconds = job.submitted_at.map(|s| seconds(s, at));
    job.failure_reason = reason.map(str::to_owned);
}

/// The values of a job, in [`COLUMNS`] order.
fn job_args(j: &TrainingJob) -> Vec<Arg> {
    vec![
        j.avatar_id.into(),
        j.started_sequence.into(),
        j.owner.into(),
        j.avatar_type.clone().into(),
        j.preset.clone().into(),
        j.endpoint.clone().into(),
        j.request_id.clone().into(),
        j.status.clone().into(),
        j.started_at.into(),
        j.submitted_at.into(),
        j.finished_at.into(),
        j.duration_seconds.into(),
        j.fal_seconds.into(),
        j.failure_reason.clone().into(),
    ]
}

pub(crate) fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

/// One training job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingJob {
    pub avatar_id: Uuid,
    pub started_sequence: i64,
    pub owner: i64,
    pub avatar_type: String,
    pub preset: String,
    pub endpoint: String,
    pub request_id: Option<String>,
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// From the user's request to the result.
    pub duration_seconds: Option<f64>,
    /// From the FAL submission to the result.
    pub fal_seconds: Option<f64>,
    pub failure_reason: Option<String>,
}

const COLUMNS: &str = "avatar_id, started_sequence, owner, avatar_type, preset, endpoint, \
    request_id, status, started_at, submitted_at, finished_at, duration_seconds, fal_seconds, \
    failure_reason";

/// The job FAL knows as `request_id`.
pub async fn by_request_id(
    tx: &mut Tx<'_>,
    request_id: &str,
) -> Result<Option<TrainingJob>, ProjectionError> {
    let row = tx
        .fetch_optional(
            &format!("SELECT {COLUMNS} FROM training_jobs WHERE request_id = $1"),
            vec![request_id.into()],
        )
        .await?;
    row.as_ref().map(job).transpose()
}

/// Jobs still running (asked for or submitted) that started before `cutoff`, oldest first:
/// what the deadline sweeper must end.
pub async fn running_since_before(
    tx: &mut Tx<'_>,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<TrainingJob>, ProjectionError> {
    let rows = tx
        .fetch_all(
            &format!(
                "SELECT {COLUMNS} FROM training_jobs
                  WHERE status IN ($1, $2) AND started_at < $3
                  ORDER BY started_at LIMIT $4"
            ),
            vec![
                status::STARTED.into(),
                status::SUBMITTED.into(),
                cutoff.into(),
                limit.into(),
            ],
        )
        .await?;
    rows.iter().map(job).collect()
}

/// Trainings of avatars that still exist started since `since` (for every training started,
/// deleted avatars' included, see [`crate::analytics::paid_jobs_on`]).
pub async fn started_since(tx: &mut Tx<'_>, since: DateTime<Utc>) -> Result<i64, ProjectionError> {
    Ok(tx
        .fetch_i64(
            "SELECT count(*) FROM training_jobs WHERE started_at >= $1",
            vec![since.into()],
        )
        .await?
        .unwrap_or(0))
}

/// An avatar's jobs, oldest first.
pub async fn for_avatar(
    tx: &mut Tx<'_>,
    avatar_id: Uuid,
) -> Result<Vec<TrainingJob>, ProjectionError> {
    let rows = tx
        .fetch_all(
            &format!(
                "SELECT {COLUMNS} FROM training_jobs WHERE avatar_id = $1
                  ORDER BY started_sequence"
            ),
            vec![avatar_id.into()],
        )
        .await?;
    rows.iter().map(job).collect()
}

fn job(row: &SqlRow) -> Result<TrainingJob, ProjectionError> {
    Ok(TrainingJob {
        avatar_id: uuid(row, "avatar_id")?,
        started_sequence: row.get("started_sequence")?,
        owner: row.get("owner")?,
        avatar_type: row.get("avatar_type")?,
        preset: row.get("preset")?,
        endpoint: row.get("endpoint")?,
        request_id: row.get("request_id")?,
        status: row.get("status")?,
        started_at: row.get("started_at")?,
        submitted_at: row.get("submitted_at")?,
        finished_at: row.get("finished_at")?,
        duration_seconds: row.get("duration_seconds")?,
        fal_seconds: row.get("fal_seconds")?,
        failure_reason: row.get("failure_reason")?,
    })
}
