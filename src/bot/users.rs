//! The bot's memory of Telegram users (`telegram_users`): chat, language and last used avatar.
//!
//! Events carry only the owner's user id, so the notifier looks here for where and in which
//! language to write. Rows are written when users talk to the bot, by an upsert that changes
//! nothing when nothing changed, so a busy chat costs no database writes. No copy is kept in
//! memory: another instance may have written the row since (a language switched and back).

use chrono::Utc;
use db::Arg;
use uuid::Uuid;

use super::texts::Lang;
use crate::store::{Database, StoreError};

/// What the bot remembers about one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramUser {
    pub user_id: i64,
    pub chat_id: i64,
    pub language_code: Option<String>,
    pub last_avatar_id: Option<Uuid>,
    /// The avatar "Generate" goes to without asking (checked for being trained when used).
    pub main_avatar_id: Option<Uuid>,
    /// What the prompt screen offers first.
    pub options: GenerationOptions,
}

/// The user's choices on the prompt screen, remembered for the next generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GenerationOptions {
    /// Images per request, 1–4; `None`: one.
    pub images: Option<u32>,
    /// The frame; `None`: the preset's own.
    pub aspect: Option<aggregates::AspectRatio>,
}

impl GenerationOptions {
    pub fn images(&self) -> u32 {
        self.images.unwrap_or(1)
    }
}

impl TelegramUser {
    pub fn lang(&self) -> Lang {
        Lang::from_code(self.language_code.as_deref())
    }
}

/// Reads and writes `telegram_users`.
pub struct Users {
    db: Database,
}

impl Users {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Records that `user_id` talks to the bot in `chat_id` with this language.
    pub async fn remember(
        &self,
        user_id: i64,
        chat_id: i64,
        language_code: Option<&str>,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO telegram_users (user_id, chat_id, language_code, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO UPDATE
                SET chat_id = excluded.chat_id, language_code = excluded.language_code,
                    updated_at = excluded.updated_at
              WHERE telegram_users.chat_id IS DISTINCT FROM excluded.chat_id
                 OR telegram_users.language_code IS DISTINCT FROM excluded.language_code",
            vec![
                Arg::I64(user_id),
                Arg::I64(chat_id),
                Arg::OptText(language_code.map(str::to_owned)),
                Arg::Time(Utc::now()),
            ],
        )
        .await
    }

    /// Remembers the avatar the user worked with last (offered first when generating).
    pub async fn set_last_avatar(&self, user_id: i64, avatar_id: Uuid) -> Result<(), StoreError> {
        self.execute(
            "UPDATE telegram_users SET last_avatar_id = $2, updated_at = $3 WHERE user_id = $1",
            vec![
                Arg::I64(user_id),
                Arg::Uuid(Some(avatar_id)),
                Arg::Time(Utc::now()),
            ],
        )
        .await
    }

    /// Makes `avatar_id` the avatar "Generate" goes to without asking.
    pub async fn set_main_avatar(&self, user_id: i64, avatar_id: Uuid) -> Result<(), StoreError> {
        self.execute(
            "UPDATE telegram_users SET main_avatar_id = $2 WHERE user_id = $1",
            vec![Arg::I64(user_id), Arg::Uuid(Some(avatar_id))],
        )
        .await
    }

    /// The user, if they ever talked to the bot.
    pub async fn get(&self, user_id: i64) -> Result<Option<TelegramUser>, StoreError> {
        let mut conn = self.db.acquire().await?;
        let row = conn
            .tx()
            .fetch_optional(
                "SELECT chat_id, language_code, CAST(last_avatar_id AS TEXT) AS last_avatar_id,
                        CAST(images_per_request AS BIGINT) AS images_per_request, aspect_ratio,
                        CAST(main_avatar_id AS TEXT) AS main_avatar_id
                   FROM telegram_users WHERE user_id = $1",
                vec![Arg::I64(user_id)],
            )
            .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let id = |column: &str| -> Result<Option<Uuid>, sqlx::Error> {
            Ok(r.get::<Option<String>>(column)?
                .and_then(|s| Uuid::parse_str(&s).ok()))
        };
        Ok(Some(TelegramUser {
            user_id,
            chat_id: r.get("chat_id")?,
            language_code: r.get("language_code")?,
            last_avatar_id: id("last_avatar_id")?,
            main_avatar_id: id("main_avatar_id")?,
            options: options_from(r.get("images_per_request")?, r.get("aspect_ratio")?),
        }))
    }

    /// Remembers the user's prompt-screen choices.
    pub async fn set_generation_options(
        &self,
        user_id: i64,
        options: GenerationOptions,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE telegram_users SET images_per_request = $2, aspect_ratio = $3
              WHERE user_id = $1",
            vec![
                Arg::I64(user_id),
                Arg::OptI64(options.images.map(i64::from)),
                Arg::OptText(options.aspect.map(|a| a.ratio().to_owned())),
            ],
        )
        .await
    }

    async fn execute(&self, sql: &str, args: Vec<Arg>) -> Result<(), StoreError> {
        let mut conn = self.db.acquire().await?;
        conn.tx().execute(sql, args).await?;
        Ok(())
    }
}

/// Stored choices as they are read back; anything unreadable counts as not chosen.
fn options_from(images: Option<i64>, aspect: Option<String>) -> GenerationOptions {
    GenerationOptions {
        images: images
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=aggregates::presets::MAX_IMAGES_PER_GENERATION).contains(n)),
        aspect: aspect.as_deref().and_then(aggregates::AspectRatio::parse),
    }
}
