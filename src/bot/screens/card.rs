//! An avatar's card, and what its buttons do in place: rename, make main, back from a deletion.

use aggregates::{Action, Avatar, AvatarError, AvatarType};
use teloxide::prelude::*;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};
use uuid::Uuid;

use super::studio;
use crate::bot::callbacks::Callback;
use crate::bot::ctx::{apologise, avatar_name, Ctx, Screen};
use crate::bot::keyboards as kb;
use crate::bot::press::{Answer, Buttons, Owned, Pressed};
use crate::bot::texts::CardView;
use crate::bot::{BotDialogue, BotError, HandlerResult, State};
use crate::store::StoreError;

/// The card's buttons.
pub(in crate::bot) fn buttons() -> Buttons {
    dptree::entry()
        .branch(
            dptree::filter(|c: Callback| {
                matches!(c, Callback::Card(_) | Callback::DeleteCancel(_))
            })
            .endpoint(|ctx: Ctx, screen: Screen, owned: Owned| async move {
                show_card(&ctx, screen, owned.id, &owned.avatar).await?;
                Ok(Answer::Silent)
            }),
        )
        .branch(dptree::filter(|c: Callback| matches!(c, Callback::Rename(_))).endpoint(rename))
        .branch(
            dptree::filter(|c: Callback| matches!(c, Callback::MakeMain(_))).endpoint(make_main),
        )
}

/// "Rename": the next text is the new name.
async fn rename(ctx: Ctx, screen: Screen, dialogue: BotDialogue, owned: Owned) -> Pressed {
    let t = ctx.t();
    let avatar_id = owned.id;
    dialogue
        .update(State::AwaitingNewName { avatar_id })
        .await?;
    let keyboard = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback(
        t.btn_back(),
        Callback::Card(avatar_id).encode(),
    )]]);
    ctx.show(
        screen,
        t.ask_new_name(&avatar_name(&owned.avatar)),
        keyboard,
    )
    .await?;
    Ok(Answer::Silent)
}

/// "Make main": then the card again, with its badge.
async fn make_main(ctx: Ctx, screen: Screen, owned: Owned) -> Pressed {
    let answer = studio::make_main(&ctx, owned.id, &owned.avatar).await?;
    if matches!(answer, Answer::Toast(_)) {
        show_card(&ctx, screen, owned.id, &owned.avatar).await?;
    }
    Ok(answer)
}

/// The text after "Rename": the avatar's new name, or the reason it cannot be.
pub(in crate::bot) async fn on_new_name(
    ctx: Ctx,
    dialogue: BotDialogue,
    msg: Message,
    avatar_id: Uuid,
) -> HandlerResult {
    let t = ctx.t();
    let Some(name) = msg.text().filter(|text| !text.starts_with('/')) else {
        ctx.say(t.new_name_expected(), None).await?;
        return Ok(());
    };
    let action = Action::Rename {
        name: name.to_owned(),
    };
    match ctx.execute(avatar_id, action).await {
        Ok(executed) => {
            dialogue.reset().await?;
            let avatar = &executed.state;
            let is_main = studio::is_main(&ctx, avatar_id).await;
            let keyboard = kb::card(t, avatar_id, avatar.status, avatar.photos.len(), is_main);
            ctx.say(t.renamed(&avatar_name(avatar)), Some(keyboard))
                .await?;
        }
        Err(StoreError::Rejected(
            refusal @ (AvatarError::Deleted | AvatarError::NotOwner | AvatarError::NotFound),
        )) => {
            dialogue.reset().await?;
            ctx.say(t.refused(&t.refusal(&refusal)), Some(kb::to_menu(t)))
                .await?;
        }
        // Stay in this step: another name can simply follow.
        Err(StoreError::Rejected(refusal)) => {
            ctx.say(t.refused(&t.refusal(&refusal)), None).await?;
        }
        Err(e) => return apologise(&ctx, e.into()).await,
    }
    Ok(())
}

/// The card of one avatar, with the buttons its status allows.
pub(in crate::bot) async fn show_card(
    ctx: &Ctx,
    screen: Screen,
    avatar_id: Uuid,
    avatar: &Avatar,
) -> Result<(), BotError> {
    let t = ctx.t();
    let view = CardView {
        name: avatar_name(avatar),
        avatar_type: avatar.avatar_type.unwrap_or(AvatarType::Portrait),
        status: avatar.status,
        photos: avatar.photos.len(),
        generations: avatar.generations_completed,
    };
    let is_main = studio::is_main(ctx, avatar_id).await;
    let keyboard = kb::card(t, avatar_id, avatar.status, avatar.photos.len(), is_main);
    let mut text = t.card(&view);
    if is_main {
        text.push_str(&format!("\n{}", t.main_badge()));
    }
    ctx.show(screen, text, keyboard).await?;
    Ok(())
}
