//! Analytics: daily counts for analysts — avatars created and deleted by type, trainings
//! started/completed/failed with their durations, generations by preset, active users.
//!
//! Days are UTC days of the event's own time. A batch's counts are summed in memory and written
//! once per (day, key), which keeps a rebuild fast; the runner's transaction makes each batch
//! count exactly once. Two small working tables (`analytics_avatars`,
//! `analytics_open_generations`) remember what later events need but do not carry: an avatar's
//! type, when its training started, a pending generation's preset and start.

use std::collections::{BTreeMap, BTreeSet};

use aggregates::AvatarEvent;
use chrono::{DateTime, NaiveDate, Utc};
use futures::future::BoxFuture;
use serde::Serialize;

use crate::jobs::seconds;
use crate::sql::Tx;
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

async fn apply_all(tx: &mut Tx<'_>, events: &[FeedEvent]) -> Result<(), ProjectionError> {
    let mut deltas = Deltas::default();
    for e in events {
        collect(tx, e, &mut deltas).await?;
    }
    flush(tx, deltas).await
}

async fn collect(tx: &mut Tx<'_>, e: &FeedEvent, d: &mut Deltas) -> Result<(), ProjectionError> {
    let at = e.event.at();
    let today = day(at);
    if let Some(user) = telegram_user(e) {
        d.active.insert((today, user));
    }
    match &e.event {
        AvatarEvent::AvatarCreated { avatar_type, .. } => {
            tx.execute(
                "INSERT INTO analytics_avatars (avatar_id, avatar_type) VALUES ($1, $2)
                 ON CONFLICT (avatar_id) DO NOTHING",
                vec![e.avatar_id.into(), avatar_type.as_str().into()],
            )
            .await?;
            d.avatars
                .entry((today, avatar_type.as_str().to_owned()))
                .or_default()
                .created += 1;
        }
        AvatarEvent::ModelDataCorrected { avatar_type, .. } => {
            tx.execute(
                "UPDATE analytics_avatars SET avatar_type = $2 WHERE avatar_id = $1",
                vec![e.avatar_id.into(), avatar_type.as_str().into()],
            )
            .await?;
        }
        AvatarEvent::TrainingStarted { avatar_type, .. } => {
            tx.execute(
                "UPDATE analytics_avatars SET training_started_at = $2 WHERE avatar_id = $1",
                vec![e.avatar_id.into(), at.into()],
            )
            .await?;
            d.trainings
                .entry((today, avatar_type.as_str().to_owned()))
                .or_default()
                .started += 1;
        }
        AvatarEvent::TrainingCompleted { .. } => {
            let (avatar_type, started) = training_of(tx, e).await?;
            // The start is forgotten on success only: a success that arrives after a failure
            // still measures from the user's request.
            tx.execute(
                "UPDATE analytics_avatars SET training_started_at = NULL WHERE avatar_id = $1",
                vec![e.avatar_id.into()],
            )
            .await?;
            let counts = d.trainings.entry((today, avatar_type)).or_default();
            counts.completed += 1;
            counts.completed_seconds += started.map_or(0.0, |s| seconds(s, at));
        }
        AvatarEvent::TrainingFailed { .. } => {
            let (avatar_type, started) = training_of(tx, e).await?;
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
            tx.execute(
                "INSERT INTO analytics_open_generations
                    (generation_id, avatar_id, preset, requested_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (generation_id) DO NOTHING",
                vec![
                    (*generation_id).into(),
                    e.avatar_id.into(),
                    preset.into(),
                    at.into(),
                ],
            )
            .await?;
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
            let (preset, requested) = close_generation(tx, *generation_id).await?;
            let counts = d.generations.entry((today, preset)).or_default();
            counts.completed += 1;
            counts.images += images.len() as i64;
            counts.completed_seconds += requested.map_or(0.0, |r| seconds(r, at));
        }
        AvatarEvent::GenerationFailed { generation_id, .. } => {
            let (preset, _) = close_generation(tx, *generation_id).await?;
            d.generations.entry((today, preset)).or_default().failed += 1;
        }
        AvatarEvent::AvatarDeleted { .. } => {
            let avatar_type = avatar_type_of(tx, e).await?;
            d.avatars.entry((today, avatar_type)).or_default().deleted += 1;
            // Pending generations of a deleted avatar are dropped, not failed.
            tx.execute(
                "DELETE FROM analytics_open_generations WHERE avatar_id = $1",
                vec![e.avatar_id.into()],
            )
            .await?;
            tx.execute(
                "DELETE FROM analytics_avatars WHERE avatar_id = $1",
                vec![e.avatar_id.into()],
            )
            .await?;
        }
        AvatarEvent::PhotoUploaded { .. }
        | AvatarEvent::PhotoRemoved { .. }
        | AvatarEvent::TrainingSubmitted { .. } => {}
    }
    Ok(())
}

async fn avatar_type_of(tx: &mut Tx<'_>, e: &FeedEvent) -> Result<String, ProjectionError> {
    Ok(training_of(tx, e).await?.0)
}

/// The avatar's type and the start of its latest training.
async fn training_of(
    tx: &mut Tx<'_>,
    e: &FeedEvent,
) -> Result<(String, Option<DateTime<Utc>>), ProjectionError> {
    let row = tx
        .fetch_optional(
            "SELECT avatar_type, training_started_at FROM analytics_avatars WHERE avatar_id = $1",
            vec![e.avatar_id.into()],
        )
        .await?;
    match row {
        Some(row) => Ok((row.get("avatar_type")?, row.get("training_started_at")?)),
        None => Ok((UNKNOWN.to_owned(), None)),
    }
}

/// Forgets a pending generation and returns its preset label and request time.
async fn close_generation(
    tx: &mut Tx<'_>,
    generation_id: uuid::Uuid,
) -> Result<(String, Option<DateTime<Utc>>), ProjectionError> {
    let row = tx
        .fetch_optional(
            "SELECT preset, requested_at FROM analytics_open_generations WHERE generation_id = $1",
            vec![generation_id.into()],
        )
        .await?;
    let Some(row) = row else {
        return Ok((UNKNOWN.to_owned(), None));
    };
    tx.execute(
        "DELETE FROM analytics_open_generations WHERE generation_id = $1",
        vec![generation_id.into()],
    )
    .await?;
    Ok((row.get("preset")?, row.get("requested_at")?))
}

async fn flush(tx: &mut Tx<'_>, d: Deltas) -> Result<(), ProjectionError> {
    for ((day, avatar_type), c) in d.avatars {
        tx.execute(
            "INSERT INTO daily_avatars (day, avatar_type, created, deleted) VALUES ($1, $2, $3, $4)
             ON CONFLICT (day, avatar_type) DO UPDATE
                SET created = daily_avatars.created + excluded.created,
                    deleted = daily_avatars.deleted + excluded.deleted",
            vec![day.into(), avatar_type.into(), c.created.into(), c.deleted.into()],
        )
        .await?;
    }
    for ((day, avatar_type), c) in d.trainings {
        tx.execute(
            "INSERT INTO daily_trainings
                (day, avatar_type, started, completed, failed, completed_seconds, failed_seconds)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (day, avatar_type) DO UPDATE
                SET started = daily_trainings.started + excluded.started,
                    completed = daily_trainings.completed + excluded.completed,
                    failed = daily_trainings.failed + excluded.failed,
                    completed_seconds =
                        daily_trainings.completed_seconds + excluded.completed_seconds,
                    failed_seconds = daily_trainings.failed_seconds + excluded.failed_seconds",
            vec![
                day.into(),
                avatar_type.into(),
                c.started.into(),
                c.completed.into(),
                c.failed.into(),
                c.completed_seconds.into(),
                c.failed_seconds.into(),
            ],
        )
        .await?;
    }
    for ((day, preset), c) in d.generations {
        tx.execute(
            "INSERT INTO daily_generations
                (day, preset, requested, completed, failed, images, completed_seconds)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (day, preset) DO UPDATE
                SET requested = daily_generations.requested + excluded.requested,
                    completed = daily_generations.completed + excluded.completed,
                    failed = daily_generations.failed + excluded.failed,
                    images = daily_generations.images + excluded.images,
                    completed_seconds =
                        daily_generations.completed_seconds + excluded.completed_seconds",
            vec![
                day.into(),
                preset.into(),
                c.requested.into(),
                c.completed.into(),
                c.failed.into(),
                c.images.into(),
                c.completed_seconds.into(),
            ],
        )
        .await?;
    }
    for (day, user) in d.active {
        tx.execute(
            "INSERT INTO daily_active_users (day, user_id) VALUES ($1, $2)
             ON CONFLICT (day, user_id) DO NOTHING",
            vec![day.into(), user.into()],
        )
        .await?;
    }
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
            *s.avatars_created.entry(row.get("avatar_type")?).or_default() += created;
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
