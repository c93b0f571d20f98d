//! Analytics: daily counts for analysts — avatars created and deleted by type, trainings
//! started/completed/failed with their durations, generations by preset, by pack, by frame and
//! endpoint, upscales by factor, completed FAL work by endpoint, active users.
//!
//! Days are UTC days of the event's own time. A batch's counts are summed in memory and written
//! once per (day, key), which keeps a rebuild fast; the runner's transaction makes each batch
//! count exactly once. Two small working tables (`analytics_avatars`,
//! `analytics_open_generations`) remember what later events need but do not carry: an avatar's
//! type, when its training started and on which trainer, a pending generation's preset, start,
//! pack, frame and upscale factor. A batch reads the rows it needs once and writes them back once.
//!
//! No table here holds a user id, a name, a prompt or a URL. The counts use only what stays
//! readable in an erased event (type, time, preset, endpoint, status), so deleting an avatar and
//! destroying its key change none of them, and a rebuild from the erased events gives them
//! again. Active users are kept as (day, avatar) pairs and counted through the gallery's owners
//! when read; a deleted avatar's pairs go with it.
//!
//! [`VIEWS`] lists the analysts' day-keyed views and [`view_csv`] exports any of them as CSV.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aggregates::{AvatarEvent, Origin};
use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use uuid::Uuid;

use crate::gallery::uuid;
use crate::generations::effective_aspect_ratio;
use crate::jobs::seconds;
use crate::sql::{Arg, Backend, SqlRow, Tx};
use crate::{FeedEvent, Projection, ProjectionError};

pub const NAME: &str = "analytics";

/// The preset label of a generation asked for without a preset.
pub const DEFAULT_PRESET: &str = "default";
/// The preset label of an upscale: it has no preset, and counting it as `default` would make the
/// type's defaults look more used than they are.
pub const UPSCALE_PRESET: &str = "upscale";
/// The label used when an event's avatar type or preset cannot be found (never expected).
pub const UNKNOWN: &str = "unknown";

/// Builds the `daily_*` tables.
#[derive(Debug, Default, Clone, Copy)]
pub struct Analytics;

impl Projection for Analytics {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "daily_avatars",
            "daily_trainings",
            "daily_generations",
            "daily_active_avatars",
            "daily_packs",
            "daily_aspect_ratios",
            "daily_upscales",
            "daily_fal_work",
            "analytics_avatars",
            "analytics_open_generations",
        ]
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

#[derive(Debug, Default, Clone, Copy)]
struct AvatarCounts {
    created: i64,
    deleted: i64,
}

#[derive(Debug, Default, Clone, Copy)]
struct TrainingCounts {
    started: i64,
    completed: i64,
    failed: i64,
    completed_seconds: f64,
    failed_seconds: f64,
}

#[derive(Debug, Default, Clone, Copy)]
struct GenerationCounts {
    requested: i64,
    completed: i64,
    failed: i64,
    images: i64,
    completed_seconds: f64,
}

#[derive(Debug, Default, Clone, Copy)]
struct PackCounts {
    requested: i64,
    completed: i64,
    failed: i64,
    images: i64,
}

#[derive(Debug, Default, Clone, Copy)]
struct AspectCounts {
    generations: i64,
    images: i64,
}

#[derive(Debug, Default, Clone, Copy)]
struct UpscaleCounts {
    requested: i64,
    completed: i64,
    failed: i64,
}

/// Completed FAL work: what FAL bills (a training per request, a generation per image).
#[derive(Debug, Default, Clone, Copy)]
struct FalWork {
    requests: i64,
    images: i64,
}

/// `work_kind` of a training in `daily_fal_work`.
pub const TRAINING_WORK: &str = "training";
/// `work_kind` of a generation or an upscale in `daily_fal_work`.
pub const GENERATION_WORK: &str = "generation";

/// What one batch adds to the daily tables.
#[derive(Debug, Default)]
struct Deltas {
    avatars: BTreeMap<(NaiveDate, String), AvatarCounts>,
    trainings: BTreeMap<(NaiveDate, String), TrainingCounts>,
    generations: BTreeMap<(NaiveDate, String), GenerationCounts>,
    /// By (day, pack, origin kind).
    packs: BTreeMap<(NaiveDate, String, String), PackCounts>,
    /// By (day, aspect ratio, endpoint).
    aspects: BTreeMap<(NaiveDate, String, String), AspectCounts>,
    /// By (day, factor).
    upscales: BTreeMap<(NaiveDate, i64), UpscaleCounts>,
    /// By (day of completion, endpoint, work kind).
    fal: BTreeMap<(NaiveDate, String, &'static str), FalWork>,
    /// Avatars a Telegram user gave a command for, by day.
    active: BTreeSet<(NaiveDate, Uuid)>,
}

impl Deltas {
    fn pack(&mut self, day: NaiveDate, open: &OpenGeneration) -> Option<&mut PackCounts> {
        let kind = open.origin_kind.as_deref()?;
        let pack = open.pack.clone()?;
        Some(self.packs.entry((day, pack, kind.to_owned())).or_default())
    }

