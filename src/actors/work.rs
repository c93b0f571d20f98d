//! The durable work queue behind the actors: items are enqueued by reactors in the same
//! transaction as their feed checkpoint, claimed with a lease, and finished, retried or failed.
//!
//! Claims are fenced: each claim hands out a fresh token and every later change of the item
//! names it, so a worker that lost its claim (paused past its lease while another instance took
//! the item over) changes nothing, and only one claimant can ever enter a paid step.

use std::time::Duration;

use chrono::{DateTime, Utc};
use db::{Arg, Backend, Tx};
use serde::{de::DeserializeOwned, Serialize};
use uuid::Uuid;

use crate::store::{Database, StoreError};

/// One claimed piece of work.
#[derive(Debug, Clone)]
pub struct WorkItem {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub avatar_id: Uuid,
    pub payload: String,
    /// How far a non-idempotent step got before a crash (e.g. `submitting`).
    pub phase: Option<String>,
    /// Failed attempts in a row before this claim (a lapsed lease counts as one).
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    /// This claim's fence: every change of the item names it.
    pub token: String,
}

impl WorkItem {
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        serde_json::from_str(&self.payload)
            .map_err(|e| StoreError::Corrupt(format!("work item {}: {e}", self.key)))
    }
}

/// Enqueues an item inside a reactor's transaction; a key seen before is ignored, so replaying
/// an event never enqueues twice.
pub async fn enqueue<T: Serialize>(
    tx: &mut Tx<'_>,
    kind: &str,
    key: &str,
    avatar_id: Uuid,
    payload: &T,
    due_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::to_string(payload).unwrap_or_else(|_| "null".into());
    tx.execute(
        "INSERT INTO work_items (kind, key, avatar_id, payload, due_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (key) DO NOTHING",
        vec![
            kind.into(),
            key.into(),
            avatar_id.into(),
            payload.into(),
            due_at.into(),
            Utc::now().into(),
        ],
    )
    .await?;
    Ok(())
}

const ITEM_COLUMNS: &str =
    "id, kind, key, avatar_id, payload, phase, CAST(attempts AS bigint) AS attempts, created_at";

/// The queue over one database.
#[derive(Clone)]
pub struct WorkQueue {
    db: Database,
}

