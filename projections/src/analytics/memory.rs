//! The working tables (`analytics_avatars`, `analytics_open_generations`): what later events
//! need but do not carry, loaded once per batch and written back once.

use std::collections::{BTreeSet, HashMap};

use aggregates::AvatarEvent;
use chrono::{DateTime, Utc};
use db::{Arg, Tx};
use uuid::Uuid;

use crate::gallery::uuid;
use crate::labels::UNKNOWN;
use crate::{FeedEvent, ProjectionError};

#[derive(Debug, Clone)]
pub(super) struct AvatarMemo {
    pub(super) avatar_type: String,
    pub(super) training_started_at: Option<DateTime<Utc>>,
    /// The trainer of its latest training, for the FAL work its result counts as.
    pub(super) training_endpoint: Option<String>,
}

/// What it remembers of a generation still pending. The optional fields are `None` for rows
/// written before they existed: such a result then counts by preset only.
#[derive(Debug, Clone)]
pub(super) struct OpenGeneration {
    pub(super) avatar_id: Uuid,
    pub(super) preset: String,
    pub(super) requested_at: DateTime<Utc>,
    pub(super) endpoint: Option<String>,
    pub(super) origin_kind: Option<String>,
    pub(super) pack: Option<String>,
    pub(super) upscale_factor: Option<i64>,
    pub(super) aspect_ratio: Option<String>,
}

/// The working tables as far as one batch needs them, loaded once and written back once.
#[derive(Debug, Default)]
pub(super) struct Memory {
    /// `None`: known not to exist (never created, or deleted).
    pub(super) avatars: HashMap<Uuid, Option<AvatarMemo>>,
    pub(super) avatars_changed: BTreeSet<Uuid>,
    pub(super) avatars_deleted: BTreeSet<Uuid>,
    pub(super) open: HashMap<Uuid, Option<OpenGeneration>>,
    /// Requested in this batch and still pending: to insert.
    pub(super) opened: BTreeSet<Uuid>,
    /// Pending before this batch and finished in it: to delete.
    pub(super) closed: BTreeSet<Uuid>,
}

impl Memory {
    pub(super) async fn load(
        tx: &mut Tx<'_>,
        events: &[FeedEvent],
    ) -> Result<Self, ProjectionError> {
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

    pub(super) fn avatar(&mut self, id: Uuid) -> Option<&mut AvatarMemo> {
        self.avatars.get_mut(&id).and_then(Option::as_mut)
    }

    /// The avatar's type and the start of its latest training.
    pub(super) fn training_of(&mut self, id: Uuid) -> (String, Option<DateTime<Utc>>) {
        match self.avatar(id) {
            Some(a) => (a.avatar_type.clone(), a.training_started_at),
            None => (UNKNOWN.to_owned(), None),
        }
    }

    /// Forgets a pending generation and returns what was remembered of it; `None` if it was
    /// not pending (never expected).
    pub(super) fn close(&mut self, generation_id: Uuid) -> Option<OpenGeneration> {
        let open = self.open.get_mut(&generation_id).and_then(Option::take)?;
        if !self.opened.remove(&generation_id) {
            self.closed.insert(generation_id);
        }
        Some(open)
    }

    pub(super) async fn save(self, tx: &mut Tx<'_>) -> Result<(), ProjectionError> {
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
