//! [`TelegramNotifier`]: tells users that a training or a generation finished (and when its
//! credits came back), with the next actions as buttons.
//!
//! The actors call it once per outcome event (and again only after a transient failure), so
//! duplicate webhooks and restarts never reach it twice. Generated images are read from our copy
//! (or FAL's, until ours is made) and uploaded, so Telegram never has to reach FAL's (or the
//! simulator's) URLs; images FAL flagged NSFW come back blacked out and are left out, with a word
//! to the user instead.

use std::sync::Arc;

use aggregates::{AvatarStatus, GeneratedImage, Origin};
use futures::future::BoxFuture;
use teloxide::prelude::*;
use teloxide::types::{InlineKeyboardMarkup, InputFile, InputMedia, InputMediaPhoto};
use teloxide::RequestError;
use uuid::Uuid;

use super::keyboards as kb;
use super::progress::Ending;
use super::send::{is_transient, is_unreachable_chat, sending};
use super::texts::{Lang, Texts};
use super::{BotDeps, TgBot};
use crate::actors::notify::{Notification, Notifier, NotifyError};
use crate::fal::{FalClient, FalError};

/// Delivers [`Notification`]s as Telegram messages.
pub struct TelegramNotifier {
    bot: TgBot,
    deps: Arc<BotDeps>,
    fal: FalClient,
}

impl TelegramNotifier {
    pub fn new(bot: TgBot, deps: Arc<BotDeps>, fal: FalClient) -> Self {
        Self { bot, deps, fal }
    }

    async fn deliver(&self, notification: &Notification) -> Result<(), NotifyError> {
        let owner = notification.owner();
        let user = self.deps.users.get(owner).await.map_err(|e| {
            NotifyError::Transient(format!("reading the user's chat and language: {e}"))
        })?;
        // Always the user's private chat, whose id is the user id: never the chat they last
        // wrote in (a group would see their face), and reachable even if never stored.
        let chat = ChatId(owner);
        let lang = user.as_ref().map_or(Lang::default(), |u| u.lang());
        let images_asked = user.as_ref().map_or(1, |u| u.options.images());
        let t = lang.texts();
        let avatar_id = match notification {
            Notification::TrainingCompleted { avatar_id, .. }
            | Notification::TrainingFailed { avatar_id, .. }
            | Notification::GenerationCompleted { avatar_id, .. }
            | Notification::GenerationFailed { avatar_id, .. } => *avatar_id,
            // Said even when the avatar is gone: the money is the user's whatever happened to it.
            Notification::CreditsReturned {
                credits,
                reason,
                available,
                ..
            } => {
                let text = t.credits_returned(*credits, *reason, *available);
                return self.text(chat, text, kb::to_menu(t)).await;
            }
        };
        let avatar = self
            .deps
            .store
            .load(avatar_id)
            .await
            .map_err(|e| NotifyError::Transient(format!("loading the avatar: {e}")))?;
        if avatar.status == AvatarStatus::Deleted {
            // The user deleted it meanwhile; news about it would only confuse.
            tracing::info!(owner, %avatar_id, "not notifying about a deleted avatar");
            return Ok(());
        }
        let name = avatar
            .name
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_default();
        match notification {
            Notification::TrainingCompleted { .. } => {
                // The bar first, so "ready!" comes under a finished bar.
                super::progress::finish(&self.bot, &self.deps, avatar_id, Ending::Done).await;
                // The menu's "Generate" lists trained avatars from the gallery: let it have
                // caught up, so the button under "ready!" never says "no trained avatar yet".
                super::reads::wait_for_card(&self.deps.db, avatar_id, |card| {
                    card.status == AvatarStatus::Trained.as_str()
                })
                .await;
                let mut text = t.training_completed(&name);
                let samples = avatar
                    .avatar_type
                    .zip(avatar.gender)
                    .and_then(|(at, g)| self.deps.starter.for_avatar(at, g))
                    .map_or(0, |(_, prompts)| prompts.len() as u32);
                if samples > 0 {
                    text.push_str(&format!("\n{}", t.starter_coming(samples)));
                }
                self.text(chat, text, kb::trained(t, avatar_id)).await
            }
            Notification::TrainingFailed { reason, .. } => {
                tracing::info!(owner, %avatar_id, reason, "telling the user their training failed");
                super::progress::finish(&self.bot, &self.deps, avatar_id, Ending::Failed).await;
                let why = t.fal_failure(crate::fal::FailureKind::from_reason(reason));
                self.text(
                    chat,
                    format!("{}\n{why}", t.training_failed(&name)),
                    kb::training_failed(t, avatar_id),
                )
                .await
            }
            Notification::GenerationCompleted {
                generation_id,
                images,
                ..
            } => {
                let origin = avatar
                    .generation(*generation_id)
                    .and_then(|g| g.origin.clone());
                if let Some(Origin::Upscale { factor, .. }) = origin {
                    return self
                        .upscaled(chat, t, &name, avatar_id, factor.times(), images)
                        .await;
                }
                let mut progress = batch_line(t, &avatar, *generation_id);
                if matches!(origin, Some(Origin::Starter { .. })) {
                    // Samples say what they are, above the batch's count.
                    let line = t.starter_done(&name);
                    progress = Some(progress.map_or(line.clone(), |p| format!("{line}\n{p}")));
                }
                if let Some(price) = self
                    .again_price(t, avatar_id, *generation_id, images_asked)
                    .await
                {
                    progress = Some(progress.map_or(price.clone(), |p| format!("{p}\n{price}")));
                }
                self.images(chat, t, &name, avatar_id, *generation_id, images, progress)
                    .await
            }
            Notification::GenerationFailed {
                generation_id,
                reason,
                ..
            } => {
                tracing::info!(owner, %avatar_id, %generation_id, reason, "telling the user their generation failed");
                let why = t.fal_failure(crate::fal::FailureKind::from_reason(reason));
                let upscale = avatar
                    .generation(*generation_id)
                    .is_some_and(|g| matches!(g.origin, Some(Origin::Upscale { .. })));
                if upscale {
                    let text = format!("{}\n{why}", t.upscale_failed(&name));
                    return self.text(chat, text, kb::upscaled(t, avatar_id)).await;
                }
                let keyboard = kb::generation_result(t, avatar_id, *generation_id, 0);
                let mut text = format!("{}\n{why}", t.generation_failed(&name));
                if let Some(progress) = batch_line(t, &avatar, *generation_id) {
                    text.push_str(&format!("\n{progress}"));
                }
                if let Some(price) = self
                    .again_price(t, avatar_id, *generation_id, images_asked)
                    .await
                {
                    text.push_str(&format!("\n{price}"));
                }
                self.text(chat, text, keyboard).await
            }
            Notification::CreditsReturned { .. } => Ok(()),
        }
    }

