//! Training jobs: one row per training an avatar started, with its FAL request id, endpoint,
//! times, outcome and durations. Operators look a request id up here; analysts measure trainers.
//!
//! A job is keyed by (avatar, sequence of its `TrainingStarted`), so a training that failed
//! before reaching FAL (no request id) is a job too.

use aggregates::AvatarEvent;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use uuid::Uuid;

use crate::gallery::uuid;
use crate::sql::{Arg, SqlRow, Tx};
use crate::{FeedEvent, Projection, ProjectionError};

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
    /// The avatar was deleted while the job was running.
    pub const CANCELLED: &str = "cancelled";
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

    fn apply<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        event: &'a FeedEvent,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(apply(tx, event))
    }
}

/// The newest job of the avatar (`$1`): the only one that can still be waiting for FAL.
const NEWEST: &str =
    "started_sequence = (SELECT max(started_sequence) FROM training_jobs WHERE avatar_id = $1)";

async fn apply(tx: &mut Tx<'_>, e: &FeedEvent) -> Result<(), ProjectionError> {
    let at = e.event.at();
    match &e.event {
        AvatarEvent::TrainingStarted {
            owner,
            avatar_type,
            preset,
            endpoint,
            ..
        } => {
            tx.execute(
                "INSERT INTO training_jobs
                    (avatar_id, started_sequence, owner, avatar_type, preset, endpoint, status,
                     started_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (avatar_id, started_sequence) DO NOTHING",
                vec![
                    e.avatar_id.into(),
                    (e.sequence as i64).into(),
                    (*owner).into(),
                    avatar_type.as_str().into(),
                    preset.as_str().into(),
                    endpoint.as_str().into(),
                    status::STARTED.into(),
                    at.into(),
                ],
            )
            .await?;
        }
        AvatarEvent::TrainingSubmitted {
            request_id,
            endpoint,
            ..
        } => {
            tx.execute(
                &format!(
                    "UPDATE training_jobs
                        SET request_id = $2, endpoint = $3, submitted_at = $4, status = $5
                      WHERE avatar_id = $1 AND status = '{}' AND {NEWEST}",
                    status::STARTED
                ),
                vec![
                    e.avatar_id.into(),
                    request_id.as_str().into(),
                    endpoint.as_str().into(),
                    at.into(),
                    status::SUBMITTED.into(),
                ],
            )
            .await?;
        }
        AvatarEvent::TrainingCompleted { request_id, .. } => {
            finish(tx, e, "request_id = $2", Some(request_id), status::COMPLETED, None).await?;
        }
        AvatarEvent::TrainingFailed {
            request_id, reason, ..
        } => match request_id {
            Some(id) => {
                finish(tx, e, "request_id = $2", Some(id), status::FAILED, Some(reason)).await?
            }
            None => {
                let job = format!("status = '{}' AND {NEWEST}", status::STARTED);
                finish(tx, e, &job, None, status::FAILED, Some(reason)).await?
            }
        },
        AvatarEvent::AvatarDeleted { .. } => {
            let job = format!(
                "status IN ('{}', '{}')",
                status::STARTED,
                status::SUBMITTED
            );
            finish(tx, e, &job, None, status::CANCELLED, Some("avatar deleted")).await?;
        }
        _ => {}
    }
    Ok(())
}

/// Ends the avatar's jobs matching `which` (`$1` is the avatar, `$2` the request id when given)
/// at the event's time, with both durations.
async fn finish(
    tx: &mut Tx<'_>,
    e: &FeedEvent,
    which: &str,
    request_id: Option<&String>,
    new_status: &str,
    reason: Option<&str>,
) -> Result<(), ProjectionError> {
    let mut key: Vec<Arg> = vec![e.avatar_id.into()];
    if let Some(id) = request_id {
        key.push(id.as_str().into());
    }
    let rows = tx
        .fetch_all(
            &format!(
                "SELECT started_sequence, started_at, submitted_at FROM training_jobs
                  WHERE avatar_id = $1 AND {which}"
            ),
            key,
        )
        .await?;
    let finished = e.event.at();
    for row in rows {
        let started_sequence: i64 = row.get("started_sequence")?;
        let started_at: DateTime<Utc> = row.get("started_at")?;
        let submitted_at: Option<DateTime<Utc>> = row.get("submitted_at")?;
        tx.execute(
            "UPDATE training_jobs
                SET status = $3, finished_at = $4, duration_seconds = $5, fal_seconds = $6,
                    failure_reason = $7
              WHERE avatar_id = $1 AND started_sequence = $2",
            vec![
                e.avatar_id.into(),
                started_sequence.into(),
                new_status.into(),
                finished.into(),
                seconds(started_at, finished).into(),
                submitted_at.map(|s| seconds(s, finished)).into(),
                reason.map(str::to_owned).into(),
            ],
        )
        .await?;
    }
    Ok(())
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
