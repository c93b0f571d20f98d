//! The analysts' daily summary read back from the `daily_*` tables, and its CSV.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use db::Tx;
use serde::Serialize;

use crate::ProjectionError;

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