    fn aspect(&mut self, day: NaiveDate, open: &OpenGeneration) -> Option<&mut AspectCounts> {
        let ratio = open.aspect_ratio.clone()?;
        let endpoint = open.endpoint.clone()?;
        Some(self.aspects.entry((day, ratio, endpoint)).or_default())
    }

    fn upscale(&mut self, day: NaiveDate, open: &OpenGeneration) -> Option<&mut UpscaleCounts> {
        Some(
            self.upscales
                .entry((day, open.upscale_factor?))
                .or_default(),
        )
    }
}

fn day(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

/// Whether a Telegram user issued the event's command (metadata `actor` = `telegram:<id>`).
/// Only the fact is kept, not the id: the owner is the gallery's to know.
fn by_telegram_user(e: &FeedEvent) -> bool {
    e.metadata
        .get("actor")
        .is_some_and(|actor| actor.starts_with("telegram:"))
}

/// What the projection remembers of an avatar.
#[derive(Debug, Clone)]
struct AvatarMemo {
    avatar_type: String,
    training_started_at: Option<DateTime<Utc>>,
    /// The trainer of its latest training, for the FAL work its result counts as.
    training_endpoint: Option<String>,
}

/// What it remembers of a generation still pending. The optional fields are `None` for rows
/// written before they existed: such a result then counts by preset only.
#[derive(Debug, Clone)]
struct OpenGeneration {
    avatar_id: Uuid,
    preset: String,
    requested_at: DateTime<Utc>,
    endpoint: Option<String>,
    origin_kind: Option<String>,
    pack: Option<String>,
    upscale_factor: Option<i64>,
    aspect_ratio: Option<String>,
}

/// The working tables as far as one batch needs them, loaded once and written back once.
#[derive(Debug, Default)]
struct Memory {
    /// `None`: known not to exist (never created, or deleted).
    avatars: HashMap<Uuid, Option<AvatarMemo>>,
    avatars_changed: BTreeSet<Uuid>,
    avatars_deleted: BTreeSet<Uuid>,
    open: HashMap<Uuid, Option<OpenGeneration>>,
    /// Requested in this batch and still pending: to insert.
    opened: BTreeSet<Uuid>,
    /// Pending before this batch and finished in it: to delete.
    closed: BTreeSet<Uuid>,
}

impl Memory {
    async fn load(tx: &mut Tx<'_>, events: &[FeedEvent]) -> Result<Self, ProjectionError> {
        let mut memory = Self::default();
        let mut avatars: Vec<Uuid> = events.iter().map(|e| e.avatar_id).collect();
        avatars.sort_unstable();
        avatars.dedup();
        for id in &avatars {
            memory.avatars.insert(*id, None);
        }
        for row in &tx
            .fetch_in(
                "SELECT avatar_id, avatar_type, training_started_at, training_endpoint
                   FROM analytics_avatars WHERE avatar_id IN ({keys})",
                avatars.into_iter().map(Arg::from).collect(),
            )
            .await?
        {
            memory.avatars.insert(
                uuid(row, "avatar_id")?,
                Some(AvatarMemo {
                    avatar_type: row.get("avatar_type")?,
                    training_started_at: row.get("training_started_at")?,
                    training_endpoint: row.get("training_endpoint")?,
                }),
            );
        }
        let mut finished: Vec<Uuid> = events
            .iter()
            .filter_map(|e| match &e.event {
                AvatarEvent::GenerationCompleted { generation_id, .. }
                | AvatarEvent::GenerationFailed { generation_id, .. } => Some(*generation_id),
                _ => None,
            })
            .collect();
        finished.sort_unstable();
        finished.dedup();
        for row in &tx
            .fetch_in(
                "SELECT generation_id, avatar_id, preset, requested_at, endpoint, origin_kind,
                        pack, upscale_factor, aspect_ratio
                   FROM analytics_open_generations WHERE generation_id IN ({keys})",
                finished.into_iter().map(Arg::from).collect(),
            )
            .await?
        {
            memory.open.insert(
                uuid(row, "generation_id")?,
                Some(OpenGeneration {
                    avatar_id: uuid(row, "avatar_id")?,
                    preset: row.get("preset")?,
                    requested_at: row.get("requested_at")?,
                    endpoint: row.get("endpoint")?,
                    origin_kind: row.get("origin_kind")?,
                    pack: row.get("pack")?,
                    upscale_factor: row.get("upscale_factor")?,
                    aspect_ratio: row.get("aspect_ratio")?,
                }),
            );
        }
        Ok(memory)
    }

    fn avatar(&mut self, id: Uuid) -> Option<&mut AvatarMemo> {
        self.avatars.get_mut(&id).and_then(Option::as_mut)
    }

    /// The avatar's type and the start of its latest training.
    fn training_of(&mut self, id: Uuid) -> (String, Option<DateTime<Utc>>) {
        match self.avatar(id) {
            Some(a) => (a.avatar_type.clone(), a.training_started_at),
            None => (UNKNOWN.to_owned(), None),
        }
    }

    /// Forgets a pending generation and returns what was remembered of it; `None` if it was
    /// not pending (never expected).
    fn close(&mut self, generation_id: Uuid) -> Option<OpenGeneration> {
        let open = self.open.get_mut(&generation_id).and_then(Option::take)?;
        if !self.opened.remove(&generation_id) {
            self.closed.insert(generation_id);
        }
        Some(open)
    }

    async fn save(self, tx: &mut Tx<'_>) -> Result<(), ProjectionError> {
        let keys = |ids: &BTreeSet<Uuid>| ids.iter().copied().map(Arg::from).collect::<Vec<_>>();
        tx.execute_in(
            "DELETE FROM analytics_open_generations WHERE generation_id IN ({keys})",
            keys(&self.closed),
        )
        .await?;
        // Pending generations of a deleted avatar are dropped, not failed.
        tx.execute_in(
            "DELETE FROM analytics_open_generations WHERE avatar_id IN ({keys})",
            keys(&self.avatars_deleted),
        )
        .await?;
        tx.execute_in(
            "DELETE FROM analytics_avatars WHERE avatar_id IN ({keys})",
            keys(&self.avatars_deleted),
        )
        .await?;
        tx.execute_in(
            "DELETE FROM daily_active_avatars WHERE avatar_id IN ({keys})",
            keys(&self.avatars_deleted),
        )
        .await?;
        let opened: Vec<Vec<Arg>> = self
            .opened
            .iter()
            .filter_map(|id| {
                let open = self.open.get(id)?.as_ref()?;
                Some(vec![
                    (*id).into(),
                    open.avatar_id.into(),
                    open.preset.clone().into(),
                    open.requested_at.into(),
                    open.endpoint.clone().into(),
                    open.origin_kind.clone().into(),
                    open.pack.clone().into(),
                    open.upscale_factor.into(),
                    open.aspect_ratio.clone().into(),
                ])
            })
            .collect();
        tx.insert_rows(
            "INSERT INTO analytics_open_generations
                (generation_id, avatar_id, preset, requested_at, endpoint, origin_kind, pack,
                 upscale_factor, aspect_ratio)",
            opened,
            "ON CONFLICT (generation_id) DO NOTHING",
        )
        .await?;
        let changed: Vec<Vec<Arg>> = self
            .avatars_changed
            .iter()
            .filter_map(|id| {
                let a = self.avatars.get(id)?.as_ref()?;
                Some(vec![
                    (*id).into(),
                    a.avatar_type.clone().into(),
                    a.training_started_at.into(),
                    a.training_endpoint.clone().into(),
                ])
            })
            .collect();
        tx.insert_rows(
            "INSERT INTO analytics_avatars
                (avatar_id, avatar_type, training_started_at, training_endpoint)",
            changed,
            "ON CONFLICT (avatar_id) DO UPDATE
                SET avatar_type = excluded.avatar_type,
                    training_started_at = excluded.training_started_at,
                    training_endpoint = excluded.training_endpoint",
        )
        .await?;
        Ok(())
    }
}

async fn apply_all(tx: &mut Tx<'_>, events: &[FeedEvent]) -> Result<(), ProjectionError> {
    let mut memory = Memory::load(tx, events).await?;
    let mut deltas = Deltas::default();
    for e in events {
        collect(e, &mut memory, &mut deltas);
    }
    memory.save(tx).await?;
    flush(tx, deltas).await
}

fn collect(e: &FeedEvent, m: &mut Memory, d: &mut Deltas) {
    let at = e.event.at();
    let today = day(at);
    let id = e.avatar_id;
    if by_telegram_user(e) {
        d.active.insert((today, id));
    }
    match &e.event {
        AvatarEvent::AvatarCreated { avatar_type, .. } => {
            if m.avatar(id).is_some() {
                return;
            }
            m.avatars.insert(
                id,
                Some(AvatarMemo {
                    avatar_type: avatar_type.as_str().to_owned(),
                    training_started_at: None,
                    training_endpoint: None,
                }),
            );
            m.avatars_changed.insert(id);
            d.avatars
                .entry((today, avatar_type.as_str().to_owned()))
                .or_default()
                .created += 1;
        }
        AvatarEvent::ModelDataCorrected { avatar_type, .. } => {
            if let Some(a) = m.avatar(id) {
                a.avatar_type = avatar_type.as_str().to_owned();
                m.avatars_changed.insert(id);
            }
        }
        AvatarEvent::TrainingStarted {
            avatar_type,
            endpoint,
            ..
        } => {
            if let Some(a) = m.avatar(id) {
                a.training_started_at = Some(at);
                a.training_endpoint = Some(endpoint.clone());
                m.avatars_changed.insert(id);
            }
            d.trainings
                .entry((today, avatar_type.as_str().to_owned()))
                .or_default()
                .started += 1;
        }
        AvatarEvent::TrainingSubmitted { endpoint, .. } => {
            if let Some(a) = m.avatar(id) {
                a.training_endpoint = Some(endpoint.clone());
                m.avatars_changed.insert(id);
            }
        }
        AvatarEvent::TrainingCompleted { .. } => {
            let (avatar_type, started) = m.training_of(id);
            let trainer = m
                .avatar(id)
                .and_then(|a| a.training_endpoint.clone())
                .unwrap_or_else(|| UNKNOWN.to_owned());
            // The start is forgotten on success only: a success that arrives after a failure
            // still measures from the user's request.
            if let Some(a) = m.avatar(id) {
                a.training_started_at = None;
                m.avatars_changed.insert(id);
            }
            let counts = d.trainings.entry((today, avatar_type)).or_default();
            counts.completed += 1;
            counts.completed_seconds += started.map_or(0.0, |s| seconds(s, at));
            d.fal
                .entry((today, trainer, TRAINING_WORK))
                .or_default()
                .requests += 1;
        }
        AvatarEvent::TrainingFailed { .. } => {
            let (avatar_type, started) = m.training_of(id);
            let counts = d.trainings.entry((today, avatar_type)).or_default();
            counts.failed += 1;
            counts.failed_seconds += started.map_or(0.0, |s| seconds(s, at));
        }
        AvatarEvent::GenerationRequested {
            generation_id,
            preset,
            endpoint,
            arguments,
            aspect,
            origin: from,
            ..
        } => {
            let upscale = match from {
                Some(Origin::Upscale { factor, .. }) => Some(i64::from(factor.times())),
                _ => None,
            };
            let frame =
                effective_aspect_ratio(endpoint, arguments, *preset, *aspect, from.as_ref());
            let preset = match (preset, upscale) {
                (Some(p), _) => p.as_str(),
                (None, Some(_)) => UPSCALE_PRESET,
                (None, None) => DEFAULT_PRESET,
            };
            let open = OpenGeneration {
                avatar_id: id,
                preset: preset.to_owned(),
                requested_at: at,
                endpoint: Some(endpoint.clone()),
                origin_kind: from.as_ref().map(|o| o.kind().to_owned()),
                pack: from.as_ref().and_then(Origin::pack).map(str::to_owned),
                upscale_factor: upscale,
                aspect_ratio: frame,
            };
            d.generations
                .entry((today, preset.to_owned()))
                .or_default()
                .requested += 1;
            if let Some(c) = d.pack(today, &open) {
                c.requested += 1;
            }
            if let Some(c) = d.aspect(today, &open) {
                c.generations += 1;
            }
            if let Some(c) = d.upscale(today, &open) {
                c.requested += 1;
            }
            m.open.insert(*generation_id, Some(open));
            m.opened.insert(*generation_id);
        }
        AvatarEvent::GenerationCompleted {
            generation_id,
            images,
            ..
        } => {
            let images = images.len() as i64;
            let Some(open) = m.close(*generation_id) else {
                let counts = d
                    .generations
                    .entry((today, UNKNOWN.to_owned()))
                    .or_default();
                counts.completed += 1;
                counts.images += images;
                return;
            };
            let counts = d
                .generations
                .entry((today, open.preset.clone()))
                .or_default();
            counts.completed += 1;
            counts.images += images;
            counts.completed_seconds += seconds(open.requested_at, at);
            if let Some(c) = d.pack(today, &open) {
                c.completed += 1;
                c.images += images;
            }
            if let Some(c) = d.aspect(today, &open) {
                c.images += images;
            }
            if let Some(c) = d.upscale(today, &open) {
                c.completed += 1;
            }
            let endpoint = open.endpoint.unwrap_or_else(|| UNKNOWN.to_owned());
            let work = d.fal.entry((today, endpoint, GENERATION_WORK)).or_default();
            work.requests += 1;
            work.images += images;
        }
        AvatarEvent::GenerationFailed { generation_id, .. } => {
            let Some(open) = m.close(*generation_id) else {
                d.generations
                    .entry((today, UNKNOWN.to_owned()))
                    .or_default()
                    .failed += 1;
                return;
            };
            d.generations
                .entry((today, open.preset.clone()))
                .or_default()
                .failed += 1;
            if let Some(c) = d.pack(today, &open) {
                c.failed += 1;
            }
            if let Some(c) = d.upscale(today, &open) {
                c.failed += 1;
            }
        }
        AvatarEvent::AvatarDeleted { .. } => {
            let (avatar_type, _) = m.training_of(id);
            d.avatars.entry((today, avatar_type)).or_default().deleted += 1;
            m.avatars.insert(id, None);
            m.avatars_changed.remove(&id);
            m.avatars_deleted.insert(id);
            // Its days of activity go with it (the table's rows in `Memory::save`).
            d.active.retain(|(_, avatar)| *avatar != id);
            // Its generations pending in this batch are dropped with it.
            let mut dropped = Vec::new();
            for (gid, open) in &mut m.open {
                if open.as_ref().is_some_and(|o| o.avatar_id == id) {
                    *open = None;
                    dropped.push(*gid);
                }
            }
            for gid in dropped {
                m.opened.remove(&gid);
            }
        }
        AvatarEvent::AvatarRenamed { .. }
        | AvatarEvent::PhotoUploaded { .. }
        | AvatarEvent::PhotoRemoved { .. }
        | AvatarEvent::TrainingPhotosDeleted { .. }
        | AvatarEvent::GenerationSubmitted { .. } => {}
    }
}

/// Adds the batch's counts, one statement per table (each (day, key) at most once in it).
async fn flush(tx: &mut Tx<'_>, d: Deltas) -> Result<(), ProjectionError> {
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

/// Counts for one breakdown key on one day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrainingDay {
    pub started: i64,
    pub completed: i64,
    pub failed: i64,
    /// Mean time from request to result of the completed trainings.
    pub avg_completed_seconds: Option<f64>,
}

/// Generation counts for one preset on one day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GenerationDay {
    pub requested: i64,
    pub completed: i64,
    pub failed: i64,
    pub images: i64,
    pub avg_completed_seconds: Option<f64>,
}

/// Everything that happened on one UTC day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailySummary {
    pub day: NaiveDate,
    /// Avatars created, by type (`portrait`, `style`).
    pub avatars_created: BTreeMap<String, i64>,
    pub avatars_deleted: i64,
    /// Trainings by avatar type.
    pub trainings: BTreeMap<String, TrainingDay>,
    /// Generations by preset (`default` when none was chosen).
    pub generations: BTreeMap<String, GenerationDay>,
    /// Distinct Telegram users who issued at least one command for an avatar they still have.
    pub active_users: i64,
}

