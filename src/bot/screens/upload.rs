//! Photo intake from the user's side: files sent while a draft is being filled (or a lost
//! conversation's draft), album summaries, and the buttons that change the set.

use aggregates::{Action, AvatarError};
use teloxide::dptree::{self, case};
use teloxide::prelude::*;
use teloxide::types::InlineKeyboardMarkup;
use uuid::Uuid;

use crate::bot::callbacks::{photo_tag, Callback};
use crate::bot::ctx::{avatar_name, capitalised, Ctx, Screen};
use crate::bot::keyboards as kb;
use crate::bot::photos::{IncomingFile, Intake, ALBUM_QUIET};
use crate::bot::press::{Answer, Buttons, Owned, Pressed};
use crate::bot::{BotDialogue, BotError, HandlerResult, State};
use crate::store::StoreError;

/// The buttons of the upload screen.
pub(in crate::bot) fn buttons() -> Buttons {
    dptree::entry()
        .branch(dptree::filter(|c: Callback| matches!(c, Callback::Upload(_))).endpoint(upload))
        .branch(case![Callback::RemovePhoto { avatar, photo }].endpoint(remove_photo))
        .branch(
            dptree::filter(|c: Callback| matches!(c, Callback::StartOver(_))).endpoint(start_over),
        )
}

/// A photo or a document: intake for the avatar being filled.
pub(in crate::bot) async fn on_file(
    ctx: Ctx,
    dialogue: BotDialogue,
    msg: Message,
    state: State,
) -> HandlerResult {
    let t = ctx.t();
    // When photos are not expected, one notice answers a whole album.
    let notice = |text: String, keyboard: Option<InlineKeyboardMarkup>| {
        let first = msg
            .media_group_id()
            .is_none_or(|group| ctx.deps.albums.first_notice(&group.0));
        let ctx = &ctx;
        async move {
            if first {
                ctx.say(text, keyboard).await?;
            }
            Ok::<_, BotError>(())
        }
    };
    let avatar_id = match state {
        State::Uploading { avatar_id } => avatar_id,
        State::Idle => match resumable_draft(&ctx).await? {
            Some(avatar_id) => {
                // The conversation was lost (a restart) but the draft was not: carry on.
                dialogue.update(State::Uploading { avatar_id }).await?;
                avatar_id
            }
            None => {
                return notice(t.not_collecting_photos(), Some(ctx.main_menu())).await;
            }
        },
        State::AwaitingName { .. } => return notice(t.name_expected(), None).await,
        State::AwaitingPrompt { .. } => return notice(t.prompt_expected(), None).await,
        State::AwaitingNewName { .. } => return notice(t.new_name_expected(), None).await,
        State::AwaitingPromoCode => return notice(t.ledger().promo_ask(), None).await,
    };
    let Some(file) = IncomingFile::from_message(&msg) else {
        return Ok(());
    };
    if let Some(group) = msg.media_group_id() {
        ctx.deps.albums.begin(&group.0, msg.chat.id.0);
    }
    let intake = Intake {
        downloader: &ctx.deps.downloader,
        store: &ctx.deps.store,
        photos: &ctx.deps.photos,
    };
    let result = intake.take(ctx.user, avatar_id, &file).await;
    if let Err(refusal) = &result.outcome {
        tracing::info!(user = ctx.user, %avatar_id, ?refusal, "photo not accepted");
        if let crate::bot::photos::Refusal::Avatar(
            AvatarError::Deleted
            | AvatarError::NotOwner
            | AvatarError::NotFound
            | AvatarError::PhotosLocked,
        ) = refusal
        {
            // Nothing more can be uploaded to this avatar.
            dialogue.reset().await?;
        }
    }
    let count = result.count;
    match msg.media_group_id() {
        Some(group) => {
            let reason = result.outcome.as_ref().err().map(|r| r.sentence(t));
            let group = group.0.clone();
            let mark = ctx
                .deps
                .albums
                .record(&group, avatar_id, reason, count, &result.hints);
            // The album's photos arrive one by one; answer once, when they stop coming.
            tokio::spawn(async move {
                tokio::time::sleep(ALBUM_QUIET).await;
                if let Some(album) = ctx.deps.albums.finish_if_quiet(&group, mark) {
                    let mut text = t.album_summary(album.accepted, &album.refused, album.count);
                    if !album.hints.is_empty() {
                        text.push_str(&format!("\n{}", t.album_hints(&album.hints)));
                    }
                    let keyboard = kb::after_photo(t, album.avatar_id, album.count, None);
                    if let Err(e) = ctx.say(text, keyboard).await {
                        tracing::warn!(user = ctx.user, error = %crate::telemetry::chain(&e), "could not send an album summary");
                    }
                }
            });
        }
        None => {
            let text = match &result.outcome {
                Ok(()) if !result.hints.is_empty() => {
                    format!(
                        "{}\n{}",
                        t.photo_accepted(count),
                        t.photo_hints(&result.hints)
                    )
                }
                Ok(()) => t.photo_accepted(count),
                Err(refusal) => t.photo_refused(&refusal.sentence(t), count),
            };
            let just_accepted = result
                .recorded
                .as_ref()
                .map(|photo| photo_tag(&photo.content_hash));
            ctx.say(text, kb::after_photo(t, avatar_id, count, just_accepted))
                .await?;
        }
    }
    Ok(())
}

