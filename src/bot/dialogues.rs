//! Where each chat's conversation stands, kept in `bot_dialogues` so that a restart — or a
//! crash — does not make a user repeat the step they were on (typing a name, sending photos,
//! typing a prompt).
//!
//! A teloxide dialogue [`Storage`]. Every update reads its chat's step from the database (one
//! lookup by primary key) — the step as it was before that update, even when it is handled
//! again after an interruption — and every change is written before the handler goes on: with several
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

    /// The chat's step as the update being handled first found it: when that update wrote the
    /// row already (it is handled again after an interruption), the step it replaced.
    async fn load(&self, chat: ChatId) -> Result<Option<State>, DialogueError> {
        let mut conn = self.db.acquire().await?;
        let row = conn
            .tx()
            .fetch_optional(
                "SELECT state, previous, written_by FROM bot_dialogues WHERE chat_id = $1",
                vec![Arg::I64(chat.0)],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let written_by: Option<i64> = row.get("written_by")?;
        let again = written_by.is_some() && written_by == current_update();
        let step = if again {
            row.get::<Option<sqlx::types::Json<State>>>("previous")
                .map(|s| s.map(|s| s.0))
        } else {
            row.get::<sqlx::types::Json<State>>("state")
                .map(|s| Some(s.0))
        };
        match step {
            // A chat back at idle has no dialogue, as one that never started.
            Ok(step) => Ok(step.filter(|s| *s != State::Idle)),
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

    /// Writes the chat's step. The first write of an update keeps the step it replaces beside
    /// it; later writes of the same update keep that one. Idle is written too, not deleted, so
    /// that a re-run of the update that ended a step still finds the step.
    async fn store(&self, chat: ChatId, state: State) -> Result<(), DialogueError> {
        let json = serde_json::to_value(&state)?;
        let update = current_update();
        let mut conn = self.db.acquire().await?;
        conn.tx()
            .execute(
                "INSERT INTO bot_dialogues (chat_id, state, previous, written_by, updated_at)
                 VALUES ($1, $2, NULL, $3, $4)
                 ON CONFLICT (chat_id) DO UPDATE
                    SET previous = CASE WHEN bot_dialogues.written_by = excluded.written_by
                                        THEN bot_dialogues.previous
                                        ELSE bot_dialogues.state END,
                        state = excluded.state,
                        written_by = excluded.written_by,
                        updated_at = excluded.updated_at",
                vec![
                    Arg::I64(chat.0),
                    Arg::Json(json),
                    update.into(),
                    Arg::Time(Utc::now()),
                ],
            )
            .await?;
        Ok(())
    }
}

/// The Telegram update being handled, if any (see [`super::inbox`]).
fn current_update() -> Option<i64> {
    super::inbox::current_update()
}

impl Storage<State> for Dialogues {
    type Error = DialogueError;

    fn remove_dialogue(
        self: Arc<Self>,
        chat_id: ChatId,
    ) -> BoxFuture<'static, Result<(), Self::Error>> {
        Box::pin(async move { self.store(chat_id, State::Idle).await })
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