impl DailySummary {
    fn empty(day: NaiveDate) -> Self {
        Self {
            day,
            avatars_created: BTreeMap::new(),
            avatars_deleted: 0,
            trainings: BTreeMap::new(),
            generations: BTreeMap::new(),
            active_users: 0,
        }
    }

    pub fn avatars_created_total(&self) -> i64 {
        self.avatars_created.values().sum()
    }

    pub fn trainings_total(&self) -> TrainingDay {
        total_trainings(self.trainings.values())
    }

    pub fn generations_total(&self) -> GenerationDay {
        total_generations(self.generations.values())
    }
}

fn mean(sum: f64, n: i64) -> Option<f64> {
    (n > 0).then(|| sum / n as f64)
}

fn total_trainings<'a>(days: impl Iterator<Item = &'a TrainingDay>) -> TrainingDay {
    let mut t = TrainingDay::default();
    let mut seconds = 0.0;
    for d in days {
        t.started += d.started;
        t.completed += d.completed;
        t.failed += d.failed;
        seconds += d.avg_completed_seconds.unwrap_or(0.0) * d.completed as f64;
    }
    t.avg_completed_seconds = mean(seconds, t.completed);
    t
}

fn total_generations<'a>(days: impl Iterator<Item = &'a GenerationDay>) -> GenerationDay {
    let mut t = GenerationDay::default();
    let mut seconds = 0.0;
    for d in days {
        t.requested += d.requested;
        t.completed += d.completed;
        t.failed += d.failed;
        t.images += d.images;
        seconds += d.avg_completed_seconds.unwrap_or(0.0) * d.completed as f64;
    }
    t.avg_completed_seconds = mean(seconds, t.completed);
    t
}

