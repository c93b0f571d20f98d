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

mod labels;
mod queries;

use std::collections::{BTreeSet, HashMap, HashSet};

use aggregates::presets::{
    aspect_ratio_for, AspectRatio, DEFAULT_ASPECT_RATIO, PORTRAIT_GENERATOR, PRO_GENERATOR,
    UPSCALER,
};
use aggregates::{AvatarEvent, GenerationPreset, Origin};
use chrono::{DateTime, Utc};
use db::{Arg, Tx};
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::jobs::seconds;
use crate::{FeedEvent, Projection, ProjectionError};

use queries::{generation, COLUMNS};

pub use labels::{origin, status};
pub use queries::{
    for_avatar, for_owner, get, images, pending_for_avatar, pending_for_owner,
    pending_since_before, recent_prompts_for_owner, requested_by_owner_since, requested_since,
    Generation, GenerationImage,
};

pub const NAME: &str = "generations";

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
