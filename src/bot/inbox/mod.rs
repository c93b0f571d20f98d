//! The durable inbox: every Telegram update is stored before it is acknowledged, then handled
//! effectively once, one at a time and in order per chat, by whichever instance holds the chat.
//!
//! - [`intake`] keeps updates: the webhook answers 200 only after the insert commits; the long
//!   poller asks for the next offset only past updates it has stored. A duplicated delivery is
//!   stored once (the table is unique on `update_id`).
//! - [`workers`] claim chats under a fenced lease (chats in parallel, `SKIP LOCKED`), handle their
//!   updates through the bot's handler tree, and mark each handled under the fence. An update
//!   whose handler was interrupted — a kill, a pause past the lease — is handled again by the
//!   next holder; what handling creates takes its id from the update ([`scope`]), so a second run
//!   changes nothing and at most replies once more, which is counted and logged.
//!
//! The SQL of both lives here, once per backend.

pub mod intake;
pub mod scope;
pub mod workers;

use std::time::Duration;

use chrono::Utc;
use sqlx::Row;
use teloxide::types::Update;

use crate::store::Database;

pub use scope::{derived_id, is_retry};

/// Updates one chat may have waiting behind the one being handled before more are skipped: a
/// user forwarding hundreds of messages loses only their own excess and is told to slow down.
pub const MAX_WAITING: usize = 20;
/// How long handled updates are remembered (to drop late duplicates) before they are pruned.
/// Telegram gives up redelivering an update long before this.
const REMEMBER_HANDLED: Duration = Duration::from_secs(24 * 3600);

/// Why the inbox could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("telegram inbox")]
    Database(#[from] sqlx::Error),
}

/// An update as it arrived, with the queue it joins.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub update_id: i64,
    /// The chat the update belongs to (or its sender when it has no chat); `None` for kinds the
    /// bot does not handle, which are kept only to recognise their duplicates.
    pub chat: Option<i64>,
    pub body: String,
}

impl Incoming {
    /// From an update the Bot API client parsed (long polling).
    pub fn from_update(update: &Update) -> Result<Self, serde_json::Error> {
        Ok(Self {
            update_id: i64::from(update.id.0),
            chat: queue_of(update),
            body: serde_json::to_string(update)?,
        })
    }

    /// From the raw body Telegram posted (webhook); `Err` when it is not an update at all.
    pub fn from_body(body: &[u8]) -> Result<Self, serde_json::Error> {
        let update: Update = serde_json::from_slice(body)?;
        Ok(Self {
            update_id: i64::from(update.id.0),
            chat: queue_of(&update),
            body: String::from_utf8_lossy(body).into_owned(),
        })
    }
}

/// The queue an update joins: its chat, else its sender (a pre-checkout query has no chat, and
/// belongs with the sender's private chat, whose id is the user's).
fn queue_of(update: &Update) -> Option<i64> {
    if matches!(update.kind, teloxide::types::UpdateKind::Error(_)) {
        return None;
    }
    update
        .chat()
        .map(|c| c.id.0)
        .or_else(|| update.from().map(|u| u.id.0 as i64))
}

/// A chat held by this instance: its id and the fence that proves the hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub chat: i64,
    pub fence: i64,
}

/// An update taken up for handling.
#[derive(Debug, Clone)]
pub struct Taken {
    pub update_id: i64,
    pub body: String,
    /// 1 the first time; more when an earlier handling was interrupted.
    pub attempt: i32,
}

/// How an update's handling ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Handled,
    /// Excess of a flooding chat: dropped unhandled.
    Skipped,
    /// The handler panicked; it is not tried again (it would only panic again).
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Handled => "handled",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }
}

/// The inbox tables.
#[derive(Clone)]
pub struct Inbox {
    db: Database,
    /// This instance's name in leases (logs say who holds a chat).
    holder: String,
    lease: Duration,
}

