//! What comes on top of typing a prompt: packs run as batches, upscales of a result, and the
//! main avatar "Generate" goes to without asking.

use aggregates::{Action, Avatar, AvatarError, BatchItem, UpscaleFactor};
use teloxide::dptree::{self, case};
use uuid::Uuid;

use super::generate::generate_one;
use crate::bot::callbacks::Callback;
use crate::bot::charge::Refusal;
use crate::bot::ctx::{avatar_name, capitalised, Ctx, Screen};
use crate::bot::keyboards as kb;
use crate::bot::press::{Answer, Buttons, Owned};
use crate::bot::quotas::Ask;
use crate::bot::BotError;

/// The buttons of packs and upscales.
pub(in crate::bot) fn buttons() -> Buttons {
    dptree::entry()
        .branch(
            dptree::filter(|c: Callback| matches!(c, Callback::Packs(_))).endpoint(
                |ctx: Ctx, screen: Screen, owned: Owned| async move {
                    show_packs(&ctx, screen, owned.id, &owned.avatar).await
                },
            ),
        )
        .branch(case![Callback::Pack { avatar, pack }].endpoint(
            |ctx: Ctx, screen: Screen, owned: Owned, (_, pack): (Uuid, u32)| async move {
                show_pack(&ctx, screen, owned.id, &owned.avatar, pack).await
            },
        ))
        .branch(case![Callback::RunPack { avatar, pack, press }].endpoint(
            |ctx: Ctx, screen: Screen, owned: Owned, (_, pack, press): (Uuid, u32, u32)| async move {
                run_pack(&ctx, screen, owned.id, &owned.avatar, pack, press).await
            },
        ))
        .branch(case![Callback::UpscaleMenu { avatar, generation, image }].endpoint(
            |ctx: Ctx, owned: Owned, (_, generation, image): (Uuid, Uuid, u8)| async move {
                ask_upscale(&ctx, owned.id, &owned.avatar, generation, image).await
            },
        ))
        .branch(case![Callback::Upscale { avatar, generation, image, factor, press }].endpoint(
            |ctx: Ctx,
             screen: Screen,
             owned: Owned,
             (_, generation, image, factor, press): (Uuid, Uuid, u8, UpscaleFactor, u32)| async move {
                let asked = UpscaleAsk {
                    generation,
                    image,
                    factor,
                    press,
                };
                upscale(&ctx, screen, owned.id, &owned.avatar, asked).await
            },
        ))
}

/// The packs offered for a trained avatar of this type and gender.
pub(in crate::bot) async fn show_packs(
    ctx: &Ctx,
    screen: Screen,
    avatar_id: Uuid,
    avatar: &Avatar,
) -> Result<Answer, BotError> {
    let t = ctx.t();
    if let Err(refusal) = avatar.can_generate() {
        return Ok(Answer::Alert(capitalised(&t.refusal(&refusal))));
    }
    let (Some(avatar_type), Some(gender)) = (avatar.avatar_type, avatar.gender) else {
        return Ok(Answer::Alert(t.no_packs().to_owned()));
    };
    let english = ctx.lang == crate::bot::texts::Lang::En;
    let offered: Vec<(u32, String)> = ctx
        .deps
        .starter
        .packs
        .for_avatar(avatar_type, gender)
        .into_iter()
        .map(|p| (p.tag(), p.title.get(english).to_owned()))
        .collect();
    if offered.is_empty() {
        return Ok(Answer::Alert(t.no_packs().to_owned()));
    }
    ctx.show(
        screen,
        t.choose_pack(&avatar_name(avatar)),
        kb::packs(t, avatar_id, &offered),
    )
    .await?;
    Ok(Answer::Silent)
}

/// The pack a button names, if it is still offered for this avatar.
fn offered_pack<'a>(ctx: &'a Ctx, avatar: &Avatar, tag: u32) -> Option<&'a crate::packs::Pack> {
    let pack = ctx.deps.starter.packs.by_tag(tag)?;
    let fits = avatar
        .avatar_type
        .zip(avatar.gender)
        .is_some_and(|(t, g)| pack.fits(t, g));
    fits.then_some(pack)
}

