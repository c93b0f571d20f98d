//! Erasing a person: every avatar of theirs deleted (so their photos, models and images go),
//! their data key destroyed (so every sealed field of their events reads `[erased]` for good),
//! and the rows that name them removed. `/forgetme` in the bot and `aisha erase-user` for a
//! request that arrives by e-mail both come here.

use std::time::Duration;

use aggregates::{Action, Actor, AvatarError, Command};
use chrono::Utc;
use serde::Serialize;
use uuid::Uuid;

use crate::store::{AvatarStore, Database, StoreError};

/// How long an erasure waits for the reactor to take in each deletion (it queues the work the
/// deletion needs, from the avatar's data, before that data's key may go).
const REACTOR_PATIENCE: Duration = Duration::from_secs(30);
/// How often it looks meanwhile.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Who asked for the erasure.
#[derive(Debug, Clone)]
pub enum Requester {
    /// The person themselves, through the bot.
    User,
    /// An operator acting on a request that came another way, by name.
    Operator(String),
}

/// What an erasure did; nothing in it names the person but the pseudonym.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ErasureReport {
    /// The keyed pseudonym the operator log records instead of the Telegram id.
    pub subject: String,
    /// Avatars deleted now (avatars deleted earlier are not counted again).
    pub avatars_deleted: usize,
    /// Data keys destroyed: the user's and any avatar keys still under it.
    pub keys_destroyed: u64,
    /// Rows removed from the bot's own tables (user, dialogue, progress, pending messages).
    pub rows_removed: u64,
}

/// Why an erasure did not finish; it can simply be run again.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Erases `telegram_id`: see the module docs. Idempotent: a second run finds nothing more.
pub async fn erase_user(
    store: &AvatarStore,
    telegram_id: i64,
    requester: Requester,
    reason: &str,
) -> Result<ErasureReport, ErasureError> {
    let db = store.database();
    let keys = store.keys();
    let subject = keys.pseudonym(telegram_id).await?;
    let user_key = keys.user_key_id(telegram_id).await?;
    let by = match &requester {
        Requester::User => Actor::User(telegram_id),
        Requester::Operator(name) => Actor::Operator(name.clone()),
    };

    let avatars = avatars_of(db, telegram_id, &user_key).await?;
    let correlation = Uuid::new_v4();
    let mut deleted = Vec::new();
    for avatar_id in avatars {
        let command = Command::new(by.clone(), Utc::now(), Action::Delete);
        match store.execute(avatar_id, command, correlation).await {
            Ok(done) if !done.events.is_empty() => deleted.push(avatar_id),
            Ok(_) => {}
            // Deleted before, or never this person's: nothing of it to do here.
            Err(StoreError::Rejected(
                AvatarError::Deleted | AvatarError::NotOwner | AvatarError::NotFound,
            )) => {}
            Err(e) => return Err(e.into()),
        }
    }
    wait_for_shredding(db, &deleted).await?;

    let rows_removed = remove_rows(db, telegram_id, &deleted).await?;
    let keys_destroyed = keys.destroy_user_keys(telegram_id).await?;
    let report = ErasureReport {
        subject,
        avatars_deleted: deleted.len(),
        keys_destroyed,
        rows_removed,
    };
    record(db, &report, &requester, reason).await?;
    tracing::info!(
        subject = %report.subject,
        avatars_deleted = report.avatars_deleted,
        keys_destroyed = report.keys_destroyed,
        rows_removed = report.rows_removed,
        "user erased"
    );
    Ok(report)
}

