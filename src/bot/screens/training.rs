//! Training: the presets with their prices, then the paid start, whose message becomes the
//! training's progress bar.

use aggregates::{Action, AvatarType, TrainingPreset};
use teloxide::dptree::{self, case};
use uuid::Uuid;

use crate::bot::callbacks::Callback;
use crate::bot::ctx::{avatar_name, capitalised, Ctx, Screen};
use crate::bot::keyboards as kb;
use crate::bot::press::{Answer, Buttons, Owned, Pressed};
use crate::bot::quotas::Ask;
use crate::bot::{BotDialogue, State};

/// The training buttons.
pub(in crate::bot) fn buttons() -> Buttons {
    dptree::entry()
        .branch(dptree::filter(|c: Callback| matches!(c, Callback::Train(_))).endpoint(presets))
        .branch(case![Callback::StartTraining(avatar, preset)].endpoint(start))
}

/// The training presets, once the avatar can train at all.
async fn presets(ctx: Ctx, screen: Screen, owned: Owned) -> Pressed {
    let t = ctx.t();
    let avatar = &owned.avatar;
    if let Err(refusal) = avatar.can_start_training() {
        return Ok(Answer::Alert(capitalised(&t.refusal(&refusal))));
    }
    let mut text = t.choose_training_preset(&avatar_name(avatar), avatar.photos.len());
    if let Some(prices) = ctx.training_prices().await {
        text.push_str(&format!("\n\n{prices}"));
    }
    ctx.show(screen, text, kb::training_presets(t, owned.id))
        .await?;
    Ok(Answer::Silent)
}

async fn start(
    ctx: Ctx,
    screen: Screen,
    dialogue: BotDialogue,
    owned: Owned,
    (_, preset): (Uuid, TrainingPreset),
) -> Pressed {
    let t = ctx.t();
    let (avatar_id, avatar) = (owned.id, &owned.avatar);
    if let Some(reached) = ctx.quota(Ask::Training).await? {
        return Ok(Answer::Alert(t.quota_reached(reached)));
    }
    // One id per press: handled again after an interruption, the press names the same training.
    let training_id = crate::bot::inbox::derived_id("training");
    let started = ctx
        .execute_paid(
            avatar_id,
            Action::StartTraining {
                training_id,
                preset,
                style: ctx.deps.style_trainer,
            },
        )
        .await?;
    let started = match started {
        Ok(started) => started,
        Err(refusal) => return ctx.answer_refusal(refusal).await,
    };
    let running = started.state.training.as_ref().map(|run| run.training_id);
    if started.events.is_empty() && running != Some(training_id) {
        // The first handling of this press started the training and it has ended since; the
        // user was told how, and this message must not claim it runs again.
        tracing::info!(user = ctx.user, %avatar_id, %training_id, "training press handled again after its training ended");
        return Ok(Answer::Silent);
    }
    tracing::info!(user = ctx.user, %avatar_id, preset = preset.as_str(), "training started");
    if dialogue.get().await? == Some(State::Uploading { avatar_id }) {
        dialogue.reset().await?;
    }
    let avatar_type = avatar.avatar_type.unwrap_or(AvatarType::Portrait);
    let text = t.training_started(&avatar_name(avatar), avatar_type, preset);
    // This message becomes the training's progress bar.
    let shown = ctx.show_at(screen, text.clone(), kb::to_menu(t)).await?;
    let message = (ctx.chat, shown);
    crate::bot::progress::track(
        &ctx.bot, &ctx.deps, avatar_id, ctx.user, message, ctx.lang, &text,
    )
    .await;
    Ok(Answer::Silent)
}
