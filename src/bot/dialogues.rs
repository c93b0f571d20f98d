//! Where each chat's conversation stands, kept in `bot_dialogues` so that a restart — or a
//! crash — does not make a user repeat the step they were on (typing a name, sending photos,
//! typing a prompt).
//!
//! A teloxide dialogue [`Storage`]. Every update reads its chat's step from the database (one
//! lookup by primary key) and every change is written before the handler goes on: with several
//! instances behind one webhook a chat's next update may reach another process, so no copy in
//! memory could be trusted not to be stale — a stale "waiting for a prompt" would turn an
//! ordinary message into a paid generation.

use std::sync::Arc;

use chrono::Utc;
use futures::future::BoxFuture;
use sqlx::Row;
use teloxide::dispatching::dialogue::Storage;
use teloxide::types::ChatId;

use super::State;
use crate::store::Database;

/// Why a step could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DialogueError {
    #[error("dialogue storage: {0}")]
    Database(#[from] sqlx::Error),
    #[error("dialogue storage: a stored step is not readable: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// The dialogue storage of the bot.
pub struct Dialogues {
    db: Database,
}

impl Dialogues {
    pub fn new(db: Database) -> Arc<Self> {
        Arc::new(Self { db })
    }

    async fn load(&self, chat: ChatId) -> Result<Option<State>, DialogueError> {
        let stored: Option<String> = match &self.db {
            Database::Postgres(pool) => {
                sqlx::query("SELECT state::text AS state FROM bot_dialogues WHERE chat_id = $1")
                    .bind(chat.0)
                    .fetch_optional(pool)
                    .await?
                    .map(|r| r.get("state"))
            }
            Database::Sqlite(pool) => {
                sqlx::query("SELECT state FROM bot_dialogues WHERE chat_id = ?1")
                    .bind(chat.0)
                    .fetch_optional(pool)
                    .await?
                    .map(|r| r.get("state"))
            }
        };
        let state = match stored {
            None => None,
            Some(json) => match serde_json::from_str::<State>(&json) {
                Ok(state) => Some(state),
                Err(e) => {
                    // A step written by another version: better to start the chat afresh than
                    // to refuse every message from it.
                    tracing::warn!(chat = chat.0, error = %crate::telemetry::chain(&e), "unreadable dialogue step; starting afresh");
                    None
                }
            },
        };
        Ok(state)
    }

    async fn store(&self, chat: ChatId, state: State) -> Result<(), DialogueError> {
        if state == State::Idle {
            // Idle is the absence of a row: most chats are idle most of the time.
            return self.forget(chat).await;
        }
        let json = serde_json::to_string(&state)?;
        let now = Utc::now();
        match &self.db {
            Database::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO bot_dialogues (chat_id, state, updated_at)
                     VALUES ($1, $2::jsonb, $3)
                     ON CONFLICT (chat_id) DO UPDATE
                        SET state = excluded.state, updated_at = excluded.updated_at",
                )
                .bind(chat.0)
                .bind(json)
                .bind(now)
                .execute(pool)
                .await?;
            }
            Database::Sqlite(pool) => {
                sqlx::query(
                    "INSERT INTO bot_dialogues (chat_id, state, updated_at)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (chat_id) DO UPDATE
                        SET state = excluded.state, updated_at = excluded.updated_at",
                )
                .bind(chat.0)
                .bind(json)
                .bind(now.to_rfc3339())
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    async fn forget(&self, chat: ChatId) -> Result<(), DialogueError> {
        match &self.db {
            Database::Postgres(pool) => {
                sqlx::query("DELETE FROM bot_dialogues WHERE chat_id = $1")
                    .bind(chat.0)
                    .execute(pool)
                    .await?;
            }
            Database::Sqlite(pool) => {
                sqlx::query("DELETE FROM bot_dialogues WHERE chat_id = ?1")
                    .bind(chat.0)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }
}

impl Storage<State> for Dialogues {
    type Error = DialogueError;

    fn remove_dialogue(
        self: Arc<Self>,
        chat_id: ChatId,
    ) -> BoxFuture<'static, Result<(), Self::Error>> {
        Box::pin(async move { self.forget(chat_id).await })
    }

    fn update_dialogue(
        self: Arc<Self>,
        chat_id: ChatId,
        dialogue: State,
    ) -> BoxFuture<'static, Result<(), Self::Error>> {
        Box::pin(async move { self.store(chat_id, dialogue).await })
    }

    fn get_dialogue(
        self: Arc<Self>,
        chat_id: ChatId,
    ) -> BoxFuture<'static, Result<Option<State>, Self::Error>> {
        Box::pin(async move { self.load(chat_id).await })
    }
}