/// The whole range: every day with activity, and totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Days with any activity, in order.
    pub days: Vec<DailySummary>,
    pub totals: Totals,
}

/// Sums over a range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    pub avatars_created: BTreeMap<String, i64>,
    pub avatars_deleted: i64,
    pub trainings: TrainingDay,
    pub generations: GenerationDay,
    /// Distinct users active on any day of the range (not the sum of the days).
    pub active_users: i64,
}

/// Trainings and generations (upscales included) started on `day` (UTC), deleted avatars'
/// included: what the service's daily cap of paid jobs counts.
pub async fn paid_jobs_on(tx: &mut Tx<'_>, day: NaiveDate) -> Result<i64, ProjectionError> {
    Ok(tx
        .fetch_i64(
            "SELECT CAST((SELECT coalesce(sum(started), 0) FROM daily_trainings WHERE day = $1)
                       + (SELECT coalesce(sum(requested), 0) FROM daily_generations WHERE day = $1)
                    AS bigint)",
            vec![day.into()],
        )
        .await?
        .unwrap_or(0))
}

/// The owners of the avatars active on the days `$1..=$2`, one row per (day, avatar): the
/// analytics tables keep no user id, the gallery knows whose each avatar is.
const ACTIVE_OWNERS: &str = "(SELECT a.day, g.owner FROM daily_active_avatars a
    JOIN gallery_avatars g ON g.avatar_id = a.avatar_id
   WHERE a.day BETWEEN $1 AND $2) active";