    /// What "Generate again" under a result will reserve (the same prompt and preset, with the
    /// user's current number of images), so the price is known before the tap; `None` while
    /// credits are not charged or the request cannot be read.
    async fn again_price(
        &self,
        t: &dyn Texts,
        avatar_id: Uuid,
        generation_id: Uuid,
        images: u32,
    ) -> Option<String> {
        let payments = &self.deps.payments;
        if !payments.enabled() {
            return None;
        }
        let (_, preset) =
            super::screens::results::requested(&self.deps.store, avatar_id, generation_id)
                .await
                .ok()??;
        Some(t.again_price(payments.prices.generation(preset, images)))
    }

    async fn text(
        &self,
        chat: ChatId,
        text: String,
        keyboard: InlineKeyboardMarkup,
    ) -> Result<(), NotifyError> {
        let limiter = &self.deps.limiter;
        sending(limiter, chat, 1, "sendMessage", || {
            self.bot
                .send_message(chat, text.clone())
                .reply_markup(keyboard.clone())
                .send()
        })
        .await
        .map(drop)
        .map_err(classify)
    }

    async fn images(
        &self,
        chat: ChatId,
        t: &dyn Texts,
        name: &str,
        avatar_id: Uuid,
        generation_id: Uuid,
        images: &[GeneratedImage],
        progress: Option<String>,
    ) -> Result<(), NotifyError> {
        let visible: Vec<&GeneratedImage> = images.iter().filter(|i| !i.nsfw).collect();
        let keyboard = kb::generation_result(t, avatar_id, generation_id, visible.len());
        let hidden = images.len() - visible.len();
        if visible.is_empty() {
            return self
                .text(chat, t.all_images_hidden(name, hidden), keyboard)
                .await;
        }
        let mut files = Vec::with_capacity(visible.len());
        for (n, image) in visible.iter().enumerate() {
            files.push(self.image_file(avatar_id, image, n).await?);
        }
        let mut caption = t.generation_done(name, hidden);
        if let Some(progress) = progress {
            caption.push_str(&format!("\n{progress}"));
        }
        let limiter = &self.deps.limiter;
        if let [file] = files.as_slice() {
            return sending(limiter, chat, 1, "sendPhoto", || {
                self.bot
                    .send_photo(chat, file.clone())
                    .caption(caption.clone())
                    .reply_markup(keyboard.clone())
                    .send()
            })
            .await
            .map(drop)
            .map_err(classify);
        }
        // An album cannot carry buttons: the caption and the buttons follow it.
        let media: Vec<InputMedia> = files
            .into_iter()
            .map(|file| InputMedia::Photo(InputMediaPhoto::new(file)))
            .collect();
        let cost = u32::try_from(media.len()).unwrap_or(u32::MAX);
        sending(limiter, chat, cost, "sendMediaGroup", || {
            self.bot.send_media_group(chat, media.clone()).send()
        })
        .await
        .map_err(classify)?;
        self.text(chat, caption, keyboard).await
    }

