//! Creating an avatar: its type, its gender, then its name, which creates it.

use aggregates::{Action, AvatarType, Gender};
use teloxide::dptree::{self, case};
use teloxide::prelude::*;

use crate::bot::callbacks::Callback;
use crate::bot::ctx::{apologise, avatar_name, Ctx, Screen};
use crate::bot::keyboards as kb;
use crate::bot::press::{Answer, Buttons, Pressed};
use crate::bot::quotas::Ask;
use crate::bot::{BotDialogue, HandlerResult, State};
use crate::store::StoreError;

/// The buttons of creation.
pub(in crate::bot) fn buttons() -> Buttons {
    dptree::entry()
        .branch(case![Callback::NewAvatar].endpoint(new_avatar))
        .branch(case![Callback::ChooseType(avatar_type)].endpoint(
            |ctx: Ctx, screen: Screen, avatar_type: AvatarType| async move {
                let t = ctx.t();
                ctx.show(
                    screen,
                    t.choose_gender(avatar_type),
                    kb::genders(t, avatar_type),
                )
                .await?;
                Ok(Answer::Silent)
            },
        ))
        .branch(case![Callback::ChooseGender(avatar_type, gender)].endpoint(choose_gender))
}

async fn new_avatar(ctx: Ctx, screen: Screen, dialogue: BotDialogue) -> Pressed {
    let t = ctx.t();
    dialogue.reset().await?;
    ctx.show(screen, t.choose_type(), kb::avatar_types(t))
        .await?;
    Ok(Answer::Silent)
}

/// Type and gender chosen: the next text is the name.
async fn choose_gender(
    ctx: Ctx,
    screen: Screen,
    dialogue: BotDialogue,
    (avatar_type, gender): (AvatarType, Gender),
) -> Pressed {
    let t = ctx.t();
    dialogue
        .update(State::AwaitingName {
            avatar_type,
            gender,
        })
        .await?;
    ctx.show(screen, t.ask_name(), kb::to_menu(t)).await?;
    Ok(Answer::Silent)
}

/// The avatar's name, typed after choosing type and gender.
pub(in crate::bot) async fn on_name(
    ctx: Ctx,
    dialogue: BotDialogue,
    msg: Message,
    (avatar_type, gender): (AvatarType, Gender),
) -> HandlerResult {
    let t = ctx.t();
    let Some(name) = msg.text().filter(|text| !text.starts_with('/')) else {
        ctx.say(t.name_expected(), None).await?;
        return Ok(());
    };
    if let Some(reached) = ctx.quota(Ask::Avatar).await? {
        ctx.say(t.quota_reached(reached), Some(kb::to_menu(t)))
            .await?;
        return Ok(());
    }
    // From the update: handled again after an interruption, it names the same avatar.
    let avatar_id = crate::bot::inbox::derived_id("avatar");
    let created = ctx
        .execute(
            avatar_id,
            Action::Create {
                avatar_id,
                name: name.to_owned(),
                gender,
                avatar_type,
            },
        )
        .await;
    match created {
        Ok(executed) => {
            tracing::info!(user = ctx.user, %avatar_id, avatar_type = %avatar_type, "avatar created");
            ctx.remember_avatar(avatar_id).await;
            dialogue.update(State::Uploading { avatar_id }).await?;
            ctx.say(
                t.avatar_created(&avatar_name(&executed.state), ctx.deps.photo_retention),
                None,
            )
            .await?;
        }
        Err(StoreError::Rejected(refusal)) => {
            // Stay in this step: the user can simply send another name.
            ctx.say(t.refused(&t.refusal(&refusal)), None).await?;
        }
        Err(e) => return apologise(&ctx, e.into()).await,
    }
    Ok(())
}