impl WorkQueue {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Enqueues an item outside a reactor (work that no event drives, e.g. cancelling a FAL
    /// job whose submission the avatar refused); a key seen before is ignored.
    pub async fn enqueue_now<T: Serialize>(
        &self,
        kind: &str,
        key: &str,
        avatar_id: Uuid,
        payload: &T,
    ) -> Result<(), StoreError> {
        let mut conn = self.db.acquire().await?;
        enqueue(&mut conn.tx(), kind, key, avatar_id, payload, Utc::now()).await?;
        Ok(())
    }

    /// Claims the next due item of `kind` for `lease`; `None` when nothing is due. A claim whose
    /// lease lapsed without an outcome (its worker died or stalled) counts as a failed attempt.
    pub async fn claim(&self, kind: &str, lease: Duration) -> Result<Option<WorkItem>, StoreError> {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let token = Uuid::new_v4().to_string();
        // Only PostgreSQL has several writers at once; SQLite's single writer needs no
        // row locks to keep two claimants apart.
        let skip_locked = match self.db.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE work_items
                SET claimed_until = $3, claim_token = $4, claims = claims + 1,
                    attempts = attempts + CASE WHEN claimed_until IS NULL THEN 0 ELSE 1 END
              WHERE id = (SELECT id FROM work_items
                           WHERE kind = $1 AND status = 'pending' AND due_at <= $2
                             AND (claimed_until IS NULL OR claimed_until < $2)
                           ORDER BY due_at, id LIMIT 1 {skip_locked})
              RETURNING {ITEM_COLUMNS}"
        );
        let mut conn = self.db.acquire().await?;
        let row = conn
            .tx()
            .fetch_optional(
                &sql,
                vec![kind.into(), now.into(), until.into(), token.clone().into()],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let key: String = row.get("key")?;
        let avatar_id: String = row.get("avatar_id")?;
        Ok(Some(WorkItem {
            avatar_id: Uuid::parse_str(&avatar_id)
                .map_err(|e| StoreError::Corrupt(format!("work item {key}: {e}")))?,
            id: row.get("id")?,
            kind: row.get("kind")?,
            key,
            payload: row.get("payload")?,
            phase: row.get("phase")?,
            attempts: row.get::<i64>("attempts")? as i32,
            created_at: row.get("created_at")?,
            token,
        }))
    }

    /// Extends a claim that is still being worked on, so the lease can stay short and a crashed
    /// worker's items are taken over quickly. [`StoreError::ClaimLost`] once another worker
    /// holds the item.
    pub async fn extend(&self, item: &WorkItem, lease: Duration) -> Result<(), StoreError> {
        let until = Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default();
        self.fenced(
            item,
            "UPDATE work_items SET claimed_until = $3
              WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
            vec![until.into()],
        )
        .await
    }

    /// Records how far a step got.
    pub async fn set_phase(&self, item: &WorkItem, phase: Option<&str>) -> Result<(), StoreError> {
        self.fenced(
            item,
            "UPDATE work_items SET phase = $3
              WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
            vec![phase.map(str::to_owned).into()],
        )
        .await
    }

    /// Enters a step that must happen at most once (a paid FAL submission): a compare-and-set
    /// from "no phase" that only the current claimant can win, and only once. The lease is
    /// renewed with it, so the step starts with a full lease. [`StoreError::ClaimLost`] when the
    /// claim is gone or the step was entered already.
    pub async fn enter_once(
        &self,
        item: &WorkItem,
        phase: &str,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let until = Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default();
        self.fenced(
            item,
            "UPDATE work_items SET phase = $3, claimed_until = $4
              WHERE id = $1 AND claim_token = $2 AND status = 'pending' AND phase IS NULL
                AND claimed_until > $5",
            vec![phase.to_owned().into(), until.into(), Utc::now().into()],
        )
        .await
    }

    /// Lets go of a claim without an outcome (the worker is stopping): the item is due again at
    /// once, and the cut-short attempt is not counted as a failure. Its phase stays.
    pub async fn release(&self, item: &WorkItem) -> Result<(), StoreError> {
        self.fenced(
            item,
            "UPDATE work_items SET claimed_until = NULL, claim_token = NULL
              WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
            vec![],
        )
        .await
    }

    /// The item is done.
    pub async fn complete(&self, item: &WorkItem) -> Result<(), StoreError> {
        self.fenced(
            item,
            // A finished item's payload is no longer needed, and may name a person (a chat, a
            // prompt): it goes, and the row stays only as the idempotency key.
            "UPDATE work_items SET status = 'done', finished_at = $3, claimed_until = NULL,
                    payload = '{}'
              WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
            vec![Utc::now().into()],
        )
        .await
    }

    /// Waits `delay` before the next look, without counting a failure: the work is fine, it
    /// is just not finished (a FAL job still running). Resets the failure count.
    pub async fn wait(&self, item: &WorkItem, delay: Duration) -> Result<(), StoreError> {
        let due = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        self.fenced(
            item,
            "UPDATE work_items SET due_at = $3, claimed_until = NULL, attempts = 0
              WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
            vec![due.into()],
        )
        .await
    }

    /// A failed attempt: try again after `delay` (the lease is released).
    pub async fn retry_later(
        &self,
        item: &WorkItem,
        delay: Duration,
        error: &str,
    ) -> Result<(), StoreError> {
        let due = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        self.fenced(
            item,
            "UPDATE work_items SET due_at = $3, claimed_until = NULL, last_error = $4,
                    attempts = attempts + 1
              WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
            vec![due.into(), error.to_owned().into()],
        )
        .await
    }

    /// Gives up on the item for good.
    pub async fn fail(&self, item: &WorkItem, error: &str) -> Result<(), StoreError> {
        self.fenced(
            item,
            "UPDATE work_items SET status = 'failed', finished_at = $3, claimed_until = NULL,
                    last_error = $4, attempts = attempts + 1
              WHERE id = $1 AND claim_token = $2 AND status = 'pending'",
            vec![Utc::now().into(), error.to_owned().into()],
        )
        .await
    }

    /// Deletes items that finished (done or failed) before `before`; returns how many.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut conn = self.db.acquire().await?;
        Ok(conn
            .tx()
            .execute(
                "DELETE FROM work_items WHERE status <> 'pending' AND finished_at < $1",
                vec![before.into()],
            )
            .await?)
    }

    /// Counts of items by kind and status, for tests and operators.
    pub async fn count(&self, kind: &str, status: &str) -> Result<i64, StoreError> {
        let mut conn = self.db.acquire().await?;
        Ok(conn
            .tx()
            .fetch_i64(
                "SELECT count(*) FROM work_items WHERE kind = $1 AND status = $2",
                vec![kind.into(), status.into()],
            )
            .await?
            .unwrap_or(0))
    }

    /// Runs an update of `item` that must name its claim: `$1` is the id, `$2` the token,
    /// `args` follow from `$3`.
    async fn fenced(&self, item: &WorkItem, sql: &str, args: Vec<Arg>) -> Result<(), StoreError> {
        let mut all: Vec<Arg> = vec![item.id.into(), item.token.clone().into()];
        all.extend(args);
        let mut conn = self.db.acquire().await?;
        match conn.tx().execute(sql, all).await? {
            0 => Err(StoreError::ClaimLost),
            _ => Ok(()),
        }
    }
}
