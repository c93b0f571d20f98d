//! Generations: one row per image request (prompt, preset, endpoint, outcome, duration) and one
//! row per returned image, by avatar and by user.
//!
//! When an avatar is deleted its generations stay for analysts but are flagged
//! `avatar_deleted`; the queries the bot uses leave them out, and requests still pending become
//! `cancelled` (the aggregate forgets them too).

use aggregates::AvatarEvent;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use uuid::Uuid;

use crate::gallery::uuid;
use crate::jobs::seconds;
use crate::sql::{SqlRow, Tx};
use crate::{FeedEvent, Projection, ProjectionError};

pub const NAME: &str = "generations";

/// Generation statuses as stored.
pub mod status {
    pub const REQUESTED: &str = "requested";
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";
    /// The avatar was deleted before the result came.
    pub const CANCELLED: &str = "cancelled";
}

/// Builds `generations` and `generation_images`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Generations;

impl Projection for Generations {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["generation_images", "generations"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        event: &'a FeedEvent,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(apply(tx, event))
    }
}

async fn apply(tx: &mut Tx<'_>, e: &FeedEvent) -> Result<(), ProjectionError> {
    let at = e.event.at();
    match &e.event {
        AvatarEvent::GenerationRequested {
            owner,
            generation_id,
            prompt,
            preset,
            endpoint,
            num_images,
            ..
        } => {
            tx.execute(
                "INSERT INTO generations
                    (generation_id, avatar_id, owner, prompt, preset, endpoint, num_images,
                     status, requested_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (generation_id) DO NOTHING",
                vec![
                    (*generation_id).into(),
                    e.avatar_id.into(),
                    (*owner).into(),
                    prompt.as_str().into(),
                    preset.map(|p| p.as_str().to_owned()).into(),
                    endpoint.as_str().into(),
                    i64::from(*num_images).into(),
                    status::REQUESTED.into(),
                    at.into(),
                ],
            )
            .await?;
        }
        AvatarEvent::GenerationCompleted {
            generation_id,
            images,
            ..
        } => {
            finish(tx, *generation_id, at, status::COMPLETED, images.len(), None).await?;
            for (index, image) in images.iter().enumerate() {
                tx.execute(
                    "INSERT INTO generation_images
                        (generation_id, image_index, url, width, height, content_type, nsfw)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (generation_id, image_index) DO NOTHING",
                    vec![
                        (*generation_id).into(),
                        (index as i64).into(),
                        image.url.as_str().into(),
                        image.width.map(i64::from).into(),
                        image.height.map(i64::from).into(),
                        image.content_type.clone().into(),
                        image.nsfw.into(),
                    ],
                )
                .await?;
            }
        }
        AvatarEvent::GenerationFailed {
            generation_id,
            reason,
            ..
        } => {
            finish(tx, *generation_id, at, status::FAILED, 0, Some(reason)).await?;
        }
        AvatarEvent::AvatarDeleted { .. } => {
            tx.execute(
                "UPDATE generations SET status = $2, finished_at = $3
                  WHERE avatar_id = $1 AND status = $4",
                vec![
                    e.avatar_id.into(),
                    status::CANCELLED.into(),
                    at.into(),
                    status::REQUESTED.into(),
                ],
            )
            .await?;
            tx.execute(
                "UPDATE generations SET avatar_deleted = $2 WHERE avatar_id = $1",
                vec![e.avatar_id.into(), true.into()],
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}

async fn finish(
    tx: &mut Tx<'_>,
    generation_id: Uuid,
    at: DateTime<Utc>,
    new_status: &str,
    image_count: usize,
    reason: Option<&String>,
) -> Result<(), ProjectionError> {
    let requested_at = tx
        .fetch_time(
            "SELECT requested_at FROM generations WHERE generation_id = $1",
            vec![generation_id.into()],
        )
        .await?;
    tx.execute(
        "UPDATE generations
            SET status = $2, finished_at = $3, image_count = $4, duration_seconds = $5,
                failure_reason = $6
          WHERE generation_id = $1",
        vec![
            generation_id.into(),
            new_status.into(),
            at.into(),
            (image_count as i64).into(),
            requested_at.map(|r| seconds(r, at)).into(),
            reason.cloned().into(),
        ],
    )
    .await?;
    Ok(())
}

/// One generation request and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    pub generation_id: Uuid,
    pub avatar_id: Uuid,
    pub owner: i64,
    /// The prompt as the user typed it (without the trigger).
    pub prompt: String,
    /// `None`: the avatar type's default arguments.
    pub preset: Option<String>,
    pub endpoint: String,
    pub num_images: i64,
    pub status: String,
    pub image_count: i64,
    pub requested_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub failure_reason: Option<String>,
    pub avatar_deleted: bool,
}

/// One image a generation returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerationImage {
    pub generation_id: Uuid,
    pub image_index: i64,
    pub url: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub content_type: Option<String>,
    pub nsfw: bool,
}

const COLUMNS: &str = "generation_id, avatar_id, owner, prompt, preset, endpoint, num_images, \
    status, image_count, requested_at, finished_at, duration_seconds, failure_reason, \
    avatar_deleted";

/// The newest generations of an avatar that still exists, newest first.
pub async fn for_avatar(
    tx: &mut Tx<'_>,
    avatar_id: Uuid,
    offset: i64,
    limit: i64,
) -> Result<Vec<Generation>, ProjectionError> {
    let rows = tx
        .fetch_all(
            &format!(
                "SELECT {COLUMNS} FROM generations
                  WHERE avatar_id = $1 AND avatar_deleted = $2
                  ORDER BY requested_at DESC, generation_id
                  LIMIT $3 OFFSET $4"
            ),
            vec![
                avatar_id.into(),
                false.into(),
                limit.clamp(1, 100).into(),
                offset.max(0).into(),
            ],
        )
        .await?;
    rows.iter().map(generation).collect()
}

/// The newest generations of a user over all their avatars that still exist, newest first.
pub async fn for_owner(
    tx: &mut Tx<'_>,
    owner: i64,
    offset: i64,
    limit: i64,
) -> Result<Vec<Generation>, ProjectionError> {
    let rows = tx
        .fetch_all(
            &format!(
                "SELECT {COLUMNS} FROM generations
                  WHERE owner = $1 AND avatar_deleted = $2
                  ORDER BY requested_at DESC, generation_id
                  LIMIT $3 OFFSET $4"
            ),
            vec![
                owner.into(),
                false.into(),
                limit.clamp(1, 100).into(),
                offset.max(0).into(),
            ],
        )
        .await?;
    rows.iter().map(generation).collect()
}

/// One generation by id, deleted avatars included.
pub async fn get(
    tx: &mut Tx<'_>,
    generation_id: Uuid,
) -> Result<Option<Generation>, ProjectionError> {
    let row = tx
        .fetch_optional(
            &format!("SELECT {COLUMNS} FROM generations WHERE generation_id = $1"),
            vec![generation_id.into()],
        )
        .await?;
    row.as_ref().map(generation).transpose()
}

/// The images of one generation, in the order the generator returned them.
pub async fn images(
    tx: &mut Tx<'_>,
    generation_id: Uuid,
) -> Result<Vec<GenerationImage>, ProjectionError> {
    let rows = tx
        .fetch_all(
            "SELECT generation_id, image_index, url, width, height, content_type, nsfw
               FROM generation_images WHERE generation_id = $1 ORDER BY image_index",
            vec![generation_id.into()],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(GenerationImage {
                generation_id: uuid(row, "generation_id")?,
                image_index: row.get("image_index")?,
                url: row.get("url")?,
                width: row.get("width")?,
                height: row.get("height")?,
                content_type: row.get("content_type")?,
                nsfw: row.get("nsfw")?,
            })
        })
        .collect()
}

fn generation(row: &SqlRow) -> Result<Generation, ProjectionError> {
    Ok(Generation {
        generation_id: uuid(row, "generation_id")?,
        avatar_id: uuid(row, "avatar_id")?,
        owner: row.get("owner")?,
        prompt: row.get("prompt")?,
        preset: row.get("preset")?,
        endpoint: row.get("endpoint")?,
        num_images: row.get("num_images")?,
        status: row.get("status")?,
        image_count: row.get("image_count")?,
        requested_at: row.get("requested_at")?,
        finished_at: row.get("finished_at")?,
        duration_seconds: row.get("duration_seconds")?,
        failure_reason: row.get("failure_reason")?,
        avatar_deleted: row.get("avatar_deleted")?,
    })
}
