//! Generations: one row per image request (prompt, preset, endpoint, outcome, duration) and one
//! row per returned image, by avatar and by user.
//!
//! Each row also says where the request came from (a typed prompt, a pack, the starter samples
//! or an upscale of an earlier image) and the frame it was made in, so analysts can group by
//! them without reading events.
//!
//! When an avatar is deleted its generations and their images are removed: they hold the
//! user's prompts and the URLs of the pictures. What analysts count of them stays in the daily
//! analytics.

use std::collections::{BTreeSet, HashMap, HashSet};

use aggregates::presets::{
    aspect_ratio_for, AspectRatio, DEFAULT_ASPECT_RATIO, PORTRAIT_GENERATOR, PRO_GENERATOR,
    UPSCALER,
};
use aggregates::{AvatarEvent, GenerationPreset, Origin};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use uuid::Uuid;

use crate::gallery::uuid;
use crate::jobs::seconds;
use crate::sql::{Arg, SqlRow, Tx};
use crate::{FeedEvent, Projection, ProjectionError};

pub const NAME: &str = "generations";

/// Generation statuses as stored.
pub mod status {
    pub const REQUESTED: &str = "requested";
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";
}

/// Origin kinds as stored (`origin_kind`); NULL is a prompt the user typed.
pub mod origin {
    pub const PACK: &str = "pack";
    pub const STARTER: &str = "starter";
    pub const UPSCALE: &str = "upscale";
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
        Box::pin(apply_all(tx, std::slice::from_ref(event)))
    }

    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        events: &'a [FeedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(apply_all(tx, events))
    }
}

