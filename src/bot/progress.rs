//! The progress bar of a running training: the "training started" message, edited in place
//! while FAL works (a bar, the percentage, the time left) and once more with the outcome.
//!
//! `training_progress` keeps one row per training: which message shows the bar and what it says
//! now. Instances share the table, and every edit is first claimed by one conditional update
//! (on the row's version, the text, the percentage and the time of the last edit), so of two
//! instances reading the same poll only one edits, an edit never repeats the text the message
//! already has (Telegram refuses those), and the bar never moves back.

use std::sync::Arc;
use std::time::Duration;

use aggregates::AvatarStatus;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use teloxide::prelude::*;
use teloxide::types::MessageId;
use teloxide::{ApiError, RequestError};
use uuid::Uuid;

use super::keyboards as kb;
use super::send::{is_unreachable_chat, sending};
use super::texts::{Lang, Texts};
use super::{BotDeps, TgBot};
use crate::actors::ProgressSink;
use crate::fal::progress::{Progress, Stage};
use crate::store::StoreError;

/// Cells of the drawn bar.
const BAR_CELLS: usize = 10;

/// Why the bar could not be moved (logged; the training goes on regardless).
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Bot API call failed: {0}")]
    Telegram(#[from] RequestError),
}

/// How a training ended, as its bar shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Done,
    Failed,
}

/// `▓▓▓▓░░░░░░` for 40 %.
pub fn bar(percent: u8) -> String {
    let filled = (usize::from(percent.min(100)) * BAR_CELLS) / 100;
    "▓".repeat(filled) + &"░".repeat(BAR_CELLS - filled)
}

/// The message with the bar's line under what it first said.
fn with_line(base: &str, line: &str) -> String {
    format!("{base}\n\n{line}")
}

/// The bar's line for a reading.
fn line(t: &dyn Texts, progress: &Progress) -> String {
    match progress.stage {
        Stage::Queued => t.training_queued(&bar(0)),
        Stage::Running => {
            t.training_progress(&bar(progress.percent), progress.percent, progress.remaining)
        }
    }
}

/// The bar's last line.
fn ending_line(t: &dyn Texts, ending: Ending) -> String {
    match ending {
        Ending::Done => t.training_progress_done(&bar(100)),
        Ending::Failed => t.training_progress_failed(),
    }
}

/// The message that shows one training's bar.
#[derive(Debug, Clone)]
struct Shown {
    chat: ChatId,
    message_id: MessageId,
    lang: Lang,
    base_text: String,
}

impl Shown {
    fn from_row(row: &db::SqlRow) -> Result<Self, sqlx::Error> {
        let lang: String = row.get("lang")?;
        Ok(Self {
            chat: ChatId(row.get("chat_id")?),
            message_id: MessageId(row.get::<i64>("message_id")? as i32),
            lang: Lang::from_code(Some(&lang)),
            base_text: row.get("base_text")?,
        })
    }
}

/// Records that `message` (a chat and a message in it, showing `text` in `lang`) carries the
/// bar of `avatar_id`'s new training. A failure costs only the bar, so it is logged.
pub async fn track(
    bot: &TgBot,
    deps: &BotDeps,
    avatar_id: Uuid,
    owner: i64,
    message: (ChatId, MessageId),
    lang: Lang,
    text: &str,
) {
    let (chat, message_id) = message;
    if let Err(e) = insert(deps, avatar_id, owner, chat, message_id, lang, text).await {
        tracing::warn!(%avatar_id, owner, error = %crate::telemetry::chain(&e),
            "could not record the message that shows a training's progress");
        return;
    }
    // A training that ended before the row existed (a quick failure) has already been told
    // about, and its bar would otherwise never move again.
    match deps.store.load(avatar_id).await.map(|a| a.status) {
        Ok(AvatarStatus::Training) => {}
        Ok(AvatarStatus::Trained) => finish(bot, deps, avatar_id, Ending::Done).await,
        Ok(AvatarStatus::TrainingFailed) => finish(bot, deps, avatar_id, Ending::Failed).await,
        Ok(_) => forget(deps, avatar_id).await,
        Err(e) => {
            tracing::warn!(%avatar_id, error = %crate::telemetry::chain(&e),
                "could not check a training that just started")
        }
    }
}