pub(in crate::bot) async fn show_pack(
    ctx: &Ctx,
    screen: Screen,
    avatar_id: Uuid,
    avatar: &Avatar,
    tag: u32,
) -> Result<Answer, BotError> {
    let t = ctx.t();
    let Some(pack) = offered_pack(ctx, avatar, tag) else {
        return Ok(Answer::Alert(t.stale_button().to_owned()));
    };
    let english = ctx.lang == crate::bot::texts::Lang::En;
    let mut text = t.pack_screen(
        pack.title.get(english),
        pack.description.get(english),
        pack.len(),
    );
    // One image per scene, each reserved as it is asked for.
    let price = ctx.deps.payments.prices.generation(pack.preset, 1) * pack.len() as u32;
    if let Some(price) = ctx.price_line(price).await {
        text.push_str(&format!("\n\n{price}"));
    }
    ctx.show(screen, text, kb::pack(t, avatar_id, tag, pack.len()))
        .await?;
    Ok(Answer::Silent)
}

/// Runs every prompt of the pack as one batch: one image each, in the pack's frame (or the
/// user's), each its own generation so one failing fails no other.
pub(in crate::bot) async fn run_pack(
    ctx: &Ctx,
    screen: Screen,
    avatar_id: Uuid,
    avatar: &Avatar,
    tag: u32,
    press: u32,
) -> Result<Answer, BotError> {
    let t = ctx.t();
    let Some(pack) = offered_pack(ctx, avatar, tag) else {
        return Ok(Answer::Alert(t.stale_button().to_owned()));
    };
    let Some(gender) = avatar.gender else {
        return Ok(Answer::Alert(t.stale_button().to_owned()));
    };
    let prompts = pack.prompts_for(gender);
    let size = prompts.len() as u32;
    // Paid work named by the press: a double tap asks for the same generations again, and the
    // avatar refuses them as duplicates instead of running (and charging) the pack twice.
    let key = pressed_key(ctx, press, &format!("pack:{avatar_id}:{tag:08x}"));
    let batch_id = crate::ids::derived(&key, "batch");
    if avatar.generation(crate::ids::derived(&key, "0")).is_some() {
        // The same button again: that run is under way (or done); neither a second run nor a
        // quota message for it.
        return Ok(Answer::Silent);
    }
    let mut started = 0;
    let mut first_refusal = None;
    for (index, prompt) in prompts.into_iter().enumerate() {
        let item = BatchItem {
            batch_id,
            index: index as u32,
            size,
        };
        let id = Some(crate::ids::derived(&key, &index.to_string()));
        match generate_one(
            ctx,
            avatar_id,
            prompt,
            pack.preset,
            Some(item),
            Some(pack),
            id,
        )
        .await?
        {
            Ok(()) => started += 1,
            Err(Refusal::Avatar(AvatarError::DuplicateGeneration(_))) => {}
            Err(refusal) => {
                let no_credits = matches!(refusal, Refusal::NoCredits { .. });
                first_refusal.get_or_insert(refusal);
                // The balance will not grow during the pack: the other scenes would be refused.
                if no_credits {
                    break;
                }
            }
        }
    }
    if started == 0 {
        if let Some(refusal) = first_refusal {
            return ctx.answer_refusal(refusal).await;
        }
        return Ok(Answer::Silent);
    }
    if let Some(no_credits @ Refusal::NoCredits { .. }) = &first_refusal {
        ctx.say_no_credits(no_credits).await?;
    }
    tracing::info!(user = ctx.user, %avatar_id, pack = %pack.id, started, size, "pack started");
    let english = ctx.lang == crate::bot::texts::Lang::En;
    let text = t.pack_started(&avatar_name(avatar), pack.title.get(english), started, size);
    ctx.show(screen, text, kb::to_menu(t)).await?;
    Ok(Answer::Silent)
}

/// Which recorded image the `shown`th image of a result is (hidden images were not sent).
fn recorded_index(avatar: &Avatar, generation: Uuid, shown: u8) -> Option<u8> {
    let record = avatar.generation(generation)?;
    let index = record
        .images
        .iter()
        .enumerate()
        .filter(|(_, image)| !image.nsfw)
        .nth(usize::from(shown))?
        .0;
    u8::try_from(index).ok()
}

/// Under a result (a photo or an album's caption): a new message asks how much larger.
pub(in crate::bot) async fn ask_upscale(
    ctx: &Ctx,
    avatar_id: Uuid,
    avatar: &Avatar,
    generation: Uuid,
    image: u8,
) -> Result<Answer, BotError> {
    let t = ctx.t();
    if recorded_index(avatar, generation, image).is_none() {
        return Ok(Answer::Alert(capitalised(&t.refusal(
            &AvatarError::ImageUnavailable {
                generation_id: generation,
                image,
            },
        ))));
    }
    let keyboard = kb::upscale_factors(t, avatar_id, generation, image);
    let mut text = t.choose_upscale(usize::from(image) + 1);
    if let Some(price) = ctx.upscale_price() {
        if let Some(line) = ctx.price_line(price).await {
            text.push_str(&format!("\n{line}"));
        }
    }
    ctx.say(text, Some(keyboard)).await?;
    Ok(Answer::Silent)
}

