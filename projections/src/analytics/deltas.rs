//! What one batch adds to the daily tables, summed in memory, and the statements that add it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use db::Tx;
use uuid::Uuid;

use crate::ProjectionError;

use super::memory::OpenGeneration;

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct AvatarCounts {
    pub(super) created: i64,
    pub(super) deleted: i64,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct TrainingCounts {
    pub(super) started: i64,
    pub(super) completed: i64,
    pub(super) failed: i64,
    pub(super) completed_seconds: f64,
    pub(super) failed_seconds: f64,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct GenerationCounts {
    pub(super) requested: i64,
    pub(super) completed: i64,
    pub(super) failed: i64,
    pub(super) images: i64,
    pub(super) completed_seconds: f64,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PackCounts {
    pub(super) requested: i64,
    pub(super) completed: i64,
    pub(super) failed: i64,
    pub(super) images: i64,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct AspectCounts {
    pub(super) generations: i64,
    pub(super) images: i64,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct UpscaleCounts {
    pub(super) requested: i64,
    pub(super) completed: i64,
    pub(super) failed: i64,
}

/// Completed FAL work: what FAL bills (a training per request, a generation per image).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct FalWork {
    pub(super) requests: i64,
    pub(super) images: i64,
}

/// `work_kind` of a training in `daily_fal_work`.
pub const TRAINING_WORK: &str = "training";
/// `work_kind` of a generation or an upscale in `daily_fal_work`.
pub const GENERATION_WORK: &str = "generation";

/// What one batch adds to the daily tables.
#[derive(Debug, Default)]
pub(super) struct Deltas {
    pub(super) avatars: BTreeMap<(NaiveDate, String), AvatarCounts>,
    pub(super) trainings: BTreeMap<(NaiveDate, String), TrainingCounts>,
    pub(super) generations: BTreeMap<(NaiveDate, String), GenerationCounts>,
    /// By (day, pack, origin kind).
    pub(super) packs: BTreeMap<(NaiveDate, String, String), PackCounts>,
    /// By (day, aspect ratio, endpoint).
    pub(super) aspects: BTreeMap<(NaiveDate, String, String), AspectCounts>,
    /// By (day, factor).
    pub(super) upscales: BTreeMap<(NaiveDate, i64), UpscaleCounts>,
    /// By (day of completion, endpoint, work kind).
    pub(super) fal: BTreeMap<(NaiveDate, String, &'static str), FalWork>,
    /// Avatars a Telegram user gave a command for, by day.
    pub(super) active: BTreeSet<(NaiveDate, Uuid)>,
}

impl Deltas {
    pub(super) fn pack(
        &mut self,
        day: NaiveDate,
        open: &OpenGeneration,
    ) -> Option<&mut PackCounts> {
        let kind = open.origin_kind.as_deref()?;
        let pack = open.pack.clone()?;
        Some(self.packs.entry((day, pack, kind.to_owned())).or_default())
    }

    pub(super) fn aspect(
        &mut self,
        day: NaiveDate,
        open: &OpenGeneration,
    ) -> Option<&mut AspectCounts> {
        let ratio = open.aspect_ratio.clone()?;
        let endpoint = open.endpoint.clone()?;
        Some(self.aspects.entry((day, ratio, endpoint)).or_default())
    }

    pub(super) fn upscale(
        &mut self,
        day: NaiveDate,
        open: &OpenGeneration,
    ) -> Option<&mut UpscaleCounts> {
        Some(
            self.upscales
                .entry((day, open.upscale_factor?))
                .or_default(),
        )
    }
}

/// Adds the batch's counts, one statement per table (each (day, key) at most once in it).
pub(super) async fn flush(tx: &mut Tx<'_>, d: Deltas) -> Result<(), ProjectionError> {
    tx.insert_rows(
        "INSERT INTO daily_avatars (day, avatar_type, created, deleted)",
        d.avatars
            .into_iter()
            .map(|((day, kind), c)| {
                vec![day.into(), kind.into(), c.created.into(), c.deleted.into()]
            })
            .collect(),
        "ON CONFLICT (day, avatar_type) DO UPDATE
            SET created = daily_avatars.created + excluded.created,
                deleted = daily_avatars.deleted + excluded.deleted",
    )
    .await?;
    tx.insert_rows(
        "INSERT INTO daily_trainings
            (day, avatar_type, started, completed, failed, completed_seconds, failed_seconds)",
        d.trainings
            .into_iter()
            .map(|((day, kind), c)| {
                vec![
                    day.into(),
                    kind.into(),
                    c.started.into(),
                    c.completed.into(),
                    c.failed.into(),
                    c.completed_seconds.into(),
                    c.failed_seconds.into(),
                ]
            })
            .collect(),
        "ON CONFLICT (day, avatar_type) DO UPDATE
            SET started = daily_trainings.started + excluded.started,
                completed = daily_trainings.completed + excluded.completed,
                failed = daily_trainings.failed + excluded.failed,
                completed_seconds = daily_trainings.completed_seconds + excluded.completed_seconds,
                failed_seconds = daily_trainings.failed_seconds + excluded.failed_seconds",
    )
    .await?;
    tx.insert_rows(
        "INSERT INTO daily_generations
            (day, preset, requested, completed, failed, images, completed_seconds)",
        d.generations
            .into_iter()
            .map(|((day, preset), c)| {
                vec![
                    day.into(),
                    preset.into(),
                    c.requested.into(),
                    c.completed.into(),
                    c.failed.into(),
                    c.images.into(),
                    c.completed_seconds.into(),
                ]
            })
            .collect(),
        "ON CONFLICT (day, preset) DO UPDATE
            SET requested = daily_generations.requested + excluded.requested,
                completed = daily_generations.completed + excluded.completed,
                failed = daily_generations.failed + excluded.failed,
                images = daily_generations.images + excluded.images,
                completed_seconds =
                    daily_generations.completed_seconds + excluded.completed_seconds",
    )
    .await?;
    tx.insert_rows(
        "INSERT INTO daily_packs (day, pack, origin_kind, requested, completed, failed, images)",
        d.packs
            .into_iter()
            .map(|((day, pack, kind), c)| {
                vec![
                    day.into(),
                    pack.into(),
                    kind.into(),
                    c.requested.into(),
                    c.completed.into(),
                    c.failed.into(),
                    c.images.into(),
                ]
            })
            .collect(),
        "ON CONFLICT (day, pack, origin_kind) DO UPDATE
            SET requested = daily_packs.requested + excluded.requested,
                completed = daily_packs.completed + excluded.completed,
                failed = daily_packs.failed + excluded.failed,
                images = daily_packs.images + excluded.images",
    )
    .await?;
    tx.insert_rows(
        "INSERT INTO daily_aspect_ratios (day, aspect_ratio, endpoint, generations, images)",
        d.aspects
            .into_iter()
            .map(|((day, ratio, endpoint), c)| {
                vec![
                    day.into(),
                    ratio.into(),
                    endpoint.into(),
                    c.generations.into(),
                    c.images.into(),
                ]
            })
            .collect(),
        "ON CONFLICT (day, aspect_ratio, endpoint) DO UPDATE
            SET generations = daily_aspect_ratios.generations + excluded.generations,
                images = daily_aspect_ratios.images + excluded.images",
    )
    .await?;
    tx.insert_rows(
        "INSERT INTO daily_upscales (day, factor, requested, completed, failed)",
        d.upscales
            .into_iter()
            .map(|((day, factor), c)| {
                vec![
                    day.into(),
                    factor.into(),
                    c.requested.into(),
                    c.completed.into(),
                    c.failed.into(),
                ]
            })
            .collect(),
        "ON CONFLICT (day, factor) DO UPDATE
            SET requested = daily_upscales.requested + excluded.requested,
                completed = daily_upscales.completed + excluded.completed,
                failed = daily_upscales.failed + excluded.failed",
    )
    .await?;
    tx.insert_rows(
        "INSERT INTO daily_fal_work (day, endpoint, work_kind, requests, images)",
        d.fal
            .into_iter()
            .map(|((day, endpoint, kind), w)| {
                vec![
                    day.into(),
                    endpoint.into(),
                    kind.into(),
                    w.requests.into(),
                    w.images.into(),
                ]
            })
            .collect(),
        "ON CONFLICT (day, endpoint, work_kind) DO UPDATE
            SET requests = daily_fal_work.requests + excluded.requests,
                images = daily_fal_work.images + excluded.images",
    )
    .await?;
    tx.insert_rows(
        "INSERT INTO daily_active_avatars (day, avatar_id)",
        d.active
            .into_iter()
            .map(|(day, avatar)| vec![day.into(), avatar.into()])
            .collect(),
        "ON CONFLICT (day, avatar_id) DO NOTHING",
    )
    .await?;
    Ok(())
}