async fn insert(
    deps: &BotDeps,
    avatar_id: Uuid,
    owner: i64,
    chat: ChatId,
    message_id: MessageId,
    lang: Lang,
    text: &str,
) -> Result<(), ProgressError> {
    let now = Utc::now();
    let mut conn = deps.db.acquire().await?;
    // A new training of the same avatar takes the row over; the version moves on, so an edit
    // claimed for the old message cannot land on the new one's row.
    conn.tx()
        .execute(
            "INSERT INTO training_progress (avatar_id, owner, chat_id, message_id, lang, base_text,
                                            last_text, last_percent, version, edited_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6, 0, 0, $7, $7)
             ON CONFLICT (avatar_id) DO UPDATE
                SET owner = excluded.owner, chat_id = excluded.chat_id,
                    message_id = excluded.message_id, lang = excluded.lang,
                    base_text = excluded.base_text, last_text = excluded.last_text,
                    last_percent = 0, version = training_progress.version + 1,
                    edited_at = excluded.edited_at, created_at = excluded.created_at",
            vec![
                avatar_id.into(),
                owner.into(),
                chat.0.into(),
                i64::from(message_id.0).into(),
                lang.code().into(),
                text.into(),
                now.into(),
            ],
        )
        .await?;
    Ok(())
}

/// Edits `avatar_id`'s bar to its last state and forgets it; nothing if no bar shows it. The
/// outcome's own message follows separately, so a failure here is only logged.
pub async fn finish(bot: &TgBot, deps: &BotDeps, avatar_id: Uuid, ending: Ending) {
    let result = async {
        let mut conn = deps.db.acquire().await?;
        let row = conn
            .tx()
            .fetch_optional(
                "DELETE FROM training_progress WHERE avatar_id = $1
                 RETURNING chat_id, message_id, lang, base_text",
                vec![avatar_id.into()],
            )
            .await?;
        drop(conn);
        let Some(row) = row else {
            return Ok(());
        };
        let shown = Shown::from_row(&row)?;
        show_ending(bot, deps, &shown, ending).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(%avatar_id, ?ending, error = %crate::telemetry::chain(&e),
            "could not show a training's outcome on its progress bar");
    }
}

