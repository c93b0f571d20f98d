//! Generating from a prompt: the avatar and preset, the prompt screen with the user's choices
//! (images, frame, recent prompts), and the prompt typed or reused.

use aggregates::{Avatar, AvatarError, GenerationPreset};
use projections::generations;
use teloxide::dptree::{self, case};
use teloxide::prelude::*;
use teloxide::RequestError;
use uuid::Uuid;

use super::gallery::show_generation_avatars;
use super::generate::{generate, generate_batch};
use super::studio;
use crate::bot::callbacks::Callback;
use crate::bot::charge::Refusal;
use crate::bot::ctx::{avatar_name, capitalised, Ctx, Screen};
use crate::bot::keyboards as kb;
use crate::bot::press::{Answer, Buttons, Owned, Pressed};
use crate::bot::reads::connection;
use crate::bot::users::GenerationOptions;
use crate::bot::{BotDialogue, BotError, HandlerResult, State};

/// The buttons that lead to a prompt (those that name no avatar come first).
pub(in crate::bot) fn buttons() -> Buttons {
    dptree::entry().branch(case![Callback::GenerateMenu].endpoint(generate_menu))
}

/// The buttons of the prompt screen and the way to it, for an avatar of the user's.
pub(in crate::bot) fn avatar_buttons() -> Buttons {
    dptree::entry()
        .branch(dptree::filter(|c: Callback| matches!(c, Callback::Generate(_))).endpoint(presets))
        .branch(case![Callback::GeneratePreset(avatar, preset)].endpoint(
            |ctx: Ctx,
             screen: Screen,
             dialogue: BotDialogue,
             owned: Owned,
             (_, preset): (Uuid, GenerationPreset)| async move {
                if let Err(refusal) = owned.avatar.can_generate() {
                    return Ok(Answer::Alert(capitalised(&ctx.t().refusal(&refusal))));
                }
                let avatar_id = owned.id;
                dialogue
                    .update(State::AwaitingPrompt { avatar_id, preset })
                    .await?;
                show_prompt_screen(&ctx, screen, avatar_id, &owned.avatar, preset).await?;
                Ok(Answer::Silent)
            },
        ))
        .branch(
            case![Callback::PromptOptions {
                avatar,
                preset,
                images,
                aspect
            }]
            .endpoint(options),
        )
        .branch(
            case![Callback::Reuse {
                avatar,
                preset,
                generation
            }]
            .endpoint(reuse),
        )
}

/// "Generate": straight to the main avatar's presets, or the avatars to choose from.
async fn generate_menu(ctx: Ctx, screen: Screen) -> Pressed {
    let t = ctx.t();
    match studio::main_avatar(&ctx).await? {
        Some((avatar_id, avatar)) => {
            ctx.remember_avatar(avatar_id).await;
            let text = t.choose_generation_preset(&avatar_name(&avatar));
            ctx.show(screen, text, kb::generation_presets(t, avatar_id, true))
                .await?;
        }
        None => show_generation_avatars(&ctx, screen).await?,
    }
    Ok(Answer::Silent)
}

/// The generation presets for a trained avatar.
async fn presets(ctx: Ctx, screen: Screen, owned: Owned) -> Pressed {
    let t = ctx.t();
    if let Err(refusal) = owned.avatar.can_generate() {
        return Ok(Answer::Alert(capitalised(&t.refusal(&refusal))));
    }
    ctx.remember_avatar(owned.id).await;
    let text = t.choose_generation_preset(&avatar_name(&owned.avatar));
    ctx.show(screen, text, kb::generation_presets(t, owned.id, false))
        .await?;
    Ok(Answer::Silent)
}

/// A choice of images per request or of the frame, remembered for the user.
async fn options(
    ctx: Ctx,
    screen: Screen,
    dialogue: BotDialogue,
    owned: Owned,
    (_, preset, images, aspect): (Uuid, GenerationPreset, u8, Option<aggregates::AspectRatio>),
) -> Pressed {
    if let Err(refusal) = owned.avatar.can_generate() {
        return Ok(Answer::Alert(capitalised(&ctx.t().refusal(&refusal))));
    }
    let options = GenerationOptions {
        images: Some(u32::from(images)),
        aspect,
    };
    if options == ctx.options().await {
        // A second tap on the choice already made: the screen would not change.
        return Ok(Answer::Silent);
    }
    ctx.deps
        .users
        .set_generation_options(ctx.user, options)
        .await?;
    let avatar_id = owned.id;
    dialogue
        .update(State::AwaitingPrompt { avatar_id, preset })
        .await?;
    show_prompt_screen(&ctx, screen, avatar_id, &owned.avatar, preset).await?;
    Ok(Answer::Silent)
}