    /// An upscale is sent as a file: a photo would be recompressed and capped in size, which
    /// is what the user asked to escape.
    async fn upscaled(
        &self,
        chat: ChatId,
        t: &dyn Texts,
        name: &str,
        avatar_id: Uuid,
        times: u8,
        images: &[GeneratedImage],
    ) -> Result<(), NotifyError> {
        let keyboard = kb::upscaled(t, avatar_id);
        let Some(image) = images.iter().find(|i| !i.nsfw) else {
            return self
                .text(chat, t.all_images_hidden(name, images.len()), keyboard)
                .await;
        };
        let file = self.image_file(avatar_id, image, 0).await?;
        let size = image.width.zip(image.height);
        let caption = t.upscale_done(name, times, size);
        sending(&self.deps.limiter, chat, 1, "sendDocument", || {
            self.bot
                .send_document(chat, file.clone())
                .caption(caption.clone())
                .reply_markup(keyboard.clone())
                .send()
        })
        .await
        .map(drop)
        .map_err(classify)
    }

    /// The image's bytes from our copy (or FAL's); if FAL refuses them for good, Telegram may
    /// still fetch the URL, but only a URL that passes the same media check as our own fetch.
    async fn image_file(
        &self,
        avatar_id: Uuid,
        image: &GeneratedImage,
        n: usize,
    ) -> Result<InputFile, NotifyError> {
        let bytes =
            crate::actors::copies::image_bytes(&self.deps.photos, &self.fal, avatar_id, &image.url)
                .await;
        match bytes {
            Ok(bytes) => {
                let extension = match image.content_type.as_deref() {
                    Some("image/png") => "png",
                    Some("image/webp") => "webp",
                    _ => "jpg",
                };
                Ok(InputFile::memory(bytes).file_name(format!("aisha-{n}.{extension}")))
            }
            Err(e @ FalError::UnexpectedMediaUrl { .. }) => {
                // Recorded before the check existed, or re-resolved elsewhere: never sent on.
                tracing::error!(url = %image.url, error = %crate::telemetry::chain(&e), "a generated image's URL was refused");
                Err(NotifyError::Permanent(format!("generated image: {e}")))
            }
            Err(e) if e.is_transient() => Err(NotifyError::Transient(format!(
                "downloading a generated image: {e}"
            ))),
            Err(e) => {
                if let Err(refused) = self.fal.check_media_url(&image.url).await {
                    return Err(NotifyError::Permanent(format!(
                        "generated image: {refused}"
                    )));
                }
                tracing::warn!(error = %crate::telemetry::chain(&e), "could not download a generated image; passing its URL to Telegram");
                let url = reqwest::Url::parse(&image.url)
                    .map_err(|_| NotifyError::Permanent(format!("generated image: {e}")))?;
                Ok(InputFile::url(url))
            }
        }
    }
}

/// "Prompt 2 of 4 · 3 of 4 ready" for a generation of a batch, as the avatar counts it now.
fn batch_line(t: &dyn Texts, avatar: &aggregates::Avatar, generation_id: Uuid) -> Option<String> {
    let (item, finished) = avatar.batch_progress(generation_id)?;
    Some(t.batch_progress(item.index, finished, item.size))
}

impl Notifier for TelegramNotifier {
    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(self.deliver(notification))
    }
}

/// 429 and the network are worth another try; a blocked bot or a vanished chat never are.
fn classify(error: RequestError) -> NotifyError {
    if is_unreachable_chat(&error) {
        NotifyError::Permanent(format!("the user cannot be reached: {error}"))
    } else if is_transient(&error) {
        NotifyError::Transient(error.to_string())
    } else {
        NotifyError::Permanent(error.to_string())
    }
}