async fn show_ending(
    bot: &TgBot,
    deps: &BotDeps,
    shown: &Shown,
    ending: Ending,
) -> Result<(), ProgressError> {
    let t = shown.lang.texts();
    let text = with_line(&shown.base_text, &ending_line(t, ending));
    match edit(bot, deps, shown, text).await {
        Ok(()) => Ok(()),
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Forgets `avatar_id`'s bar without touching the message.
async fn forget(deps: &BotDeps, avatar_id: Uuid) {
    let result = async {
        let mut conn = deps.db.acquire().await?;
        conn.tx()
            .execute(
                "DELETE FROM training_progress WHERE avatar_id = $1",
                vec![avatar_id.into()],
            )
            .await?;
        Ok::<_, ProgressError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(%avatar_id, error = %crate::telemetry::chain(&e),
            "could not forget a training's progress bar");
    }
}

/// One edit of the bar's message; "not modified" is what we wanted anyway.
async fn edit(
    bot: &TgBot,
    deps: &BotDeps,
    shown: &Shown,
    text: String,
) -> Result<(), RequestError> {
    let keyboard = kb::to_menu(shown.lang.texts());
    // Through the send budgets: with many trainings running, edits add up to Telegram's overall
    // limit like messages do.
    let edited = sending(&deps.limiter, shown.chat, 1, "editMessageText", || {
        bot.edit_message_text(shown.chat, shown.message_id, text.clone())
            .reply_markup(keyboard.clone())
            .send()
    })
    .await;
    match edited {
        Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether the message can never show the bar again (deleted, too old, the chat gone).
fn gone(error: &RequestError) -> bool {
    matches!(
        error,
        RequestError::Api(ApiError::MessageCantBeEdited | ApiError::MessageToEditNotFound)
    ) || is_unreachable_chat(error)
}

/// The bot's [`ProgressSink`]: moves each training's bar, at most every `edit_every`.
pub struct TelegramProgress {
    bot: TgBot,
    deps: Arc<BotDeps>,
    edit_every: Duration,
}

impl TelegramProgress {
    pub fn new(bot: TgBot, deps: Arc<BotDeps>, edit_every: Duration) -> Self {
        Self {
            bot,
            deps,
            edit_every,
        }
    }

    async fn show(
        &self,
        avatar_id: Uuid,
        owner: i64,
        progress: &Progress,
    ) -> Result<(), ProgressError> {
        let mut conn = self.deps.db.acquire().await?;
        let row = conn
            .tx()
            .fetch_optional(
                "SELECT owner, chat_id, message_id, lang, base_text, last_text, last_percent,
                        version, edited_at
                   FROM training_progress WHERE avatar_id = $1",
                vec![avatar_id.into()],
            )
            .await?;
        let Some(row) = row else {
            return Ok(());
        };
        if row.get::<i64>("owner")? != owner {
            return Ok(());
        }
        let shown = Shown::from_row(&row)?;
        let last_text: String = row.get("last_text")?;
        let last_percent: i64 = row.get("last_percent")?;
        let version: i64 = row.get("version")?;
        let edited_at: DateTime<Utc> = row.get("edited_at")?;
        let now = Utc::now();
        let cutoff = now - chrono::Duration::from_std(self.edit_every).unwrap_or_default();
        let percent = i64::from(progress.percent);
        let text = with_line(&shown.base_text, &line(shown.lang.texts(), progress));
        if text == last_text || percent < last_percent || edited_at > cutoff {
            return Ok(());
        }
        let claimed = conn
            .tx()
            .execute(
                "UPDATE training_progress
                    SET last_text = $2, last_percent = $3, version = version + 1, edited_at = $4
                  WHERE avatar_id = $1 AND version = $5
                    AND last_text <> $2 AND last_percent <= $3 AND edited_at <= $6",
                vec![
                    avatar_id.into(),
                    text.clone().into(),
                    percent.into(),
                    now.into(),
                    version.into(),
                    cutoff.into(),
                ],
            )
            .await?;
        drop(conn);
        if claimed != 1 {
            // Another instance moved this bar meanwhile.
            return Ok(());
        }
        match edit(&self.bot, &self.deps, &shown, text).await {
            Ok(()) => {}
            Err(e) if gone(&e) => {
                tracing::info!(%avatar_id, owner, error = %crate::telemetry::chain(&e),
                    "the message with a training's progress bar is gone; no more edits");
                forget(&self.deps, avatar_id).await;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        self.after_edit(avatar_id, &shown).await
    }

    /// The outcome may have been shown while our edit was on its way and then be hidden by it:
    /// if the row went (the outcome took it), show the outcome again.
    async fn after_edit(&self, avatar_id: Uuid, shown: &Shown) -> Result<(), ProgressError> {
        let mut conn = self.deps.db.acquire().await?;
        let version = conn
            .tx()
            .fetch_i64(
                "SELECT version FROM training_progress WHERE avatar_id = $1",
                vec![avatar_id.into()],
            )
            .await?;
        drop(conn);
        if version.is_some() {
            // Still running, or a newer training took the row over (its own message, not ours).
            return Ok(());
        }
        let ending = match self.deps.store.load(avatar_id).await?.status {
            AvatarStatus::Trained => Ending::Done,
            AvatarStatus::TrainingFailed => Ending::Failed,
            _ => return Ok(()),
        };
        show_ending(&self.bot, &self.deps, shown, ending).await
    }
}

impl ProgressSink for TelegramProgress {
    fn training_progress<'a>(
        &'a self,
        avatar_id: Uuid,
        owner: i64,
        progress: &'a Progress,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.show(avatar_id, owner, progress).await {
                tracing::warn!(%avatar_id, owner, percent = progress.percent,
                    error = %crate::telemetry::chain(&e), "could not move a training's progress bar");
            }
        })
    }

    fn training_gone(&self, avatar_id: Uuid) -> BoxFuture<'_, ()> {
        Box::pin(forget(&self.deps, avatar_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_by_tenths() {
        assert_eq!(bar(0), "░░░░░░░░░░");
        assert_eq!(bar(40), "▓▓▓▓░░░░░░");
        assert_eq!(bar(99), "▓▓▓▓▓▓▓▓▓░");
        assert_eq!(bar(100), "▓▓▓▓▓▓▓▓▓▓");
        assert_eq!(bar(200), "▓▓▓▓▓▓▓▓▓▓");
    }

    #[test]
    fn lines_in_both_languages() {
        let running = Progress {
            stage: Stage::Running,
            percent: 40,
            remaining: Some(Duration::from_secs(330)),
        };
        assert_eq!(
            line(Lang::Ru.texts(), &running),
            "⏳ Обучение: ▓▓▓▓░░░░░░ 40 % · осталось ~6 мин"
        );
        assert_eq!(
            line(Lang::En.texts(), &running),
            "⏳ Training: ▓▓▓▓░░░░░░ 40 % · about 6 min left"
        );
        let long = Progress {
            remaining: Some(Duration::from_secs(80 * 60)),
            ..running
        };
        assert!(line(Lang::Ru.texts(), &long).ends_with("осталось ~1 ч 20 мин"));
        let soon = Progress {
            remaining: Some(Duration::from_secs(20)),
            ..running
        };
        assert!(line(Lang::En.texts(), &soon).ends_with("less than a minute left"));
        for lang in [Lang::Ru, Lang::En] {
            let t = lang.texts();
            assert!(ending_line(t, Ending::Done).starts_with('✅'));
            assert!(ending_line(t, Ending::Done).contains("100 %"));
            assert!(ending_line(t, Ending::Failed).starts_with('❌'));
        }
    }
}