/// Daily summaries for `from..=to` (UTC days).
pub async fn summary(
    tx: &mut Tx<'_>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Summary, ProjectionError> {
    let range = || vec![from.into(), to.into()];
    let mut days: BTreeMap<NaiveDate, DailySummary> = BTreeMap::new();
    for row in tx
        .fetch_all(
            "SELECT day, avatar_type, created, deleted FROM daily_avatars
              WHERE day BETWEEN $1 AND $2",
            range(),
        )
        .await?
    {
        let d: NaiveDate = row.get("day")?;
        let s = days.entry(d).or_insert_with(|| DailySummary::empty(d));
        let created: i64 = row.get("created")?;
        if created > 0 {
            *s.avatars_created
                .entry(row.get("avatar_type")?)
                .or_default() += created;
        }
        s.avatars_deleted += row.get::<i64>("deleted")?;
    }
    for row in tx
        .fetch_all(
            "SELECT day, avatar_type, started, completed, failed, completed_seconds
               FROM daily_trainings WHERE day BETWEEN $1 AND $2",
            range(),
        )
        .await?
    {
        let d: NaiveDate = row.get("day")?;
        let completed: i64 = row.get("completed")?;
        let seconds: f64 = row.get("completed_seconds")?;
        days.entry(d)
            .or_insert_with(|| DailySummary::empty(d))
            .trainings
            .insert(
                row.get("avatar_type")?,
                TrainingDay {
                    started: row.get("started")?,
                    completed,
                    failed: row.get("failed")?,
                    avg_completed_seconds: mean(seconds, completed),
                },
            );
    }
    for row in tx
        .fetch_all(
            "SELECT day, preset, requested, completed, failed, images, completed_seconds
               FROM daily_generations WHERE day BETWEEN $1 AND $2",
            range(),
        )
        .await?
    {
        let d: NaiveDate = row.get("day")?;
        let completed: i64 = row.get("completed")?;
        let seconds: f64 = row.get("completed_seconds")?;
        days.entry(d)
            .or_insert_with(|| DailySummary::empty(d))
            .generations
            .insert(
                row.get("preset")?,
                GenerationDay {
                    requested: row.get("requested")?,
                    completed,
                    failed: row.get("failed")?,
                    images: row.get("images")?,
                    avg_completed_seconds: mean(seconds, completed),
                },
            );
    }
    for row in tx
        .fetch_all(
            &format!(
                "SELECT day, count(DISTINCT owner) AS users FROM {ACTIVE_OWNERS} GROUP BY day"
            ),
            range(),
        )
        .await?
    {
        let d: NaiveDate = row.get("day")?;
        days.entry(d)
            .or_insert_with(|| DailySummary::empty(d))
            .active_users = row.get("users")?;
    }
    let active_users = tx
        .fetch_i64(
            &format!("SELECT count(DISTINCT owner) FROM {ACTIVE_OWNERS}"),
            range(),
        )
        .await?
        .unwrap_or(0);

    let days: Vec<DailySummary> = days.into_values().collect();
    let mut avatars_created: BTreeMap<String, i64> = BTreeMap::new();
    for d in &days {
        for (t, n) in &d.avatars_created {
            *avatars_created.entry(t.clone()).or_default() += n;
        }
    }
    let totals = Totals {
        avatars_created,
        avatars_deleted: days.iter().map(|d| d.avatars_deleted).sum(),
        trainings: total_trainings(days.iter().flat_map(|d| d.trainings.values())),
        generations: total_generations(days.iter().flat_map(|d| d.generations.values())),
        active_users,
    };
    Ok(Summary {
        from,
        to,
        days,
        totals,
    })
}

