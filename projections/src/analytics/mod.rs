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

mod collect;
mod deltas;
mod memory;
mod report;
mod views;

use db::Tx;
use futures::future::BoxFuture;

use crate::{FeedEvent, Projection, ProjectionError};

use collect::collect;
use deltas::{flush, Deltas};
use memory::Memory;

pub use crate::labels::{DEFAULT_PRESET, UNKNOWN, UPSCALE_PRESET};
pub use crate::view::{csv_text, ColumnKind, View};
pub use deltas::{GENERATION_WORK, TRAINING_WORK};
pub use report::{
    paid_jobs_on, summary, to_csv, DailySummary, GenerationDay, Summary, Totals, TrainingDay,
    CSV_HEADER,
};
pub use views::{view, view_csv, VIEWS};

pub const NAME: &str = "analytics";

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

    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        events: &'a [FeedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(apply_all(tx, events))
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
