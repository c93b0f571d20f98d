//! The durable work queue behind the actors: items are enqueued by reactors in the same
//! transaction as their feed checkpoint, claimed with a lease, and finished, retried or failed.
//! A crash leaves at most a lapsed lease, and the item is claimed again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use projections::{Arg, Tx};
use serde::{de::DeserializeOwned, Serialize};
use sqlx::Row;
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
    /// Claims so far, this one included.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
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

/// The queue over one database.
#[derive(Clone)]
pub struct WorkQueue {
    db: Database,
}

impl WorkQueue {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Claims the next due item of `kind` for `lease`; `None` when nothing is due.
    pub async fn claim(&self, kind: &str, lease: Duration) -> Result<Option<WorkItem>, StoreError> {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
        let row = match &self.db {
            Database::Postgres(pool) => sqlx::query(
                "UPDATE work_items SET claimed_until = $3, attempts = attempts + 1
                  WHERE id = (SELECT id FROM work_items
                               WHERE kind = $1 AND status = 'pending' AND due_at <= $2
                                 AND (claimed_until IS NULL OR claimed_until < $2)
                               ORDER BY due_at, id LIMIT 1
                               FOR UPDATE SKIP LOCKED)
                  RETURNING id, kind, key, avatar_id, payload, phase, attempts, created_at",
            )
            .bind(kind)
            .bind(now)
            .bind(until)
            .fetch_optional(pool)
            .await?
            .map(|r| RawItem {
                id: r.get("id"),
                kind: r.get("kind"),
                key: r.get("key"),
                avatar_id: r.get("avatar_id"),
                payload: r.get("payload"),
                phase: r.get("phase"),
                attempts: r.get("attempts"),
                created_at: r.get("created_at"),
            }),
            Database::Sqlite(pool) => sqlx::query(
                "UPDATE work_items SET claimed_until = ?3, attempts = attempts + 1
                  WHERE id = (SELECT id FROM work_items
                               WHERE kind = ?1 AND status = 'pending' AND due_at <= ?2
                                 AND (claimed_until IS NULL OR claimed_until < ?2)
                               ORDER BY due_at, id LIMIT 1)
                  RETURNING id, kind, key, avatar_id, payload, phase, attempts, created_at",
            )
            .bind(kind)
            .bind(now)
            .bind(until)
            .fetch_optional(pool)
            .await?
            .map(|r| RawItem {
                id: r.get("id"),
                kind: r.get("kind"),
                key: r.get("key"),
                avatar_id: r.get("avatar_id"),
                payload: r.get("payload"),
                phase: r.get("phase"),
                attempts: r.get("attempts"),
                created_at: r.get("created_at"),
            }),
        };
        row.map(RawItem::into_item).transpose()
    }

    /// Extends a claim that is still being worked on, so the lease can stay short and a crashed
    /// worker's items are taken over quickly.
    pub async fn extend(&self, id: i64, lease: Duration) -> Result<(), StoreError> {
        let until = Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default();
        self.exec(
            "UPDATE work_items SET claimed_until = $2 WHERE id = $1 AND status = 'pending'",
            vec![id.into(), until.into()],
        )
        .await
    }

    /// Records how far a step got, before doing something that must not be repeated blindly.
    pub async fn set_phase(&self, id: i64, phase: Option<&str>) -> Result<(), StoreError> {
        self.exec(
            "UPDATE work_items SET phase = $2 WHERE id = $1",
            vec![id.into(), phase.map(str::to_owned).into()],
        )
        .await
    }

    /// The item is done.
    pub async fn complete(&self, id: i64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE work_items SET status = 'done', finished_at = $2, claimed_until = NULL
              WHERE id = $1",
            vec![id.into(), Utc::now().into()],
        )
        .await
    }

    /// Try again after `delay` (the lease is released).
    pub async fn retry_later(
        &self,
        id: i64,
        delay: Duration,
        error: &str,
    ) -> Result<(), StoreError> {
        let due = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        self.exec(
            "UPDATE work_items SET due_at = $2, claimed_until = NULL, last_error = $3
              WHERE id = $1",
            vec![id.into(), due.into(), error.to_owned().into()],
        )
        .await
    }

    /// Gives up on the item for good.
    pub async fn fail(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE work_items SET status = 'failed', finished_at = $2, claimed_until = NULL,
                    last_error = $3
              WHERE id = $1",
            vec![id.into(), Utc::now().into(), error.to_owned().into()],
        )
        .await
    }

    /// Counts of items by kind and status, for tests and operators.
    pub async fn count(&self, kind: &str, status: &str) -> Result<i64, StoreError> {
        let sql = "SELECT count(*) FROM work_items WHERE kind = $1 AND status = $2";
        Ok(match &self.db {
            Database::Postgres(pool) => {
                sqlx::query_scalar(sql)
                    .bind(kind)
                    .bind(status)
                    .fetch_one(pool)
                    .await?
            }
            Database::Sqlite(pool) => {
                sqlx::query_scalar(&sql.replace('$', "?"))
                    .bind(kind)
                    .bind(status)
                    .fetch_one(pool)
                    .await?
            }
        })
    }

    async fn exec(&self, sql: &str, args: Vec<Arg>) -> Result<(), StoreError> {
        match &self.db {
            Database::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                Tx::Postgres(&mut conn).execute(sql, args).await?;
            }
            Database::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                Tx::Sqlite(&mut conn).execute(sql, args).await?;
            }
        }
        Ok(())
    }
}

struct RawItem {
    id: i64,
    kind: String,
    key: String,
    avatar_id: String,
    payload: String,
    phase: Option<String>,
    attempts: i32,
    created_at: DateTime<Utc>,
}

impl RawItem {
    fn into_item(self) -> Result<WorkItem, StoreError> {
        Ok(WorkItem {
            avatar_id: Uuid::parse_str(&self.avatar_id)
                .map_err(|e| StoreError::Corrupt(format!("work item {}: {e}", self.key)))?,
            id: self.id,
            kind: self.kind,
            key: self.key,
            payload: self.payload,
            phase: self.phase,
            attempts: self.attempts,
            created_at: self.created_at,
        })
    }
}
