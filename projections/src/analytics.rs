//! Analytics: daily counts for analysts — avatars created and deleted by type, trainings
//! started/completed/failed with their durations, generations by preset, active users.
//!
//! Days are UTC days of the event's own time. A batch's counts are summed in memory and written
//! once per (day, key), which keeps a rebuild fast; the runner's transaction makes each batch
//! count exactly once. Two small working tables (`analytics_avatars`,
//! `analytics_open_generations`) remember what later events need but do not carry: an avatar's
//! type, when its training started, a pending generation's preset and start. A batch reads the
//! rows it needs once and writes them back once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aggregates::AvatarEvent;
use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use serde::Serialize;
use uuid::Uuid;

use crate::gallery::uuid;
use crate::jobs::seconds;
use crate::sql::{Arg, Tx};
use crate::{FeedEvent, Projection, ProjectionError};

pub const NAME: &str = "analytics";

/// The preset label of a generation asked for without a preset.
pub const DEFAULT_PRESET: &str = "default";
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
            "daily_active_users",
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

/// What one batch adds to the daily tables.
#[derive(Debug, Default)]
struct Deltas {
    avatars: BTreeMap<(NaiveDate, String), AvatarCounts>,
    trainings: BTreeMap<(NaiveDate, String), TrainingCounts>,
    generations: BTreeMap<(NaiveDate, String), GenerationCounts>,
    active: BTreeSet<(NaiveDate, i64)>,
}

fn day(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

/// The Telegram user who issued the event's command, from its metadata (`telegram:<id>`).
fn telegram_user(e: &FeedEvent) -> Option<i64> {
    e.metadata
        .get("actor")?
        .strip_prefix("telegram:")?
        .parse()
        .ok()
}

/// What the projection remembers of an avatar.
#[derive(Debug, Clone)]
struct AvatarMemo {
    avatar_type: String,
    training_started_at: Option<DateTime<Utc>>,
}

/// What it remembers of a generation still pending.
#[derive(Debug, Clone)]
struct OpenGeneration {
    avatar_id: Uuid,
    preset: String,
    requested_at: DateTime<Utc>,
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
                "SELECT avatar_id, avatar_type, training_started_at FROM analytics_avatars
                  WHERE avatar_id IN ({keys})",
                avatars.into_iter().map(Arg::from).collect(),
            )
            .await?
        {
            memory.avatars.insert(
                uuid(row, "avatar_id")?,
                Some(AvatarMemo {
                    avatar_type: row.get("avatar_type")?,
                    training_started_at: row.get("training_started_at")?,
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
                "SELECT generation_id, avatar_id, preset, requested_at
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

    /// Forgets a pending generation; its preset label and request time.
    fn close(&mut self, generation_id: Uuid) -> (String, Option<DateTime<Utc>>) {
        let Some(open) = self.open.get_mut(&generation_id).and_then(Option::take) else {
            return (UNKNOWN.to_owned(), None);
        };
        if !self.opened.remove(&generation_id) {
            self.closed.insert(generation_id);
        }
        (open.preset, Some(open.requested_at))
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
                ])
            })
            .collect();
        tx.insert_rows(
            "INSERT INTO analytics_open_generations
                (generation_id, avatar_id, preset, requested_at)",
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
                ])
            })
            .collect();
        tx.insert_rows(
            "INSERT INTO analytics_avatars (avatar_id, avatar_type, training_started_at)",
            changed,
            "ON CONFLICT (avatar_id) DO UPDATE
                SET avatar_type = excluded.avatar_type,
                    training_started_at = excluded.training_started_at",
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
    if let Some(user) = telegram_user(e) {
        d.active.insert((today, user));
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
        AvatarEvent::TrainingStarted { avatar_type, .. } => {
            if let Some(a) = m.avatar(id) {
                a.training_started_at = Some(at);
                m.avatars_changed.insert(id);
            }
            d.trainings
                .entry((today, avatar_type.as_str().to_owned()))
                .or_default()
                .started += 1;
        }
        AvatarEvent::TrainingCompleted { .. } => {
            let (avatar_type, started) = m.training_of(id);
            // The start is forgotten on success only: a success that arrives after a failure
            // still measures from the user's request.
            if let Some(a) = m.avatar(id) {
                a.training_started_at = None;
                m.avatars_changed.insert(id);
            }
            let counts = d.trainings.entry((today, avatar_type)).or_default();
            counts.completed += 1;
            counts.completed_seconds += started.map_or(0.0, |s| seconds(s, at));
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
            ..
        } => {
            let preset = preset.map_or(DEFAULT_PRESET, |p| p.as_str());
            m.open.insert(
                *generation_id,
                Some(OpenGeneration {
                    avatar_id: id,
                    preset: preset.to_owned(),
                    requested_at: at,
                }),
            );
            m.opened.insert(*generation_id);
            d.generations
                .entry((today, preset.to_owned()))
                .or_default()
                .requested += 1;
        }
        AvatarEvent::GenerationCompleted {
            generation_id,
            images,
            ..
        } => {
            let (preset, requested) = m.close(*generation_id);
            let counts = d.generations.entry((today, preset)).or_default();
            counts.completed += 1;
            counts.images += images.len() as i64;
            counts.completed_seconds += requested.map_or(0.0, |r| seconds(r, at));
        }
        AvatarEvent::GenerationFailed { generation_id, .. } => {
            let (preset, _) = m.close(*generation_id);
            d.generations.entry((today, preset)).or_default().failed += 1;
        }
        AvatarEvent::AvatarDeleted { .. } => {
            let (avatar_type, _) = m.training_of(id);
            d.avatars.entry((today, avatar_type)).or_default().deleted += 1;
            m.avatars.insert(id, None);
            m.avatars_changed.remove(&id);
            m.avatars_deleted.insert(id);
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
        | AvatarEvent::TrainingSubmitted { .. }
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
        "INSERT INTO daily_active_users (day, user_id)",
        d.active
            .into_iter()
            .map(|(day, user)| vec![day.into(), user.into()])
            .collect(),
        "ON CONFLICT (day, user_id) DO NOTHING",
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
    /// Distinct Telegram users who issued at least one command.
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
            "SELECT day, count(*) AS users FROM daily_active_users
              WHERE day BETWEEN $1 AND $2 GROUP BY day",
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
            "SELECT count(DISTINCT user_id) FROM daily_active_users WHERE day BETWEEN $1 AND $2",
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