impl Inbox {
    pub fn new(db: Database, holder: String, lease: Duration) -> Self {
        Self { db, holder, lease }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn lease_secs(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    /// Stores `updates` in one transaction; returns how many were new (the rest were duplicates).
    pub async fn keep(&self, updates: &[Incoming]) -> Result<u64, InboxError> {
        if updates.is_empty() {
            return Ok(0);
        }
        let now = Utc::now();
        let mut new = 0;
        match &self.db {
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                for u in updates {
                    // Kinds the bot does not handle are kept as handled, for their duplicates.
                    new += sqlx::query(
                        "INSERT INTO telegram_inbox (update_id, chat_id, body, received_at, handled_at, outcome)
                         VALUES ($1, $2, CASE WHEN $2 IS NULL THEN NULL ELSE $3 END, now(),
                                 CASE WHEN $2 IS NULL THEN now() END,
                                 CASE WHEN $2 IS NULL THEN 'ignored' END)
                         ON CONFLICT (update_id) DO NOTHING",
                    )
                    .bind(u.update_id)
                    .bind(u.chat)
                    .bind(&u.body)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                tx.commit().await?;
            }
            Database::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for u in updates {
                    new += sqlx::query(
                        "INSERT INTO telegram_inbox (update_id, chat_id, body, received_at, handled_at, outcome)
                         VALUES (?1, ?2, CASE WHEN ?2 IS NULL THEN NULL ELSE ?3 END, ?4,
                                 CASE WHEN ?2 IS NULL THEN ?4 END,
                                 CASE WHEN ?2 IS NULL THEN 'ignored' END)
                         ON CONFLICT (update_id) DO NOTHING",
                    )
                    .bind(u.update_id)
                    .bind(u.chat)
                    .bind(&u.body)
                    .bind(now.to_rfc3339())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                tx.commit().await?;
            }
        }
        Ok(new)
    }

    /// Takes the chat of the oldest waiting update whose chat nobody holds (or whose holder's
    /// lease ran out), with a new fence. `None`: nothing to take right now.
    pub async fn claim(&self) -> Result<Option<Claim>, InboxError> {
        let row = match &self.db {
            Database::Postgres(pool) => {
                // Two workers may lock two updates of one chat; the lease row decides between
                // them (the loser's upsert sees a live lease and returns nothing).
                sqlx::query(
                    "WITH candidate AS (
                         SELECT i.chat_id FROM telegram_inbox i
                         WHERE i.handled_at IS NULL AND i.chat_id IS NOT NULL
                           AND NOT EXISTS (SELECT 1 FROM telegram_chat_leases l
                                           WHERE l.chat_id = i.chat_id AND l.lease_until > now())
                         ORDER BY i.update_id
                         LIMIT 1
                         FOR UPDATE OF i SKIP LOCKED
                     )
                     INSERT INTO telegram_chat_leases (chat_id, holder, fence, lease_until, updated_at)
                     SELECT chat_id, $1, 1, now() + make_interval(secs => $2), now() FROM candidate
                     ON CONFLICT (chat_id) DO UPDATE
                        SET holder = EXCLUDED.holder, fence = telegram_chat_leases.fence + 1,
                            lease_until = EXCLUDED.lease_until, updated_at = now()
                        WHERE telegram_chat_leases.lease_until IS NULL
                           OR telegram_chat_leases.lease_until <= now()
                     RETURNING chat_id, fence",
                )
                .bind(&self.holder)
                .bind(self.lease_secs())
                .fetch_optional(pool)
                .await?
                .map(|r| Claim {
                    chat: r.get("chat_id"),
                    fence: r.get("fence"),
                })
            }
            Database::Sqlite(pool) => {
                let now = Utc::now();
                let until = now + chrono::Duration::from_std(self.lease).unwrap_or_default();
                sqlx::query(
                    "INSERT INTO telegram_chat_leases (chat_id, holder, fence, lease_until, updated_at)
                     SELECT i.chat_id, ?1, 1, ?3, ?2 FROM telegram_inbox i
                     WHERE i.handled_at IS NULL AND i.chat_id IS NOT NULL
                       AND NOT EXISTS (SELECT 1 FROM telegram_chat_leases l
                                       WHERE l.chat_id = i.chat_id AND l.lease_until > ?2)
                     ORDER BY i.update_id
                     LIMIT 1
                     ON CONFLICT (chat_id) DO UPDATE
                        SET holder = excluded.holder, fence = telegram_chat_leases.fence + 1,
                            lease_until = excluded.lease_until, updated_at = excluded.updated_at
                        WHERE telegram_chat_leases.lease_until IS NULL
                           OR telegram_chat_leases.lease_until <= ?2
                     RETURNING chat_id, fence",
                )
                .bind(&self.holder)
                .bind(now.to_rfc3339())
                .bind(until.to_rfc3339())
                .fetch_optional(pool)
                .await?
                .map(|r| Claim {
                    chat: r.get("chat_id"),
                    fence: r.get("fence"),
                })
            }
        };
        Ok(row)
    }

    /// Extends the lease; `false` when the chat has another holder now.
    pub async fn renew(&self, claim: Claim) -> Result<bool, InboxError> {
        let renewed = match &self.db {
            Database::Postgres(pool) => sqlx::query(
                "UPDATE telegram_chat_leases
                 SET lease_until = now() + make_interval(secs => $3), updated_at = now()
                 WHERE chat_id = $1 AND fence = $2",
            )
            .bind(claim.chat)
            .bind(claim.fence)
            .bind(self.lease_secs())
            .execute(pool)
            .await?
            .rows_affected(),
            Database::Sqlite(pool) => {
                let now = Utc::now();
                let until = now + chrono::Duration::from_std(self.lease).unwrap_or_default();
                sqlx::query(
                    "UPDATE telegram_chat_leases SET lease_until = ?3, updated_at = ?4
                     WHERE chat_id = ?1 AND fence = ?2",
                )
                .bind(claim.chat)
                .bind(claim.fence)
                .bind(until.to_rfc3339())
                .bind(now.to_rfc3339())
                .execute(pool)
                .await?
                .rows_affected()
            }
        };
        Ok(renewed == 1)
    }

    /// The ids of the held chat's waiting updates, oldest first, at most `limit`.
    pub async fn waiting(&self, claim: Claim, limit: usize) -> Result<Vec<i64>, InboxError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let ids = match &self.db {
            Database::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT update_id FROM telegram_inbox
                     WHERE chat_id = $1 AND handled_at IS NULL ORDER BY update_id LIMIT $2",
                )
                .bind(claim.chat)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            Database::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT update_id FROM telegram_inbox
                     WHERE chat_id = ?1 AND handled_at IS NULL ORDER BY update_id LIMIT ?2",
                )
                .bind(claim.chat)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(ids)
    }

    /// Takes up the held chat's oldest waiting update, counting the attempt; `None` when none
    /// waits or the fence is gone.
    pub async fn take(&self, claim: Claim) -> Result<Option<Taken>, InboxError> {
        let sql_pg = "UPDATE telegram_inbox SET attempts = attempts + 1
             WHERE update_id = (SELECT update_id FROM telegram_inbox
                                WHERE chat_id = $1 AND handled_at IS NULL
                                ORDER BY update_id LIMIT 1)
               AND EXISTS (SELECT 1 FROM telegram_chat_leases WHERE chat_id = $1 AND fence = $2)
             RETURNING update_id, body, attempts";
        let sql_lite = "UPDATE telegram_inbox SET attempts = attempts + 1
             WHERE update_id = (SELECT update_id FROM telegram_inbox
                                WHERE chat_id = ?1 AND handled_at IS NULL
                                ORDER BY update_id LIMIT 1)
               AND EXISTS (SELECT 1 FROM telegram_chat_leases WHERE chat_id = ?1 AND fence = ?2)
             RETURNING update_id, body, attempts";
        let row = match &self.db {
            Database::Postgres(pool) => {
                sqlx::query(sql_pg)
                    .bind(claim.chat)
                    .bind(claim.fence)
                    .fetch_optional(pool)
                    .await?
            }
            .map(|r| Taken {
                update_id: r.get("update_id"),
                body: r.get::<Option<String>, _>("body").unwrap_or_default(),
                attempt: r.get("attempts"),
            }),
            Database::Sqlite(pool) => {
                sqlx::query(sql_lite)
                    .bind(claim.chat)
                    .bind(claim.fence)
                    .fetch_optional(pool)
                    .await?
            }
            .map(|r| Taken {
                update_id: r.get("update_id"),
                body: r.get::<Option<String>, _>("body").unwrap_or_default(),
                attempt: r.get("attempts"),
            }),
        };
        Ok(row)
    }

    /// Marks updates of the held chat finished, forgetting what they said; `after` marks every
    /// waiting update with a larger id (a flood's excess) instead of one. Returns how many were
    /// marked: 0 when the fence is gone (another holder handles them now).
    pub async fn finish(
        &self,
        claim: Claim,
        update_id: i64,
        outcome: Outcome,
        after: bool,
    ) -> Result<u64, InboxError> {
        let op = if after { ">" } else { "=" };
        let done = match &self.db {
            Database::Postgres(pool) => sqlx::query(&format!(
                "UPDATE telegram_inbox SET handled_at = now(), outcome = $3, body = NULL
                 WHERE chat_id = $1 AND update_id {op} $4 AND handled_at IS NULL
                   AND EXISTS (SELECT 1 FROM telegram_chat_leases WHERE chat_id = $1 AND fence = $2)"
            ))
            .bind(claim.chat)
            .bind(claim.fence)
            .bind(outcome.as_str())
            .bind(update_id)
            .execute(pool)
            .await?
            .rows_affected(),
            Database::Sqlite(pool) => sqlx::query(&format!(
                "UPDATE telegram_inbox SET handled_at = ?5, outcome = ?3, body = NULL
                 WHERE chat_id = ?1 AND update_id {op} ?4 AND handled_at IS NULL
                   AND EXISTS (SELECT 1 FROM telegram_chat_leases WHERE chat_id = ?1 AND fence = ?2)"
            ))
            .bind(claim.chat)
            .bind(claim.fence)
            .bind(outcome.as_str())
            .bind(update_id)
            .bind(Utc::now().to_rfc3339())
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(done)
    }

    /// Lets the chat go if nothing of it waits. `false`: something arrived meanwhile (or the
    /// fence is gone, which the next [`Inbox::take`] shows) — the holder goes on.
    pub async fn release_if_idle(&self, claim: Claim) -> Result<bool, InboxError> {
        let released = match &self.db {
            Database::Postgres(pool) => sqlx::query(
                "UPDATE telegram_chat_leases SET lease_until = NULL, updated_at = now()
                 WHERE chat_id = $1 AND fence = $2
                   AND NOT EXISTS (SELECT 1 FROM telegram_inbox
                                   WHERE chat_id = $1 AND handled_at IS NULL)",
            )
            .bind(claim.chat)
            .bind(claim.fence)
            .execute(pool)
            .await?
            .rows_affected(),
            Database::Sqlite(pool) => sqlx::query(
                "UPDATE telegram_chat_leases SET lease_until = NULL, updated_at = ?3
                 WHERE chat_id = ?1 AND fence = ?2
                   AND NOT EXISTS (SELECT 1 FROM telegram_inbox
                                   WHERE chat_id = ?1 AND handled_at IS NULL)",
            )
            .bind(claim.chat)
            .bind(claim.fence)
            .bind(Utc::now().to_rfc3339())
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(released == 1)
    }

    /// Lets the chat go whatever waits (a stopping instance): another holder takes it at once.
    pub async fn release(&self, claim: Claim) -> Result<(), InboxError> {
        match &self.db {
            Database::Postgres(pool) => {
                sqlx::query(
                    "UPDATE telegram_chat_leases SET lease_until = NULL, updated_at = now()
                     WHERE chat_id = $1 AND fence = $2",
                )
                .bind(claim.chat)
                .bind(claim.fence)
                .execute(pool)
                .await?;
            }
            Database::Sqlite(pool) => {
                sqlx::query(
                    "UPDATE telegram_chat_leases SET lease_until = NULL, updated_at = ?3
                     WHERE chat_id = ?1 AND fence = ?2",
                )
                .bind(claim.chat)
                .bind(claim.fence)
                .bind(Utc::now().to_rfc3339())
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Deletes handled updates older than a day, and the leases of chats quiet as long.
    pub async fn prune(&self) -> Result<u64, InboxError> {
        let cutoff = Utc::now() - chrono::Duration::from_std(REMEMBER_HANDLED).unwrap_or_default();
        let pruned = match &self.db {
            Database::Postgres(pool) => {
                let n = sqlx::query(
                    "DELETE FROM telegram_inbox WHERE handled_at IS NOT NULL AND handled_at < $1",
                )
                .bind(cutoff)
                .execute(pool)
                .await?
                .rows_affected();
                sqlx::query(
                    "DELETE FROM telegram_chat_leases l WHERE l.lease_until IS NULL AND l.updated_at < $1
                       AND NOT EXISTS (SELECT 1 FROM telegram_inbox i WHERE i.chat_id = l.chat_id)",
                )
                .bind(cutoff)
                .execute(pool)
                .await?;
                n
            }
            Database::Sqlite(pool) => {
                let cutoff = cutoff.to_rfc3339();
                let n = sqlx::query(
                    "DELETE FROM telegram_inbox WHERE handled_at IS NOT NULL AND handled_at < ?1",
                )
                .bind(&cutoff)
                .execute(pool)
                .await?
                .rows_affected();
                sqlx::query(
                    "DELETE FROM telegram_chat_leases WHERE lease_until IS NULL AND updated_at < ?1
                       AND NOT EXISTS (SELECT 1 FROM telegram_inbox i
                                       WHERE i.chat_id = telegram_chat_leases.chat_id)",
                )
                .bind(&cutoff)
                .execute(pool)
                .await?;
                n
            }
        };
        Ok(pruned)
    }
}
