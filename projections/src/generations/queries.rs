//! The generations read model as its readers see it: one request with its outcome, its images,
//! and the queries the bot, the quotas and the HTTP API ask.

use chrono::{DateTime, Utc};
use db::{Arg, SqlRow, Tx};
use serde::Serialize;
use uuid::Uuid;

use crate::gallery::uuid;
use crate::ProjectionError;

use super::labels::{origin, status};

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
    /// `pack`, `starter` or `upscale`; `None` for a prompt the user typed.
    pub origin_kind: Option<String>,
    /// The pack id of a `pack` or `starter` generation.
    pub pack: Option<String>,
    /// For an upscale: the generation, image (from 0) and factor (2 or 4) it enlarged.
    pub upscale_of: Option<Uuid>,
    pub upscale_image: Option<i64>,
    pub upscale_factor: Option<i64>,
    /// The frame it was made in (see [`effective_aspect_ratio`]); `None` for an upscale.
    pub aspect_ratio: Option<String>,
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

pub(super) const COLUMNS: &str =
    "generation_id, avatar_id, owner, prompt, preset, endpoint, num_images, \
    status, image_count, requested_at, finished_at, duration_seconds, failure_reason, \
    origin_kind, pack, upscale_of, upscale_image, upscale_factor, aspect_ratio";

/// How many of `owner`'s generations wait for FAL now.
pub async fn pending_for_owner(tx: &mut Tx<'_>, owner: i64) -> Result<i64, ProjectionError> {
    Ok(tx
        .fetch_i64(
            "SELECT count(*) FROM generations WHERE owner = $1 AND status = $2",
            vec![owner.into(), status::REQUESTED.into()],
        )
        .await?
        .unwrap_or(0))
}

/// Generations of one avatar the read model still counts as waiting for FAL.
pub async fn pending_for_avatar(tx: &mut Tx<'_>, avatar_id: Uuid) -> Result<i64, ProjectionError> {
    Ok(tx
        .fetch_i64(
            "SELECT count(*) FROM generations WHERE avatar_id = $1 AND status = $2",
            vec![avatar_id.into(), status::REQUESTED.into()],
        )
        .await?
        .unwrap_or(0))
}

/// Generations `owner` asked for since `since`.
pub async fn requested_by_owner_since(
    tx: &mut Tx<'_>,
    owner: i64,
    since: DateTime<Utc>,
) -> Result<i64, ProjectionError> {
    Ok(tx
        .fetch_i64(
            "SELECT count(*) FROM generations WHERE owner = $1 AND requested_at >= $2",
            vec![owner.into(), since.into()],
        )
        .await?
        .unwrap_or(0))
}

/// Generations of avatars that still exist asked for since `since` (for every one asked for,
/// deleted avatars' included, see [`crate::analytics::paid_jobs_on`]).
pub async fn requested_since(
    tx: &mut Tx<'_>,
    since: DateTime<Utc>,
) -> Result<i64, ProjectionError> {
    Ok(tx
        .fetch_i64(
            "SELECT count(*) FROM generations WHERE requested_at >= $1",
            vec![since.into()],
        )
        .await?
        .unwrap_or(0))
}

/// Generations still waiting for FAL that were requested before `cutoff`, oldest first: what
/// the deadline sweeper must end.
pub async fn pending_since_before(
    tx: &mut Tx<'_>,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Generation>, ProjectionError> {
    let rows = tx
        .fetch_all(
            &format!(
                "SELECT {COLUMNS} FROM generations
                  WHERE status = $1 AND requested_at < $2
                  ORDER BY requested_at LIMIT $3"
            ),
            vec![status::REQUESTED.into(), cutoff.into(), limit.into()],
        )
        .await?;
    rows.iter().map(generation).collect()
}

/// The newest generations of an avatar, newest first.
pub async fn for_avatar(
    tx: &mut Tx<'_>,
    avatar_id: Uuid,
    offset: i64,
    limit: i64,
) -> Result<Vec<Generation>, ProjectionError> {
    newest_where(tx, "avatar_id", avatar_id.into(), offset, limit).await
}

/// The newest generations of a user over all their avatars, newest first.
pub async fn for_owner(
    tx: &mut Tx<'_>,
    owner: i64,
    offset: i64,
    limit: i64,
) -> Result<Vec<Generation>, ProjectionError> {
    newest_where(tx, "owner", owner.into(), offset, limit).await
}

/// A page of the newest generations whose `column` is `value`; `column` is one of ours.
async fn newest_where(
    tx: &mut Tx<'_>,
    column: &'static str,
    value: Arg,
    offset: i64,
    limit: i64,
) -> Result<Vec<Generation>, ProjectionError> {
    let rows = tx
        .fetch_all(
            &format!(
                "SELECT {COLUMNS} FROM generations
                  WHERE {column} = $1
                  ORDER BY requested_at DESC, generation_id
                  LIMIT $2 OFFSET $3"
            ),
            vec![value, limit.clamp(1, 100).into(), offset.max(0).into()],
        )
        .await?;
    rows.iter().map(generation).collect()
}

/// The prompts `owner` wrote or picked, newest first, over their avatars: what the prompt
/// screen offers again. Upscales repeat their source's prompt and starter samples
/// are the bot's own, so neither is a prompt the user would reuse.
pub async fn recent_prompts_for_owner(
    tx: &mut Tx<'_>,
    owner: i64,
    offset: i64,
    limit: i64,
) -> Result<Vec<Generation>, ProjectionError> {
    let rows = tx
        .fetch_all(
            &format!(
                "SELECT {COLUMNS} FROM generations
                  WHERE owner = $1
                    AND (origin_kind IS NULL OR origin_kind NOT IN ($2, $3))
                  ORDER BY requested_at DESC, generation_id
                  LIMIT $4 OFFSET $5"
            ),
            vec![
                owner.into(),
                origin::UPSCALE.into(),
                origin::STARTER.into(),
                limit.clamp(1, 100).into(),
                offset.max(0).into(),
            ],
        )
        .await?;
    rows.iter().map(generation).collect()
}

/// One generation by id; `None` once its avatar is deleted.
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

pub(super) fn generation(row: &SqlRow) -> Result<Generation, ProjectionError> {
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
        origin_kind: row.get("origin_kind")?,
        pack: row.get("pack")?,
        upscale_of: row
            .get::<Option<String>>("upscale_of")?
            .map(|s| {
                Uuid::parse_str(&s).map_err(|e| {
                    ProjectionError::Invalid(format!("upscale_of `{s}` is not a UUID: {e}"))
                })
            })
            .transpose()?,
        upscale_image: row.get("upscale_image")?,
        upscale_factor: row.get("upscale_factor")?,
        aspect_ratio: row.get("aspect_ratio")?,
    })
}