/// The user's last avatar, when it is a draft of theirs that can still take photos.
async fn resumable_draft(ctx: &Ctx) -> Result<Option<Uuid>, BotError> {
    let Some(last) = ctx
        .deps
        .users
        .get(ctx.user)
        .await?
        .and_then(|u| u.last_avatar_id)
    else {
        return Ok(None);
    };
    let avatar = ctx.deps.store.load(last).await?;
    let open = avatar.can_take_photos().is_ok();
    Ok((open && avatar.owner == ctx.user).then_some(last))
}

/// "Upload more": photos sent next go to this avatar, while it can take them.
async fn upload(ctx: Ctx, screen: Screen, dialogue: BotDialogue, owned: Owned) -> Pressed {
    let t = ctx.t();
    let (avatar_id, avatar) = (owned.id, &owned.avatar);
    if let Err(refusal) = avatar.can_take_photos() {
        return Ok(Answer::Alert(capitalised(&t.refusal(&refusal))));
    }
    dialogue.update(State::Uploading { avatar_id }).await?;
    ctx.remember_avatar(avatar_id).await;
    let count = avatar.photos.len();
    let keyboard = kb::after_photo(t, avatar_id, count, None).unwrap_or_else(|| kb::to_menu(t));
    ctx.show(screen, t.upload_more(&avatar_name(avatar), count), keyboard)
        .await?;
    Ok(Answer::Silent)
}

/// Takes one photo out of the set; the photo is named by a tag of its content hash.
async fn remove_photo(
    ctx: Ctx,
    screen: Screen,
    dialogue: BotDialogue,
    owned: Owned,
    (_, photo): (Uuid, u64),
) -> Pressed {
    let t = ctx.t();
    let avatar_id = owned.id;
    let Some(photo) = owned
        .avatar
        .photos
        .iter()
        .find(|p| photo_tag(&p.content_hash) == photo)
    else {
        return Ok(Answer::Toast(t.photo_already_removed().to_owned()));
    };
    let action = Action::RemovePhoto {
        photo_id: photo.photo_id.clone(),
    };
    let executed = match ctx.execute(avatar_id, action).await {
        Ok(executed) => executed,
        Err(StoreError::Rejected(refusal)) => {
            return Ok(Answer::Alert(capitalised(&t.refusal(&refusal))));
        }
        Err(e) => return Err(e.into()),
    };
    forget_photo_bytes(&ctx, avatar_id, std::slice::from_ref(photo)).await;
    dialogue.update(State::Uploading { avatar_id }).await?;
    let count = executed.state.photos.len();
    let keyboard = kb::after_photo(t, avatar_id, count, None).unwrap_or_else(|| kb::to_menu(t));
    ctx.show(screen, t.photo_removed(count), keyboard).await?;
    Ok(Answer::Silent)
}

/// Every photo out: the set starts over.
async fn start_over(ctx: Ctx, screen: Screen, dialogue: BotDialogue, owned: Owned) -> Pressed {
    let t = ctx.t();
    let (avatar_id, avatar) = (owned.id, &owned.avatar);
    if let Err(refusal) = ctx.execute(avatar_id, Action::ClearPhotos).await {
        return match refusal {
            StoreError::Rejected(refusal) => Ok(Answer::Alert(capitalised(&t.refusal(&refusal)))),
            e => Err(e.into()),
        };
    }
    forget_photo_bytes(&ctx, avatar_id, &avatar.photos).await;
    dialogue.update(State::Uploading { avatar_id }).await?;
    ctx.show(
        screen,
        t.set_started_over(avatar.photos.len()),
        kb::to_menu(t),
    )
    .await?;
    Ok(Answer::Silent)
}

/// Deletes the stored bytes of photos the avatar no longer has. A failure leaves an orphan under
/// the avatar's prefix, which deleting the avatar removes; it is logged, not shown to the user.
async fn forget_photo_bytes(ctx: &Ctx, avatar_id: Uuid, photos: &[aggregates::PhotoMeta]) {
    for photo in photos {
        if let Err(error) = ctx.deps.photos.delete(&photo.storage_key).await {
            tracing::warn!(%avatar_id, key = %photo.storage_key, %error, "could not delete a removed photo's bytes");
        }
    }
}