/// One of the user's earlier prompts, run again with this avatar and preset.
async fn reuse(
    ctx: Ctx,
    dialogue: BotDialogue,
    owned: Owned,
    (_, preset, generation): (Uuid, GenerationPreset, Uuid),
) -> Pressed {
    let t = ctx.t();
    let avatar_id = owned.id;
    let earlier = match connection(&ctx.deps.db).await {
        Ok(mut conn) => generations::get(&mut conn.tx(), generation).await?,
        Err(e) => return Err(BotError::Database(e)),
    };
    // Only the user's own prompts: ids in buttons can be forged.
    let Some(earlier) = earlier.filter(|g| g.owner == ctx.user) else {
        return Ok(Answer::Alert(t.stale_button().to_owned()));
    };
    if dialogue.get().await? == Some(State::AwaitingPrompt { avatar_id, preset }) {
        dialogue.reset().await?;
    }
    if let Err(refusal) = generate(&ctx, avatar_id, earlier.prompt, Some(preset)).await? {
        return ctx.answer_refusal(refusal).await;
    }
    Ok(Answer::Silent)
}

/// A prompt, typed after choosing an avatar and a preset.
pub(in crate::bot) async fn on_prompt(
    ctx: Ctx,
    dialogue: BotDialogue,
    msg: Message,
    (avatar_id, preset): (Uuid, GenerationPreset),
) -> HandlerResult {
    let t = ctx.t();
    let Some(prompt) = msg.text().filter(|text| !text.starts_with('/')) else {
        ctx.say(t.prompt_expected(), None).await?;
        return Ok(());
    };
    let lines: Vec<&str> = prompt
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let outcome = if lines.len() > 1 {
        generate_batch(&ctx, avatar_id, &lines, preset).await?
    } else {
        generate(&ctx, avatar_id, prompt.to_owned(), Some(preset)).await?
    };
    match outcome {
        Ok(()) => dialogue.reset().await?,
        // The prompt step stays: after buying, the same prompt can be sent again.
        Err(no_credits @ Refusal::NoCredits { .. }) => ctx.say_no_credits(&no_credits).await?,
        Err(Refusal::Avatar(
            refusal @ (AvatarError::PromptTooLong { .. }
            | AvatarError::EmptyPrompt
            | AvatarError::InvalidBatch { .. }),
        )) => {
            // Stay in this step so a shorter prompt can follow.
            let options = ctx.options().await;
            let recent = recent_prompts(&ctx).await;
            ctx.say(
                t.refused(&t.refusal(&refusal)),
                Some(kb::prompt(t, avatar_id, preset, options, &recent)),
            )
            .await?;
        }
        Err(Refusal::Avatar(refusal)) => {
            dialogue.reset().await?;
            ctx.say(t.refused(&t.refusal(&refusal)), Some(kb::to_menu(t)))
                .await?;
        }
    }
    Ok(())
}

/// The prompt screen for `avatar` and `preset` with the user's current choices.
async fn show_prompt_screen(
    ctx: &Ctx,
    screen: Screen,
    avatar_id: Uuid,
    avatar: &Avatar,
    preset: GenerationPreset,
) -> Result<(), RequestError> {
    let t = ctx.t();
    let options = ctx.options().await;
    let recent = recent_prompts(ctx).await;
    let mut text = format!(
        "{}\n\n{}",
        t.ask_prompt(&avatar_name(avatar), preset),
        t.prompt_options(options.images(), options.aspect)
    );
    let price = ctx
        .deps
        .payments
        .prices
        .generation(Some(preset), options.images());
    if let Some(price) = ctx.price_line(price).await {
        text.push_str(&format!("\n{price}"));
    }
    let keyboard = kb::prompt(t, avatar_id, preset, options, &recent);
    ctx.show(screen, text, keyboard).await
}

/// The user's last distinct prompts, newest first, with a generation that used each (none
/// if the read model cannot be read: the screen works without them).
async fn recent_prompts(ctx: &Ctx) -> Vec<(Uuid, String)> {
    let latest = match connection(&ctx.deps.db).await {
        Ok(mut conn) => {
            generations::recent_prompts_for_owner(&mut conn.tx(), ctx.user, 0, 50).await
        }
        Err(e) => Err(e.into()),
    };
    let latest = match latest {
        Ok(latest) => latest,
        Err(e) => {
            tracing::warn!(user = ctx.user, error = %crate::telemetry::chain(&e), "could not read recent prompts");
            return Vec::new();
        }
    };
    let mut seen = std::collections::HashSet::new();
    latest
        .into_iter()
        .filter(|g| seen.insert(g.prompt.clone()))
        .take(kb::RECENT_PROMPTS)
        .map(|g| (g.generation_id, g.prompt))
        .collect()
}
