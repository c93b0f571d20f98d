//! Waits for the read models to catch up with what the bot just did, so a screen shown next
//! agrees with what the user was told.

use std::time::Duration;

use db::Conn;
use projections::{gallery, generations};
use uuid::Uuid;

use super::ctx::Ctx;
use crate::store::Database;

/// How long the bot waits for the gallery to show a change it just made.
const READ_MODEL_WAIT: Duration = Duration::from_secs(3);

/// Waits (at most [`READ_MODEL_WAIT`]) until the generations read model counts no more of the
/// avatar's generations as waiting than the avatar itself does: the waiting-generations quota
/// reads that model, and a user who taps right after a result arrived must not be told their
/// images are still being made.
pub(in crate::bot) async fn caught_up_on_generations(ctx: &Ctx, avatar_id: Uuid) {
    let Ok(avatar) = ctx.deps.store.load(avatar_id).await else {
        return;
    };
    let waiting = avatar.pending_generations.len() as i64;
    let deadline = tokio::time::Instant::now() + READ_MODEL_WAIT;
    loop {
        let counted = match connection(&ctx.deps.db).await {
            Ok(mut conn) => generations::pending_for_avatar(&mut conn.tx(), avatar_id).await,
            Err(e) => Err(e.into()),
        };
        match counted {
            Ok(counted) if counted <= waiting => return,
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(counted) => {
                tracing::warn!(%avatar_id, counted, waiting, "the generations read model is behind; checking the quota anyway");
                return;
            }
            Err(e) => {
                tracing::warn!(%avatar_id, error = %crate::telemetry::chain(&e), "could not read the generations read model");
                return;
            }
        }
    }
}

/// Waits (at most [`READ_MODEL_WAIT`]) until the avatar's gallery card is as `done` wants, so
/// that a screen shown next agrees with what the user was just told.
pub(in crate::bot) async fn wait_for_card(
    db: &Database,
    avatar_id: Uuid,
    done: impl Fn(&gallery::AvatarCard) -> bool,
) {
    wait_for_row(db, avatar_id, |card| card.is_some_and(&done)).await;
}

/// [`wait_for_card`] for a row that may be absent (a deleted avatar has none).
pub(in crate::bot) async fn wait_for_row(
    db: &Database,
    avatar_id: Uuid,
    done: impl Fn(Option<&gallery::AvatarCard>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + READ_MODEL_WAIT;
    loop {
        let seen = match connection(db).await {
            Ok(mut conn) => match gallery::card(&mut conn.tx(), avatar_id).await {
                Ok(card) => done(card.as_ref()),
                Err(_) => false,
            },
            Err(_) => false,
        };
        if seen || tokio::time::Instant::now() >= deadline {
            if !seen {
                tracing::warn!(%avatar_id, "the gallery is behind; showing it anyway");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A pooled connection for read-model queries.
pub(in crate::bot) async fn connection(db: &Database) -> Result<Conn, sqlx::Error> {
    db.acquire().await
}
