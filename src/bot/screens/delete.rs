//! Deleting an avatar: seed 003's confirmation, then the deletion and the gallery without it.

use aggregates::Action;
use teloxide::dptree;

use super::gallery::show_gallery;
use crate::bot::callbacks::Callback;
use crate::bot::ctx::{avatar_name, capitalised, Ctx, Screen};
use crate::bot::keyboards as kb;
use crate::bot::press::{Answer, Buttons, Owned, Pressed};
use crate::bot::reads::wait_for_row;
use crate::bot::{BotDialogue, State};
use crate::store::StoreError;

/// The deletion's buttons ("no" goes back to the card, see [`super::card`]).
pub(in crate::bot) fn buttons() -> Buttons {
    dptree::entry()
        .branch(dptree::filter(|c: Callback| matches!(c, Callback::Delete(_))).endpoint(ask))
        .branch(
            dptree::filter(|c: Callback| matches!(c, Callback::DeleteConfirm(_))).endpoint(confirm),
        )
}

/// The confirmation, with what deleting removes and for how long FAL keeps uploads.
async fn ask(ctx: Ctx, screen: Screen, owned: Owned) -> Pressed {
    let t = ctx.t();
    let text = t.delete_confirmation(
        &avatar_name(&owned.avatar),
        owned.avatar.status,
        ctx.deps.fal_uploads_kept_for,
    );
    ctx.show(screen, text, kb::delete_confirmation(t, owned.id))
        .await?;
    Ok(Answer::Silent)
}

async fn confirm(ctx: Ctx, screen: Screen, dialogue: BotDialogue, owned: Owned) -> Pressed {
    let t = ctx.t();
    let avatar_id = owned.id;
    let executed = match ctx.execute(avatar_id, Action::Delete).await {
        Ok(executed) => executed,
        Err(StoreError::Rejected(refusal)) => {
            return Ok(Answer::Alert(capitalised(&t.refusal(&refusal))));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(user = ctx.user, %avatar_id, "avatar deleted");
    let state = dialogue.get().await?;
    if matches!(state, Some(State::Uploading { avatar_id: a } | State::AwaitingPrompt { avatar_id: a, .. }) if a == avatar_id)
    {
        dialogue.reset().await?;
    }
    if !executed.events.is_empty() {
        // The deletion removes the avatar's row: the gallery shown next must not list it.
        wait_for_row(&ctx.deps.db, avatar_id, |card| card.is_none()).await;
    }
    show_gallery(&ctx, screen, 0).await?;
    Ok(Answer::Toast(t.avatar_deleted(&avatar_name(&owned.avatar))))
}
