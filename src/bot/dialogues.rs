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
use db::Arg;
use futures::future::BoxFuture;
use teloxide::dispatching::dialogue::Storage;
use teloxide::types::ChatId;

use super::State;
use crate::store::{Database, StoreError};

/// Why a step could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DialogueError {
    #[error("dialogue storage")]
    Database(#[from] sqlx::Error),
    #[error("dialogue storage")]
    Store(#[from] StoreError),
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
        let mut conn = self.db.acquire().await?;
        let row = conn
            .tx()
            .fetch_optional(
                "SELECT state FROM bot_dialogues WHERE chat_id = $1",
                vec![Arg::I64(chat.0)],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        match row.get::<sqlx::types::Json<State>>("state") {
            Ok(state) => Ok(Some(state.0)),
            Err(sqlx::Error::ColumnDecode { source, .. }) => {
                // A step written by another version: better to start the chat afresh than to
                // refuse every message from it.
                tracing::warn!(chat = chat.0, error = %crate::telemetry::chain(&*source),
                    "unreadable dialogue step; starting afresh");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn store(&self, chat: ChatId, state: State) -> Result<(), DialogueError> {
        if state == State::Idle {
            // Idle is the absence of a row: most chats are idle most of the time.
            return self.forget(chat).await;
        }
        let json = serde_json::to_value(&state)?;
        let mut conn = self.db.acquire().await?;
        conn.tx()
            .execute(
                "INSERT INTO bot_dialogues (chat_id, state, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (chat_id) DO UPDATE
                    SET state = excluded.state, updated_at = excluded.updated_at",
                vec![Arg::I64(chat.0), Arg::Json(json), Arg::Time(Utc::now())],
            )
            .await?;
        Ok(())
    }

    async fn forget(&self, chat: ChatId) -> Result<(), DialogueError> {
        let mut conn = self.db.acquire().await?;
        conn.tx()
            .execute(
                "DELETE FROM bot_dialogues WHERE chat_id = $1",
                vec![Arg::I64(chat.0)],
            )
            .await?;
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