/// The CSV columns of [`to_csv`], in order.
pub const CSV_HEADER: &str = "day,avatars_created,avatars_created_portrait,\
avatars_created_style,avatars_deleted,trainings_started,trainings_completed,trainings_failed,\
training_avg_seconds,generations_requested,generations_completed,generations_failed,\
images_generated,generation_avg_seconds,active_users";

/// One line per day (days without activity included, as zeros), for spreadsheets.
pub fn to_csv(summary: &Summary) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    let by_day: BTreeMap<NaiveDate, &DailySummary> =
        summary.days.iter().map(|d| (d.day, d)).collect();
    let fmt_avg = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    for day in summary.from.iter_days().take_while(|d| *d <= summary.to) {
        let empty = DailySummary::empty(day);
        let d = by_day.get(&day).copied().unwrap_or(&empty);
        let t = d.trainings_total();
        let g = d.generations_total();
        let created = |kind: &str| d.avatars_created.get(kind).copied().unwrap_or(0);
        out.push_str(&format!(
            "{day},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            d.avatars_created_total(),
            created("portrait"),
            created("style"),
            d.avatars_deleted,
            t.started,
            t.completed,
            t.failed,
            fmt_avg(t.avg_completed_seconds),
            g.requested,
            g.completed,
            g.failed,
            g.images,
            fmt_avg(g.avg_completed_seconds),
            d.active_users,
        ));
    }
    out
}