/// An upscale button's press: which image of which result, how much, and the press itself.
pub(in crate::bot) struct UpscaleAsk {
    pub generation: Uuid,
    pub image: u8,
    pub factor: UpscaleFactor,
    pub press: u32,
}

pub(in crate::bot) async fn upscale(
    ctx: &Ctx,
    screen: Screen,
    avatar_id: Uuid,
    avatar: &Avatar,
    asked: UpscaleAsk,
) -> Result<Answer, BotError> {
    let UpscaleAsk {
        generation,
        image: shown,
        factor,
        press,
    } = asked;
    let t = ctx.t();
    let key = pressed_key(
        ctx,
        press,
        &format!("upscale:{generation}:{shown}:{}", factor.times()),
    );
    let generation_id = crate::ids::derived(&key, "upscale");
    if avatar.generation(generation_id).is_some() {
        return Ok(Answer::Silent);
    }
    crate::bot::reads::caught_up_on_generations(ctx, avatar_id).await;
    if let Some(reached) = ctx.quota(Ask::Generation).await? {
        return Ok(Answer::Alert(t.quota_reached(reached)));
    }
    let unavailable = AvatarError::ImageUnavailable {
        generation_id: generation,
        image: shown,
    };
    let Some(image) = recorded_index(avatar, generation, shown) else {
        return Ok(Answer::Alert(capitalised(&t.refusal(&unavailable))));
    };
    let asked = ctx
        .execute_paid(
            avatar_id,
            Action::Upscale {
                generation_id,
                of: generation,
                image,
                factor,
            },
        )
        .await?;
    match asked {
        Ok(_) => {
            tracing::info!(user = ctx.user, %avatar_id, %generation, %generation_id,
                factor = factor.times(), "upscale requested");
            ctx.show(screen, t.upscale_started(factor.times()), kb::to_menu(t))
                .await?;
            Ok(Answer::Silent)
        }
        // The same press again: the upscale is already on its way.
        Err(Refusal::Avatar(AvatarError::DuplicateGeneration(_))) => Ok(Answer::Silent),
        Err(refusal) => ctx.answer_refusal(refusal).await,
    }
}

/// What names one press of a paid button: the user, the value drawn with the button and what
/// it asks for. Two taps on that button are one request.
fn pressed_key(ctx: &Ctx, press: u32, what: &str) -> String {
    format!("press:{}:{press:08x}:{what}", ctx.user)
}

/// The user's main avatar, if they chose one and it can still generate.
pub(in crate::bot) async fn main_avatar(ctx: &Ctx) -> Result<Option<(Uuid, Avatar)>, BotError> {
    let Some(main) = ctx
        .deps
        .users
        .get(ctx.user)
        .await?
        .and_then(|u| u.main_avatar_id)
    else {
        return Ok(None);
    };
    Ok(match ctx.owned_avatar(main).await? {
        Ok(avatar) if avatar.can_generate().is_ok() => Some((main, avatar)),
        _ => None,
    })
}

pub(in crate::bot) async fn make_main(
    ctx: &Ctx,
    avatar_id: Uuid,
    avatar: &Avatar,
) -> Result<Answer, BotError> {
    let t = ctx.t();
    if let Err(refusal) = avatar.can_generate() {
        return Ok(Answer::Alert(capitalised(&t.refusal(&refusal))));
    }
    ctx.deps.users.set_main_avatar(ctx.user, avatar_id).await?;
    tracing::info!(user = ctx.user, %avatar_id, "main avatar chosen");
    Ok(Answer::Toast(t.main_set(&avatar_name(avatar))))
}

/// Whether `avatar_id` is the user's main avatar (no, if that cannot be read: the card shows
/// the button to make it main, which is harmless).
pub(in crate::bot) async fn is_main(ctx: &Ctx, avatar_id: Uuid) -> bool {
    match ctx.deps.users.get(ctx.user).await {
        Ok(user) => user.and_then(|u| u.main_avatar_id) == Some(avatar_id),
        Err(e) => {
            tracing::warn!(user = ctx.user, error = %crate::telemetry::chain(&e), "could not read the main avatar");
            false
        }
    }
}
