//! The bot's memory of Telegram users (`telegram_users`): chat, language and last used avatar.
//!
//! Events carry only the owner's user id, so the notifier looks here for where and in which
//! language to write. Rows are written when users talk to the bot, by an upsert that changes
//! nothing when nothing changed, so a busy chat costs no database writes. No copy is kept in
//! memory: another instance may have written the row since (a language switched and back).

use chrono::Utc;
use sqlx::Row;
use uuid::Uuid;

use super::texts::Lang;
use crate::store::Database;

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
    ) -> Result<(), sqlx::Error> {
        let now = Utc::now();
        let sql = "INSERT INTO telegram_users (user_id, chat_id, language_code, updated_at)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (user_id) DO UPDATE
                      SET chat_id = excluded.chat_id, language_code = excluded.language_code,
                          updated_at = excluded.updated_at
                    WHERE telegram_users.chat_id IS DISTINCT FROM excluded.chat_id
                       OR telegram_users.language_code IS DISTINCT FROM excluded.language_code";
        match &self.db {
            Database::Postgres(pool) => {
                sqlx::query(sql)
                    .bind(user_id)
                    .bind(chat_id)
                    .bind(language_code)
                    .bind(now)
                    .execute(pool)
                    .await?;
            }
            Database::Sqlite(pool) => {
                sqlx::query(&sql.replace('$', "?"))
                    .bind(user_id)
                    .bind(chat_id)
                    .bind(language_code)
                    .bind(now.to_rfc3339())
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Remembers the avatar the user worked with last (offered first when generating).
    pub async fn set_last_avatar(&self, user_id: i64, avatar_id: Uuid) -> Result<(), sqlx::Error> {
        let now = Utc::now();
        match &self.db {
            Database::Postgres(pool) => {
                sqlx::query(
                    "UPDATE telegram_users SET last_avatar_id = $2, updated_at = $3
                      WHERE user_id = $1",
                )
                .bind(user_id)
                .bind(avatar_id)
                .bind(now)
                .execute(pool)
                .await?;
            }
            Database::Sqlite(pool) => {
                sqlx::query(
                    "UPDATE telegram_users SET last_avatar_id = ?2, updated_at = ?3
                      WHERE user_id = ?1",
                )
                .bind(user_id)
                .bind(avatar_id.to_string())
                .bind(now.to_rfc3339())
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Makes `avatar_id` the avatar "Generate" goes to without asking.
    pub async fn set_main_avatar(&self, user_id: i64, avatar_id: Uuid) -> Result<(), sqlx::Error> {
        let sql = "UPDATE telegram_users SET main_avatar_id = $2 WHERE user_id = $1";
        match &self.db {
            Database::Postgres(pool) => {
                sqlx::query(sql)
                    .bind(user_id)
                    .bind(avatar_id)
                    .execute(pool)
                    .await?;
            }
            Database::Sqlite(pool) => {
                sqlx::query(&sql.replace('$', "?"))
                    .bind(user_id)
                    .bind(avatar_id.to_string())
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// The user, if they ever talked to the bot.
    pub async fn get(&self, user_id: i64) -> Result<Option<TelegramUser>, sqlx::Error> {
        let row = match &self.db {
            Database::Postgres(pool) => sqlx::query(
                "SELECT chat_id, language_code, last_avatar_id::text AS last_avatar_id,
                        images_per_request::bigint AS images_per_request, aspect_ratio,
                        main_avatar_id::text AS main_avatar_id
                   FROM telegram_users WHERE user_id = $1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await?
            .map(|r| {
                (
                    r.get::<i64, _>("chat_id"),
                    r.get::<Option<String>, _>("language_code"),
                    r.get::<Option<String>, _>("last_avatar_id"),
                    options_from(
                        r.get::<Option<i64>, _>("images_per_request"),
                        r.get::<Option<String>, _>("aspect_ratio"),
                    ),
                    r.get::<Option<String>, _>("main_avatar_id"),
                )
            }),
            Database::Sqlite(pool) => sqlx::query(
                "SELECT chat_id, language_code, last_avatar_id, images_per_request, aspect_ratio,
                        main_avatar_id
                   FROM telegram_users WHERE user_id = ?1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await?
            .map(|r| {
                (
                    r.get::<i64, _>("chat_id"),
                    r.get::<Option<String>, _>("language_code"),
                    r.get::<Option<String>, _>("last_avatar_id"),
                    options_from(
                        r.get::<Option<i64>, _>("images_per_request"),
                        r.get::<Option<String>, _>("aspect_ratio"),
                    ),
                    r.get::<Option<String>, _>("main_avatar_id"),
                )
            }),
        };
        Ok(row.map(
            |(chat_id, language_code, last, options, main)| TelegramUser {
                user_id,
                chat_id,
                language_code,
                last_avatar_id: last.and_then(|s| Uuid::parse_str(&s).ok()),
                main_avatar_id: main.and_then(|s| Uuid::parse_str(&s).ok()),
                options,
            },
        ))
    }

    /// Remembers the user's prompt-screen choices.
    pub async fn set_generation_options(
        &self,
        user_id: i64,
        options: GenerationOptions,
    ) -> Result<(), sqlx::Error> {
        let images = options.images.map(i64::from);
        let aspect = options.aspect.map(|a| a.ratio());
        let sql = "UPDATE telegram_users SET images_per_request = $2, aspect_ratio = $3
                    WHERE user_id = $1";
        match &self.db {
            Database::Postgres(pool) => {
                sqlx::query(sql)
                    .bind(user_id)
                    .bind(images.map(|n| n as i32))
                    .bind(aspect)
                    .execute(pool)
                    .await?;
            }
            Database::Sqlite(pool) => {
                sqlx::query(&sql.replace('$', "?"))
                    .bind(user_id)
                    .bind(images)
                    .bind(aspect)
                    .execute(pool)
                    .await?;
            }
        }
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