/// How a column of an exported view is read: each backend stores days, counts and means its own
/// way, and the CSV must read the same on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// A UTC day, written `YYYY-MM-DD`.
    Day,
    Text,
    Integer,
    /// Written with three decimals; empty when null.
    Real,
}

/// A day-keyed view analysts may export: its columns in order and the order of its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub name: &'static str,
    pub columns: &'static [(&'static str, ColumnKind)],
    /// The view's key columns, which order an export so that it is stable and diffable.
    pub key: &'static [&'static str],
}

impl View {
    /// `ORDER BY` of the key. Text compares byte by byte on both backends (PostgreSQL's default
    /// collation may ignore punctuation and put `1:1` after `16:9`), so both export alike.
    pub fn order_by(&self, backend: Backend) -> String {
        self.key
            .iter()
            .map(|column| {
                let text = self
                    .columns
                    .iter()
                    .any(|(c, kind)| c == column && *kind == ColumnKind::Text);
                match backend {
                    Backend::Postgres if text => format!("{column} COLLATE \"C\""),
                    _ => (*column).to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The CSV header line (without the newline).
    pub fn header(&self) -> String {
        self.columns
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(",")
    }
}

use ColumnKind::{Day as D, Integer as I, Real as R, Text as T};

/// Every view with a `day` column, in the order the documentation lists them. The HTTP API and
/// the CLI export these by name; a name not listed here is never put into SQL.
pub const VIEWS: &[View] = &[
    View {
        name: "analytics_daily",
        columns: &[
            ("day", D),
            ("avatars_created", I),
            ("avatars_deleted", I),
            ("trainings_started", I),
            ("trainings_completed", I),
            ("trainings_failed", I),
            ("training_avg_seconds", R),
            ("generations_requested", I),
            ("generations_completed", I),
            ("generations_failed", I),
            ("images_generated", I),
            ("generation_avg_seconds", R),
            ("active_users", I),
        ],
        key: &["day"],
    },
    View {
        name: "analytics_trainings",
        columns: &[
            ("day", D),
            ("avatar_type", T),
            ("started", I),
            ("completed", I),
            ("failed", I),
            ("avg_completed_seconds", R),
            ("avg_failed_seconds", R),
            ("failure_rate", R),
        ],
        key: &["day", "avatar_type"],
    },
    View {
        name: "analytics_generations",
        columns: &[
            ("day", D),
            ("preset", T),
            ("requested", I),
            ("completed", I),
            ("failed", I),
            ("images", I),
            ("avg_completed_seconds", R),
            ("failure_rate", R),
        ],
        key: &["day", "preset"],
    },
    View {
        name: "analytics_packs",
        columns: &[
            ("day", D),
            ("pack", T),
            ("origin_kind", T),
            ("requested", I),
            ("completed", I),
            ("failed", I),
            ("images", I),
        ],
        key: &["day", "pack", "origin_kind"],
    },
    View {
        name: "analytics_aspect_ratios",
        columns: &[
            ("day", D),
            ("aspect_ratio", T),
            ("endpoint", T),
            ("generations", I),
            ("images", I),
        ],
        key: &["day", "aspect_ratio", "endpoint"],
    },
    View {
        name: "analytics_upscales",
        columns: &[
            ("day", D),
            ("factor", I),
            ("requested", I),
            ("completed", I),
            ("failed", I),
        ],
        key: &["day", "factor"],
    },
    // The credits ledger's views (projections/src/money.rs).
    crate::money::PURCHASES_VIEW,
    crate::money::SPENDING_VIEW,
    crate::money::REFUNDS_VIEW,
    crate::money::BALANCE_TOTALS_VIEW,
    crate::money::FAL_USAGE_VIEW,
    crate::money::FAL_REVENUE_VIEW,
];

/// The exportable view called `name`.
pub fn view(name: &str) -> Option<&'static View> {
    VIEWS.iter().find(|v| v.name == name)
}

/// The rows of view `name` for `from..=to` (UTC days) as CSV, header first; `None` when `name`
/// is not in [`VIEWS`]. Only days with rows appear.
pub async fn view_csv(
    tx: &mut Tx<'_>,
    name: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Option<String>, ProjectionError> {
    let Some(view) = view(name) else {
        return Ok(None);
    };
    let columns = view.header();
    let rows = tx
        .fetch_all(
            &format!(
                "SELECT {columns} FROM {} WHERE day BETWEEN $1 AND $2 ORDER BY {}",
                view.name,
                view.order_by(tx.backend())
            ),
            vec![from.into(), to.into()],
        )
        .await?;
    let mut out = columns;
    out.push('\n');
    for row in &rows {
        let fields = view
            .columns
            .iter()
            .map(|(column, kind)| csv_field(row, column, *kind))
            .collect::<Result<Vec<_>, _>>()?;
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    Ok(Some(out))
}

fn csv_field(row: &SqlRow, column: &str, kind: ColumnKind) -> Result<String, ProjectionError> {
    Ok(match kind {
        ColumnKind::Day => row
            .get::<Option<NaiveDate>>(column)?
            .map_or(String::new(), |d| d.to_string()),
        ColumnKind::Text => csv_text(&row.get::<Option<String>>(column)?.unwrap_or_default()),
        ColumnKind::Integer => row
            .get::<Option<i64>>(column)?
            .map_or(String::new(), |n| n.to_string()),
        ColumnKind::Real => row
            .get::<Option<f64>>(column)?
            .map_or(String::new(), |v| format!("{v:.3}")),
    })
}

/// One text field as RFC 4180 writes it: quoted when it holds a comma, a quote or a line break.
/// A leading `=`, `+`, `-` or `@` is prefixed with `'` so that a spreadsheet never runs it as a
/// formula (no value written today starts so; pack ids and endpoints come from operators).
pub fn csv_text(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_is_keyed_by_day_and_named_once() {
        let mut names: Vec<&str> = VIEWS.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VIEWS.len());
        for v in VIEWS {
            assert_eq!(v.columns[0], ("day", ColumnKind::Day), "{}", v.name);
            for key in v.key {
                assert!(
                    v.columns.iter().any(|(c, _)| c == key),
                    "{} orders by {key}, not one of its columns",
                    v.name
                );
            }
        }
        assert_eq!(
            view("analytics_upscales").map(View::header).as_deref(),
            Some("day,factor,requested,completed,failed")
        );
        assert!(view("gallery_avatars").is_none());
        let packs = view("analytics_packs").unwrap();
        assert_eq!(
            packs.order_by(Backend::Postgres),
            "day, pack COLLATE \"C\", origin_kind COLLATE \"C\""
        );
        assert_eq!(packs.order_by(Backend::Sqlite), "day, pack, origin_kind");
    }

    #[test]
    fn text_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_text("portrait-business"), "portrait-business");
        assert_eq!(csv_text("fal-ai/flux-lora"), "fal-ai/flux-lora");
        assert_eq!(csv_text("a,b"), "\"a,b\"");
        assert_eq!(csv_text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_text("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_text("=1+1"), "'=1+1");
        assert_eq!(csv_text(""), "");
    }
}
