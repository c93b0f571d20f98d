//! The buttons under a result: the image as a file, the same prompt again, or with another
//! preset. Each finds what it needs in the avatar's history.

use aggregates::{AvatarEvent, GenerationPreset};
use teloxide::dptree::{self, case};
use teloxide::prelude::*;
use uuid::Uuid;

use super::generate::generate;
use crate::bot::callbacks::Callback;
use crate::bot::ctx::{avatar_name, Ctx, Screen};
use crate::bot::keyboards as kb;
use crate::bot::press::{Answer, Buttons, Owned, Pressed};
use crate::bot::send::sending;
use crate::bot::BotError;
use crate::store::StoreError;

/// The buttons under a result.
pub(in crate::bot) fn buttons() -> Buttons {
    dptree::entry()
        .branch(
            case![Callback::AsFile {
                avatar,
                generation,
                image
            }]
            .endpoint(
                |ctx: Ctx, owned: Owned, (_, generation, image): (Uuid, Uuid, u8)| async move {
                    as_file(&ctx, owned.id, generation, image).await
                },
            ),
        )
        .branch(case![Callback::Again { avatar, generation }].endpoint(
            |ctx: Ctx, owned: Owned, (_, generation): (Uuid, Uuid)| async move {
                again(&ctx, owned.id, generation, None).await
            },
        ))
        .branch(
            case![Callback::OtherPreset { avatar, generation }].endpoint(
                |ctx: Ctx, screen: Screen, owned: Owned, (_, generation): (Uuid, Uuid)| async move {
                    other_preset(&ctx, screen, &owned, generation).await
                },
            ),
        )
        .branch(
            case![Callback::Regenerate {
                avatar,
                generation,
                preset
            }]
            .endpoint(
                |ctx: Ctx,
                 owned: Owned,
                 (_, generation, preset): (Uuid, Uuid, GenerationPreset)| async move {
                    again(&ctx, owned.id, generation, Some(preset)).await
                },
            ),
        )
}

/// Image `image` of a result, sent as a document (no recompression).
async fn as_file(ctx: &Ctx, avatar_id: Uuid, generation: Uuid, image: u8) -> Pressed {
    let t = ctx.t();
    let Some(found) = generated_image(ctx, avatar_id, generation, image).await? else {
        return Ok(Answer::Alert(t.image_unavailable().to_owned()));
    };
    let bytes =
        crate::actors::copies::image_bytes(&ctx.deps.photos, &ctx.deps.fal, avatar_id, &found.url)
            .await;
    match bytes {
        Ok(bytes) => {
            let extension = match found.content_type.as_deref() {
                Some("image/png") => "png",
                Some("image/webp") => "webp",
                _ => "jpg",
            };
            let name = format!(
                "aisha-{}-{}.{extension}",
                &generation.simple().to_string()[..8],
                image + 1
            );
            let file = teloxide::types::InputFile::memory(bytes).file_name(name);
            sending(&ctx.deps.limiter, ctx.chat, 1, "sendDocument", || {
                ctx.bot.send_document(ctx.chat, file.clone()).send()
            })
            .await?;
        }
        Err(e) => {
            tracing::warn!(user = ctx.user, %generation, error = %crate::telemetry::chain(&e), "could not fetch an image to send as a file");
            return Ok(Answer::Alert(t.image_unavailable().to_owned()));
        }
    }
    Ok(Answer::Silent)
}

/// The prompt of a finished generation again, with its own preset or (`preset`) another.
async fn again(
    ctx: &Ctx,
    avatar_id: Uuid,
    generation: Uuid,
    preset: Option<GenerationPreset>,
) -> Pressed {
    let t = ctx.t();
    let Some((prompt, asked)) = requested_generation(ctx, avatar_id, generation).await? else {
        return Ok(Answer::Alert(t.stale_button().to_owned()));
    };
    let preset = match preset {
        Some(preset) => Some(preset),
        None => asked,
    };
    if let Err(refusal) = generate(ctx, avatar_id, prompt, preset).await? {
        return ctx.answer_refusal(refusal).await;
    }
    Ok(Answer::Silent)
}

/// The presets to run a finished generation's prompt with.
async fn other_preset(ctx: &Ctx, screen: Screen, owned: &Owned, generation: Uuid) -> Pressed {
    let t = ctx.t();
    if requested_generation(ctx, owned.id, generation)
        .await?
        .is_none()
    {
        return Ok(Answer::Alert(t.stale_button().to_owned()));
    }
    let text = t.choose_generation_preset(&avatar_name(&owned.avatar));
    let keyboard = kb::regeneration_presets(t, owned.id, generation);
    ctx.show(screen, text, keyboard).await?;
    Ok(Answer::Silent)
}

/// Image `index` of a generation's result, counted as the user was sent them (hidden images
/// left out), from the avatar's history.
async fn generated_image(
    ctx: &Ctx,
    avatar_id: Uuid,
    generation_id: Uuid,
    index: u8,
) -> Result<Option<aggregates::GeneratedImage>, BotError> {
    let history = ctx.deps.store.history(avatar_id).await?;
    Ok(history
        .into_iter()
        .rev()
        .find_map(|entry| match entry.event {
            AvatarEvent::GenerationCompleted {
                generation_id: id,
                images,
                ..
            } if id == generation_id => images
                .into_iter()
                .filter(|i| !i.nsfw)
                .nth(usize::from(index)),
            _ => None,
        }))
}

async fn requested_generation(
    ctx: &Ctx,
    avatar_id: Uuid,
    generation_id: Uuid,
) -> Result<Option<(String, Option<GenerationPreset>)>, BotError> {
    Ok(requested(&ctx.deps.store, avatar_id, generation_id).await?)
}

/// The prompt and preset a generation was asked with, from its avatar's history.
pub(in crate::bot) async fn requested(
    store: &crate::store::AvatarStore,
    avatar_id: Uuid,
    generation_id: Uuid,
) -> Result<Option<(String, Option<GenerationPreset>)>, StoreError> {
    let history = store.history(avatar_id).await?;
    Ok(history
        .into_iter()
        .rev()
        .find_map(|entry| match entry.event {
            AvatarEvent::GenerationRequested {
                generation_id: id,
                prompt,
                preset,
                ..
            } if id == generation_id => Some((prompt, preset)),
            _ => None,
        }))
}
