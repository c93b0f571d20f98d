//! Asking for images: one prompt, or several in one message as a batch, each its own paid
//! generation; the images themselves come later with the notifier.

use aggregates::{Action, AvatarError, GenerationPreset};
use uuid::Uuid;

use crate::bot::charge::Refusal;
use crate::bot::ctx::{avatar_name, Ctx};
use crate::bot::keyboards as kb;
use crate::bot::quotas::Ask;
use crate::bot::reads::caught_up_on_generations;
use crate::bot::BotError;

/// Prompts one message may carry as a batch (one per line).
pub const MAX_PROMPTS_PER_MESSAGE: u32 = 5;

/// Asks for images; the progress message goes out at once, the images come with the notifier.
/// `Ok(Err(_))` is the domain's refusal, for the caller to explain.
pub(in crate::bot) async fn generate(
    ctx: &Ctx,
    avatar_id: Uuid,
    prompt: String,
    preset: Option<GenerationPreset>,
) -> Result<Result<(), Refusal>, BotError> {
    generate_one(ctx, avatar_id, prompt, preset, None, None, None).await
}

/// [`generate`] for one prompt, alone or (`batch`) as one item of a batch, whose progress
/// message the caller sends once for all.
pub(in crate::bot) async fn generate_one(
    ctx: &Ctx,
    avatar_id: Uuid,
    prompt: String,
    preset: Option<GenerationPreset>,
    batch: Option<aggregates::BatchItem>,
    pack: Option<&crate::packs::Pack>,
    generation_id: Option<Uuid>,
) -> Result<Result<(), Refusal>, BotError> {
    caught_up_on_generations(ctx, avatar_id).await;
    if let Some(reached) = ctx.quota(Ask::Generation).await? {
        ctx.say(ctx.t().quota_reached(reached), Some(kb::to_menu(ctx.t())))
            .await?;
        return Ok(Ok(()));
    }
    let generation_id =
        generation_id.unwrap_or_else(|| crate::bot::inbox::derived_id("generation"));
    let options = ctx.options().await;
    // A pack makes one picture per scene, in its own frame when it has one.
    let (num_images, aspect, origin) = match pack {
        Some(pack) => (
            1,
            pack.aspect.or(options.aspect),
            Some(aggregates::Origin::Pack {
                pack: pack.id.clone(),
            }),
        ),
        None => (options.images(), options.aspect, None),
    };
    let requested = ctx
        .execute_paid(
            avatar_id,
            Action::Generate {
                generation_id,
                prompt,
                preset,
                num_images,
                aspect,
                batch,
                origin,
            },
        )
        .await?;
    match requested {
        Ok(executed) => {
            tracing::info!(user = ctx.user, %avatar_id, %generation_id,
                preset = preset.map_or("default", |p| p.as_str()), "generation requested");
            ctx.remember_avatar(avatar_id).await;
            if batch.is_none() {
                let name = avatar_name(&executed.state);
                ctx.say(ctx.t().generation_started(&name, preset), None)
                    .await?;
            }
            Ok(Ok(()))
        }
        Err(refusal) => Ok(Err(refusal)),
    }
}

/// Several prompts in one message (one per line): each its own generation, so one failing
/// fails no other; one message says how many started, each result comes as it finishes.
pub(in crate::bot) async fn generate_batch(
    ctx: &Ctx,
    avatar_id: Uuid,
    prompts: &[&str],
    preset: GenerationPreset,
) -> Result<Result<(), Refusal>, BotError> {
    let t = ctx.t();
    let size = prompts.len() as u32;
    if size > MAX_PROMPTS_PER_MESSAGE {
        return Ok(Err(AvatarError::InvalidBatch {
            index: size - 1,
            size,
            max: MAX_PROMPTS_PER_MESSAGE,
        }
        .into()));
    }
    let batch_id = crate::bot::inbox::derived_id("batch");
    let mut started = 0;
    let mut refused = Vec::new();
    for (index, prompt) in prompts.iter().enumerate() {
        let item = aggregates::BatchItem {
            batch_id,
            index: index as u32,
            size,
        };
        match generate_one(
            ctx,
            avatar_id,
            (*prompt).to_owned(),
            Some(preset),
            Some(item),
            None,
            None,
        )
        .await?
        {
            Ok(()) => started += 1,
            Err(refusal) => {
                let no_credits = matches!(refusal, Refusal::NoCredits { .. });
                refused.push((index + 1, refusal));
                // The balance will not grow during the batch: the rest would be refused too.
                if no_credits {
                    break;
                }
            }
        }
    }
    if started == 0 {
        // Nothing runs: the first reason is the answer, and the prompt step stays.
        if let Some((_, refusal)) = refused.into_iter().next() {
            return Ok(Err(refusal));
        }
        return Ok(Ok(()));
    }
    let name = avatar_name(&ctx.deps.store.load(avatar_id).await?);
    let out_of_credits = refused
        .iter()
        .find(|(_, refusal)| matches!(refusal, Refusal::NoCredits { .. }))
        .map(|(_, refusal)| refusal.clone());
    let refused: Vec<String> = refused
        .iter()
        .map(|(n, refusal)| format!("{n}. {}", refusal.text(t)))
        .collect();
    ctx.say(
        t.batch_started(&name, preset, started, size, &refused),
        None,
    )
    .await?;
    if let Some(no_credits) = out_of_credits {
        ctx.say_no_credits(&no_credits).await?;
    }
    Ok(Ok(()))
}