/// The person's avatars: those whose keys sit under theirs, and any the gallery lists (avatars
/// from before data keys existed).
async fn avatars_of(
    db: &Database,
    telegram_id: i64,
    user_key: &str,
) -> Result<Vec<Uuid>, ErasureError> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.tx();
    let mut ids = Vec::new();
    for row in tx
        .fetch_all(
            "SELECT substr(key_id, 8) AS avatar_id FROM data_keys WHERE parent_id = $1",
            vec![user_key.into()],
        )
        .await?
    {
        ids.push(row.get::<String>("avatar_id")?);
    }
    for row in tx
        .fetch_all(
            "SELECT avatar_id FROM gallery_avatars WHERE owner = $1",
            vec![telegram_id.into()],
        )
        .await?
    {
        ids.push(row.get::<String>("avatar_id")?);
    }
    let mut ids: Vec<Uuid> = ids.iter().filter_map(|s| Uuid::parse_str(s).ok()).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Waits until the reactor has taken in each deletion (it destroys the avatar's key when it
/// has), so the work the deletions need was queued from the avatars' data while it was readable.
async fn wait_for_shredding(db: &Database, avatars: &[Uuid]) -> Result<(), ErasureError> {
    if avatars.is_empty() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + REACTOR_PATIENCE;
    let key_ids: Vec<String> = avatars
        .iter()
        .map(|id| crate::store::keys::avatar_key_id(&id.to_string()))
        .collect();
    let list: Vec<String> = (1..=key_ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT count(*) FROM data_keys WHERE key_id IN ({})",
        list.join(", ")
    );
    loop {
        let left = {
            let mut conn = db.acquire().await?;
            conn.tx()
                .fetch_i64(&sql, key_ids.iter().map(|id| id.as_str().into()).collect())
                .await?
                .unwrap_or_default()
        };
        if left == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            // The user's key goes anyway: their data must not wait for a stalled reactor. What
            // it queues later reads `[erased]`; cleanups need no personal data.
            tracing::warn!(
                left,
                "reactor had not taken in every deletion; erasing anyway"
            );
            return Ok(());
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

/// Removes the rows of the bot's own tables that name the person, and messages still queued to
/// them (the erasure's own message is the last they get).
async fn remove_rows(
    db: &Database,
    telegram_id: i64,
    avatars: &[Uuid],
) -> Result<u64, ErasureError> {
    let mut conn = db.acquire().await?;
    let mut tx = conn.tx();
    let mut removed = 0;
    for (sql, arg) in [
        ("DELETE FROM telegram_users WHERE user_id = $1", telegram_id),
        // A private chat's id is the user's id.
        ("DELETE FROM bot_dialogues WHERE chat_id = $1", telegram_id),
        // What the user sent that is still waiting, or remembered to drop its duplicates.
        ("DELETE FROM telegram_inbox WHERE chat_id = $1", telegram_id),
        (
            "DELETE FROM telegram_chat_leases WHERE chat_id = $1",
            telegram_id,
        ),
        (
            "DELETE FROM training_progress WHERE owner = $1",
            telegram_id,
        ),
        (
            "DELETE FROM quota_training_starts WHERE owner = $1",
            telegram_id,
        ),
    ] {
        removed += tx.execute(sql, vec![arg.into()]).await?;
    }
    for avatar_id in avatars {
        removed += tx
            .execute(
                "DELETE FROM work_items
                  WHERE avatar_id = $1 AND (status <> 'pending' OR kind IN ('notify', 'starter'))",
                vec![avatar_id.to_string().into()],
            )
            .await?;
    }
    Ok(removed)
}

/// The operator log's line: who, why, what — the subject only as its pseudonym.
async fn record(
    db: &Database,
    report: &ErasureReport,
    requester: &Requester,
    reason: &str,
) -> Result<(), ErasureError> {
    let operator = match requester {
        Requester::User => "user".to_owned(),
        Requester::Operator(name) => format!("operator:{name}"),
    };
    let details = serde_json::json!({
        "avatars_deleted": report.avatars_deleted,
        "keys_destroyed": report.keys_destroyed,
        "rows_removed": report.rows_removed,
    })
    .to_string();
    let mut conn = db.acquire().await?;
    conn.tx()
        .execute(
            "INSERT INTO operator_actions (action, subject, operator, reason, details, at)
             VALUES ('erase_user', $1, $2, $3, $4, $5)",
            vec![
                report.subject.as_str().into(),
                operator.into(),
                reason.into(),
                details.into(),
                Utc::now().into(),
            ],
        )
        .await?;
    Ok(())
}