/// Loads the generations the batch mentions once, applies the events in memory and writes each
/// changed row once, with the batch's images in as few statements as possible.
async fn apply_all(tx: &mut Tx<'_>, events: &[FeedEvent]) -> Result<(), ProjectionError> {
    let mut ids: Vec<Uuid> = events
        .iter()
        .filter_map(|e| match &e.event {
            AvatarEvent::GenerationRequested { generation_id, .. }
            | AvatarEvent::GenerationCompleted { generation_id, .. }
            | AvatarEvent::GenerationFailed { generation_id, .. } => Some(*generation_id),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut rows: HashMap<Uuid, Generation> = HashMap::new();
    for row in &tx
        .fetch_in(
            &format!("SELECT {COLUMNS} FROM generations WHERE generation_id IN ({{keys}})"),
            ids.into_iter().map(Arg::from).collect(),
        )
        .await?
    {
        let g = generation(row)?;
        rows.insert(g.generation_id, g);
    }

    let mut changed: Vec<Uuid> = Vec::new();
    let mut seen = HashSet::new();
    let mut images: Vec<(Uuid, Vec<Arg>)> = Vec::new();
    let mut deleted: BTreeSet<Uuid> = BTreeSet::new();
    for e in events {
        let at = e.event.at();
        match &e.event {
            AvatarEvent::GenerationRequested {
                owner,
                generation_id,
                prompt,
                preset,
                endpoint,
                arguments,
                num_images,
                aspect,
                origin,
                ..
            } => {
                if rows.contains_key(generation_id) {
                    continue;
                }
                let upscale = match origin {
                    Some(Origin::Upscale { of, image, factor }) => {
                        Some((*of, i64::from(*image), i64::from(factor.times())))
                    }
                    _ => None,
                };
                rows.insert(
                    *generation_id,
                    Generation {
                        generation_id: *generation_id,
                        avatar_id: e.avatar_id,
                        owner: *owner,
                        prompt: prompt.clone(),
                        preset: preset.map(|p| p.as_str().to_owned()),
                        endpoint: endpoint.clone(),
                        num_images: i64::from(*num_images),
                        status: status::REQUESTED.into(),
                        image_count: 0,
                        requested_at: at,
                        finished_at: None,
                        duration_seconds: None,
                        failure_reason: None,
                        origin_kind: origin.as_ref().map(|o| o.kind().to_owned()),
                        pack: origin.as_ref().and_then(Origin::pack).map(str::to_owned),
                        upscale_of: upscale.map(|u| u.0),
                        upscale_image: upscale.map(|u| u.1),
                        upscale_factor: upscale.map(|u| u.2),
                        aspect_ratio: effective_aspect_ratio(
                            endpoint,
                            arguments,
                            *preset,
                            *aspect,
                            origin.as_ref(),
                        ),
                    },
                );
                if seen.insert(*generation_id) {
                    changed.push(*generation_id);
                }
            }
            AvatarEvent::GenerationCompleted {
                generation_id,
                images: returned,
                ..
            } => {
                let Some(row) = rows.get_mut(generation_id) else {
                    continue;
                };
                finish(row, at, status::COMPLETED, returned.len(), None);
                for (index, image) in returned.iter().enumerate() {
                    images.push((
                        *generation_id,
                        vec![
                            (*generation_id).into(),
                            (index as i64).into(),
                            image.url.as_str().into(),
                            image.width.map(i64::from).into(),
                            image.height.map(i64::from).into(),
                            image.content_type.clone().into(),
                            image.nsfw.into(),
                        ],
                    ));
                }
                if seen.insert(*generation_id) {
                    changed.push(*generation_id);
                }
            }
            AvatarEvent::GenerationFailed {
                generation_id,
                reason,
                ..
            } => {
                let Some(row) = rows.get_mut(generation_id) else {
                    continue;
                };
                finish(row, at, status::FAILED, 0, Some(reason));
                if seen.insert(*generation_id) {
                    changed.push(*generation_id);
                }
            }
            AvatarEvent::AvatarDeleted { .. } => {
                // The rows this batch holds go in memory, the avatar's others in the table.
                rows.retain(|_, r| r.avatar_id != e.avatar_id);
                deleted.insert(e.avatar_id);
            }
            _ => {}
        }
    }

    let deleted: Vec<Arg> = deleted.into_iter().map(Arg::from).collect();
    // Images first: they are found through their generation's avatar.
    tx.execute_in(
        "DELETE FROM generation_images WHERE generation_id IN
            (SELECT generation_id FROM generations WHERE avatar_id IN ({keys}))",
        deleted.clone(),
    )
    .await?;
    tx.execute_in(
        "DELETE FROM generations WHERE avatar_id IN ({keys})",
        deleted,
    )
    .await?;
    let upserts: Vec<Vec<Arg>> = changed
        .iter()
        .filter_map(|id| rows.get(id))
        .map(generation_args)
        .collect();
    // Images of a generation whose avatar the batch then deleted are not written at all.
    let images: Vec<Vec<Arg>> = images
        .into_iter()
        .filter(|(generation_id, _)| rows.contains_key(generation_id))
        .map(|(_, row)| row)
        .collect();
    tx.insert_rows(
        &format!("INSERT INTO generations ({COLUMNS})"),
        upserts,
        UPSERT,
    )
    .await?;
    tx.insert_rows(
        "INSERT INTO generation_images
            (generation_id, image_index, url, width, height, content_type, nsfw)",
        images,
        "ON CONFLICT (generation_id, image_index) DO NOTHING",
    )
    .await?;
    Ok(())
}

const UPSERT: &str = "ON CONFLICT (generation_id) DO UPDATE SET
    avatar_id = excluded.avatar_id, owner = excluded.owner, prompt = excluded.prompt,
    preset = excluded.preset, endpoint = excluded.endpoint, num_images = excluded.num_images,
    status = excluded.status, image_count = excluded.image_count,
    requested_at = excluded.requested_at, finished_at = excluded.finished_at,
    duration_seconds = excluded.duration_seconds, failure_reason = excluded.failure_reason,
    origin_kind = excluded.origin_kind,
    pack = excluded.pack, upscale_of = excluded.upscale_of,
    upscale_image = excluded.upscale_image, upscale_factor = excluded.upscale_factor,
    aspect_ratio = excluded.aspect_ratio";

/// The frame a generation was made in, as `1:1`, `3:4`, `9:16`, `4:3` or `16:9`.
///
/// `aspect` is only set when the user chose a frame apart from the preset, so otherwise the
/// frame is read back from the arguments sent: the LoRA endpoint's named `image_size`, or the
/// ultra endpoint's `aspect_ratio`. That also gives events older than the choice their frame.
/// Erased arguments (`{}`, once the avatar's key is destroyed) give the preset's frame on the two
/// generators, as the arguments did, so that a rebuild counts the same frames as the live run.
/// `None` for an upscale (it keeps its source's frame, which is counted once, on the source) and
/// for other arguments that name no frame.
pub fn effective_aspect_ratio(
    endpoint: &str,
    arguments: &serde_json::Value,
    preset: Option<GenerationPreset>,
    aspect: Option<AspectRatio>,
    origin: Option<&Origin>,
) -> Option<String> {
    if endpoint == UPSCALER || matches!(origin, Some(Origin::Upscale { .. })) {
        return None;
    }
    if let Some(aspect) = aspect {
        return Some(aspect.ratio().to_owned());
    }
    let named = |key: &str| arguments.get(key).and_then(|v| v.as_str());
    if let Some(ratio) = named("aspect_ratio") {
        return Some(ratio.to_owned());
    }
    if let Some(size) = named("image_size") {
        return Some(aspect_ratio_for(size).to_owned());
    }
    let erased = arguments.as_object().is_some_and(|o| o.is_empty());
    let generator = endpoint == PORTRAIT_GENERATOR || endpoint == PRO_GENERATOR;
    (erased && generator).then(|| {
        preset
            .map_or(DEFAULT_ASPECT_RATIO, |p| {
                aspect_ratio_for(p.values().image_size)
            })
            .to_owned()
    })
}

fn finish(
    row: &mut Generation,
    at: DateTime<Utc>,
    to: &str,
    images: usize,
    reason: Option<&String>,
) {
    row.status = to.to_owned();
    row.finished_at = Some(at);
    row.image_count = images as i64;
    row.duration_seconds = Some(seconds(row.requested_at, at));
    row.failure_reason = reason.cloned();
}

/// The values of a row, in [`COLUMNS`] order.
fn generation_args(g: &Generation) -> Vec<Arg> {
    vec![
        g.generation_id.into(),
        g.avatar_id.into(),
        g.owner.into(),
        g.prompt.clone().into(),
        g.preset.clone().into(),
        g.endpoint.clone().into(),
        g.num_images.into(),
        g.status.clone().into(),
        g.image_count.into(),
        g.requested_at.into(),
        g.finished_at.into(),
        g.duration_seconds.into(),
        g.failure_reason.clone().into(),
        g.origin_kind.clone().into(),
        g.pack.clone().into(),
        g.upscale_of.map(|id| id.to_string()).into(),
        g.upscale_image.into(),
        g.upscale_factor.into(),
        g.aspect_ratio.clone().into(),
    ]
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

const COLUMNS: &str = "generation_id, avatar_id, owner, prompt, preset, endpoint, num_images, \
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
    let rows = tx
        .fetch_all(
            &format!(
                "SELECT {COLUMNS} FROM generations
                  WHERE avatar_id = $1
                  ORDER BY requested_at DESC, generation_id
                  LIMIT $2 OFFSET $3"
            ),
            vec![
                avatar_id.into(),
                limit.clamp(1, 100).into(),
                offset.max(0).into(),
            ],
        )
        .await?;
    rows.iter().map(generation).collect()
}

/// The newest generations of a user over all their avatars, newest first.
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
                  WHERE owner = $1
                  ORDER BY requested_at DESC, generation_id
                  LIMIT $2 OFFSET $3"
            ),
            vec![
                owner.into(),
                limit.clamp(1, 100).into(),
                offset.max(0).into(),
            ],
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

#[cfg(test)]
mod tests {
    use aggregates::UpscaleFactor;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_frame_is_the_choice_or_else_what_the_arguments_asked_for() {
        let lora = |size: &str| json!({"prompt": "p", "image_size": size, "num_images": 1});
        let frame = |endpoint, arguments: &serde_json::Value, aspect, origin: Option<&Origin>| {
            effective_aspect_ratio(endpoint, arguments, None, aspect, origin)
        };
        assert_eq!(
            frame(PORTRAIT_GENERATOR, &lora("square_hd"), None, None).as_deref(),
            Some("1:1")
        );
        assert_eq!(
            frame(PORTRAIT_GENERATOR, &lora("portrait_4_3"), None, None).as_deref(),
            Some("3:4")
        );
        assert_eq!(
            frame(
                PORTRAIT_GENERATOR,
                &lora("landscape_16_9"),
                Some(AspectRatio::Wide),
                None
            )
            .as_deref(),
            Some("16:9")
        );
        let ultra = json!({"prompt": "p", "aspect_ratio": "9:16", "finetune_id": "f"});
        assert_eq!(
            frame(PRO_GENERATOR, &ultra, None, None).as_deref(),
            Some("9:16")
        );
        let pack = Origin::Pack {
            pack: "portrait-business".into(),
        };
        assert_eq!(
            frame(PRO_GENERATOR, &ultra, None, Some(&pack)).as_deref(),
            Some("9:16")
        );
        assert_eq!(
            frame(PORTRAIT_GENERATOR, &json!({"prompt": "p"}), None, None),
            None
        );
    }

    #[test]
    fn erased_arguments_give_the_frame_the_preset_asked_for() {
        let erased = json!({});
        let frame =
            |endpoint, preset| effective_aspect_ratio(endpoint, &erased, preset, None, None);
        // The same frames the live arguments name: the preset's size, or the default square.
        assert_eq!(
            frame(PORTRAIT_GENERATOR, Some(GenerationPreset::Portrait)).as_deref(),
            Some("3:4")
        );
        assert_eq!(
            frame(PRO_GENERATOR, Some(GenerationPreset::Landscape)).as_deref(),
            Some("4:3")
        );
        assert_eq!(frame(PORTRAIT_GENERATOR, None).as_deref(), Some("1:1"));
        assert_eq!(frame(PRO_GENERATOR, None).as_deref(), Some("1:1"));
        // A choice apart from the preset is its own field, readable after erasure too.
        assert_eq!(
            effective_aspect_ratio(
                PORTRAIT_GENERATOR,
                &erased,
                Some(GenerationPreset::Fast),
                Some(AspectRatio::Tall),
                None
            )
            .as_deref(),
            Some("9:16")
        );
        assert_eq!(frame(UPSCALER, None), None);
        assert_eq!(frame("fal-ai/some-other-generator", None), None);
    }

    #[test]
    fn erased_arguments_give_the_frame_live_arguments_gave() {
        use aggregates::avatar::generation_arguments;
        use aggregates::TrainedModel;
        let lora = TrainedModel::Portrait {
            lora_file_url: "http://fal/files/lora.safetensors".into(),
            config_file_url: None,
            trigger_phrase: "PERSON_1".into(),
        };
        let pro = TrainedModel::ProFinetune {
            finetune_id: "finetune-1".into(),
            trigger_word: "STYLE_1".into(),
        };
        for (model, endpoint) in [(&lora, PORTRAIT_GENERATOR), (&pro, PRO_GENERATOR)] {
            for preset in GenerationPreset::ALL.map(Some).into_iter().chain([None]) {
                let live = generation_arguments(model, preset, None, "p".into(), 1);
                assert_eq!(
                    effective_aspect_ratio(endpoint, &json!({}), preset, None, None),
                    effective_aspect_ratio(endpoint, &live, preset, None, None),
                    "{endpoint} {preset:?}"
                );
            }
        }
    }

    #[test]
    fn an_upscale_has_no_frame_of_its_own() {
        let upscale = Origin::Upscale {
            of: Uuid::nil(),
            image: 0,
            factor: UpscaleFactor::X4,
        };
        let arguments = json!({
            "image_url": "http://fal/files/a.jpg",
            "upscale_mode": "factor",
            "upscale_factor": 4.0
        });
        assert_eq!(
            effective_aspect_ratio(UPSCALER, &arguments, None, None, Some(&upscale)),
            None
        );
        assert_eq!(
            effective_aspect_ratio(UPSCALER, &arguments, None, None, None),
            None
        );
    }
}
