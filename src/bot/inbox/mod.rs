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
//! The SQL of both lives here, written once for both backends.

pub mod intake;
pub mod scope;
pub mod workers;

use std::time::Duration;

use chrono::Utc;
use db::{Arg, Backend};
use teloxide::types::Update;

use crate::store::{Database, StoreError};

pub use scope::{current_update, derived_id, is_retry};

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
    #[error("telegram inbox")]
    Store(#[from] StoreError),
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

    /// Stores `updates` in one statement; returns how many were new (the rest were duplicates).
    pub async fn keep(&self, updates: &[Incoming]) -> Result<u64, InboxError> {
        let now = Utc::now();
        // Kinds the bot does not handle are kept as handled, only to recognise duplicates.
        let rows = updates
            .iter()
            .map(|u| {
                vec![
                    Arg::I64(u.update_id),
                    Arg::OptI64(u.chat),
                    Arg::OptText(u.chat.map(|_| u.body.clone())),
                    Arg::Time(now),
                    Arg::OptTime(u.chat.is_none().then_some(now)),
                    Arg::OptText(u.chat.is_none().then(|| "ignored".to_owned())),
                ]
            })
            .collect();
        let mut conn = self.db.acquire().await?;
        Ok(conn
            .tx()
            .insert_rows(
                "INSERT INTO telegram_inbox
                     (update_id, chat_id, body, received_at, handled_at, outcome)",
                rows,
                "ON CONFLICT (update_id) DO NOTHING",
            )
            .await?)
    }

    /// Takes the chat of the oldest waiting update whose chat nobody holds (or whose holder's
    /// lease ran out), with a new fence. `None`: nothing to take right now.
    pub async fn claim(&self) -> Result<Option<Claim>, InboxError> {
        // PostgreSQL: two workers may see two updates of one chat (`SKIP LOCKED` keeps them
        // off the same row, not the same chat); the lease row decides between them, the
        // loser's upsert finding a live lease and returning nothing. SQLite has one writer.
        let lock = match self.db.backend() {
            Backend::Postgres => "FOR UPDATE OF i SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "WITH candidate AS (
                 SELECT i.chat_id FROM telegram_inbox i
                 WHERE i.handled_at IS NULL AND i.chat_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM telegram_chat_leases l
                                   WHERE l.chat_id = i.chat_id AND l.lease_until > {{now}})
                 ORDER BY i.update_id
                 LIMIT 1
                 {lock}
             )
             INSERT INTO telegram_chat_leases (chat_id, holder, fence, lease_until, updated_at)
             SELECT chat_id, $1, 1, {{now+$2}}, {{now}} FROM candidate WHERE true
             ON CONFLICT (chat_id) DO UPDATE
                SET holder = excluded.holder, fence = telegram_chat_leases.fence + 1,
                    lease_until = excluded.lease_until, updated_at = excluded.updated_at
                WHERE telegram_chat_leases.lease_until IS NULL
                   OR telegram_chat_leases.lease_until <= {{now}}
             RETURNING chat_id, fence"
        );
        let mut conn = self.db.acquire().await?;
        let row = conn
            .tx()
            .fetch_optional(
                &sql,
                vec![Arg::Text(self.holder.clone()), Arg::F64(self.lease_secs())],
            )
            .await?;
        row.map(|r| {
            Ok(Claim {
                chat: r.get("chat_id")?,
                fence: r.get("fence")?,
            })
        })
        .transpose()
    }

    /// Extends the lease; `false` when the chat has another holder now.
    pub async fn renew(&self, claim: Claim) -> Result<bool, InboxError> {
        let renewed = self
            .execute(
                "UPDATE telegram_chat_leases SET lease_until = {now+$3}, updated_at = {now}
                 WHERE chat_id = $1 AND fence = $2",
                vec![
                    Arg::I64(claim.chat),
                    Arg::I64(claim.fence),
                    Arg::F64(self.lease_secs()),
                ],
            )
            .await?;
        Ok(renewed == 1)
    }

    /// The ids of the held chat's waiting updates, oldest first, at most `limit`.
    pub async fn waiting(&self, claim: Claim, limit: usize) -> Result<Vec<i64>, InboxError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.db.acquire().await?;
        let rows = conn
            .tx()
            .fetch_all(
                "SELECT update_id FROM telegram_inbox
                 WHERE chat_id = $1 AND handled_at IS NULL ORDER BY update_id LIMIT $2",
                vec![Arg::I64(claim.chat), Arg::I64(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.get("update_id"))
            .collect::<Result<_, _>>()?)
    }

    /// Takes up the held chat's oldest waiting update, counting the attempt; `None` when none
    /// waits or the fence is gone.
    pub async fn take(&self, claim: Claim) -> Result<Option<Taken>, InboxError> {
        let mut conn = self.db.acquire().await?;
        let row = conn
            .tx()
            .fetch_optional(
                "UPDATE telegram_inbox SET attempts = attempts + 1
                 WHERE update_id = (SELECT update_id FROM telegram_inbox
                                    WHERE chat_id = $1 AND handled_at IS NULL
                                    ORDER BY update_id LIMIT 1)
                   AND EXISTS (SELECT 1 FROM telegram_chat_leases
                               WHERE chat_id = $1 AND fence = $2)
                 RETURNING update_id, body, attempts",
                vec![Arg::I64(claim.chat), Arg::I64(claim.fence)],
            )
            .await?;
        row.map(|r| {
            Ok(Taken {
                update_id: r.get("update_id")?,
                body: r.get::<Option<String>>("body")?.unwrap_or_default(),
                attempt: r.get("attempts")?,
            })
        })
        .transpose()
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
        self.execute(
            &format!(
                "UPDATE telegram_inbox SET handled_at = {{now}}, outcome = $3, body = NULL
                 WHERE chat_id = $1 AND update_id {op} $4 AND handled_at IS NULL
                   AND EXISTS (SELECT 1 FROM telegram_chat_leases
                               WHERE chat_id = $1 AND fence = $2)"
            ),
            vec![
                Arg::I64(claim.chat),
                Arg::I64(claim.fence),
                Arg::Text(outcome.as_str().to_owned()),
                Arg::I64(update_id),
            ],
        )
        .await
    }

    /// Lets the chat go if nothing of it waits. `false`: something arrived meanwhile (or the
    /// fence is gone, which the next [`Inbox::take`] shows) — the holder goes on.
    pub async fn release_if_idle(&self, claim: Claim) -> Result<bool, InboxError> {
        let released = self
            .execute(
                "UPDATE telegram_chat_leases SET lease_until = NULL, updated_at = {now}
                 WHERE chat_id = $1 AND fence = $2
                   AND NOT EXISTS (SELECT 1 FROM telegram_inbox
                                   WHERE chat_id = $1 AND handled_at IS NULL)",
                vec![Arg::I64(claim.chat), Arg::I64(claim.fence)],
            )
            .await?;
        Ok(released == 1)
    }

    /// Lets the chat go whatever waits (a stopping instance): another holder takes it at once.
    pub async fn release(&self, claim: Claim) -> Result<(), InboxError> {
        self.execute(
            "UPDATE telegram_chat_leases SET lease_until = NULL, updated_at = {now}
             WHERE chat_id = $1 AND fence = $2",
            vec![Arg::I64(claim.chat), Arg::I64(claim.fence)],
        )
        .await?;
        Ok(())
    }

    /// Deletes handled updates older than a day, and the leases of chats quiet as long.
    pub async fn prune(&self) -> Result<u64, InboxError> {
        let ago = Arg::F64(-REMEMBER_HANDLED.as_secs_f64());
        let pruned = self
            .execute(
                "DELETE FROM telegram_inbox WHERE handled_at IS NOT NULL AND handled_at < {now+$1}",
                vec![ago.clone()],
            )
            .await?;
        self.execute(
            "DELETE FROM telegram_chat_leases
             WHERE lease_until IS NULL AND updated_at < {now+$1}
               AND NOT EXISTS (SELECT 1 FROM telegram_inbox i
                               WHERE i.chat_id = telegram_chat_leases.chat_id)",
            vec![ago],
        )
        .await?;
        Ok(pruned)
    }

    async fn execute(&self, sql: &str, args: Vec<Arg>) -> Result<u64, InboxError> {
        let mut conn = self.db.acquire().await?;
        Ok(conn.tx().execute(sql, args).await?)
    }
}
