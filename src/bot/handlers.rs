//! What the bot does with commands, messages and button presses.
//!
//! Every press of a button that names an avatar is first checked against the pressing user
//! (the avatar exists, is theirs and is not deleted); refusals are a polite alert and change
//! nothing. Domain refusals become a sentence in the user's language; everything else is logged
//! with its cause and the user gets a short apology.

use std::sync::Arc;
use std::time::Duration;

use aggregates::avatar::MIN_PHOTOS;
use aggregates::{
    Action, Actor, Avatar, AvatarError, AvatarEvent, AvatarStatus, AvatarType,
    Command as AvatarCommand, Gender, GenerationPreset,
};
use chrono::Utc;
use projections::{gallery, generations, Conn};
use teloxide::prelude::*;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup, MessageId};
use teloxide::utils::command::BotCommands;
use teloxide::{ApiError, RequestError};
use uuid::Uuid;

use super::callbacks::{photo_tag, Callback};
use super::keyboards as kb;
use super::photos::{IncomingFile, Intake, ALBUM_QUIET};
use super::quotas::{Ask, QuotaReached};
use super::send::{retrying, sending};
use super::texts::{AvatarLine, CardView, Lang, Texts};
use super::users::GenerationOptions;
use super::{BotDeps, BotDialogue, BotError, HandlerResult, State, TgBot};
use crate::store::{Database, StoreError};

mod charge;
mod forget;
pub mod payments;
mod studio;

use charge::Refusal;

/// Avatars per gallery page.
pub const GALLERY_PAGE_SIZE: u32 = 5;
/// Prompts one message may carry as a batch (one per line).
pub const MAX_PROMPTS_PER_MESSAGE: u32 = 5;
/// How long the bot waits for the gallery to show a change it just made.
const READ_MODEL_WAIT: Duration = Duration::from_secs(3);

/// The bot's commands.
#[derive(BotCommands, Clone, Debug)]
#[command(rename_rule = "lowercase")]
pub enum Command {
    Start,
    Help,
    Cancel,
    Avatars,
    New,
    Buy,
    Balance,
    Refund,
    Promo(String),
    Paysupport,
    Terms,
    /// Erase everything the bot holds about the user (after a confirmation).
    Forgetme,
}

/// One update's context: who, where, in which language.
struct Ctx {
    bot: TgBot,
    deps: Arc<BotDeps>,
    user: i64,
    first_name: String,
    chat: ChatId,
    lang: Lang,
}

/// Where a screen goes: a new message, or the message whose button was pressed (edited in place).
#[derive(Debug, Clone, Copy)]
enum Screen {
    New,
    Edit(MessageId),
}

impl Ctx {
    async fn new(
        bot: TgBot,
        deps: Arc<BotDeps>,
        from: &teloxide::types::User,
        chat: ChatId,
    ) -> Self {
        let user = from.id.0 as i64;
        let language = from.language_code.as_deref();
        if let Err(e) = deps.users.remember(user, chat.0, language).await {
            tracing::warn!(user, error = %crate::telemetry::chain(&e), "could not remember the Telegram user");
        }
        Self {
            bot,
            deps,
            user,
            first_name: from.first_name.clone(),
            chat,
            lang: Lang::from_code(language),
        }
    }

    fn t(&self) -> &'static dyn Texts {
        self.lang.texts()
    }

    /// The main menu, with "Buy credits" when credits are sold.
    fn main_menu(&self) -> InlineKeyboardMarkup {
        if self.deps.payments.enabled() {
            kb::main_menu_with_buy(self.t())
        } else {
            kb::main_menu(self.t())
        }
    }

    /// Asks one of the quotas about this user; `Some` when the request must be refused.
    async fn quota(&self, ask: Ask) -> Result<Option<QuotaReached>, BotError> {
        let quotas = *self
            .deps
            .quotas
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let reached = quotas.check(ask, &self.deps.db, self.user).await?;
        if let Some(reached) = reached {
            tracing::info!(user = self.user, quota = reached.as_str(), "quota reached");
            metrics::counter!("quota_refusals_total", "quota" => reached.as_str()).increment(1);
        }
        Ok(reached)
    }

    async fn say(
        &self,
        text: String,
        keyboard: Option<InlineKeyboardMarkup>,
    ) -> Result<Message, RequestError> {
        sending(&self.deps.limiter, self.chat, 1, "sendMessage", || {
            let mut request = self.bot.send_message(self.chat, text.clone());
            if let Some(keyboard) = &keyboard {
                request = request.reply_markup(keyboard.clone());
            }
            request.send()
        })
        .await
    }

    /// Shows a screen: edits the pressed message in place, or sends a new one.
    async fn show(
        &self,
        screen: Screen,
        text: String,
        keyboard: InlineKeyboardMarkup,
    ) -> Result<(), RequestError> {
        self.show_at(screen, text, keyboard).await.map(drop)
    }

    /// [`Ctx::show`], answering which message shows the screen (the edited one or a new one).
    async fn show_at(
        &self,
        screen: Screen,
        text: String,
        keyboard: InlineKeyboardMarkup,
    ) -> Result<MessageId, RequestError> {
        if let Screen::Edit(message_id) = screen {
            let edited = retrying("editMessageText", || {
                self.bot
                    .edit_message_text(self.chat, message_id, text.clone())
                    .reply_markup(keyboard.clone())
                    .send()
            })
            .await;
            match edited {
                Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => {
                    return Ok(message_id)
                }
                // Too old or gone: a fresh message does as well.
                Err(RequestError::Api(
                    ApiError::MessageCantBeEdited | ApiError::MessageToEditNotFound,
                )) => {}
                Err(e) => return Err(e),
            }
        }
        self.say(text, Some(keyboard))
            .await
            .map(|message| message.id)
    }

    /// The user's prompt-screen choices (defaults if they cannot be read: one image, the
    /// preset's frame).
    async fn options(&self) -> GenerationOptions {
        match self.deps.users.get(self.user).await {
            Ok(user) => user.map(|u| u.options).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(user = self.user, error = %crate::telemetry::chain(&e), "could not read the generation options");
                GenerationOptions::default()
            }
        }
    }

    /// The prompt screen for `avatar` and `preset` with the user's current choices.
    async fn show_prompt_screen(
        &self,
        screen: Screen,
        avatar_id: Uuid,
        avatar: &Avatar,
        preset: GenerationPreset,
    ) -> Result<(), RequestError> {
        let t = self.t();
        let options = self.options().await;
        let recent = self.recent_prompts().await;
        let mut text = format!(
            "{}\n\n{}",
            t.ask_prompt(&avatar_name(avatar), preset),
            t.prompt_options(options.images(), options.aspect)
        );
        let price = self
            .deps
            .payments
            .prices
            .generation(Some(preset), options.images());
        if let Some(price) = self.price_line(price).await {
            text.push_str(&format!("\n{price}"));
        }
        let keyboard = kb::prompt(t, avatar_id, preset, options, &recent);
        self.show(screen, text, keyboard).await
    }

    /// The user's last distinct prompts, newest first, with a generation that used each (none
    /// if the read model cannot be read: the screen works without them).
    async fn recent_prompts(&self) -> Vec<(Uuid, String)> {
        let latest = match connection(&self.deps.db).await {
            Ok(mut conn) => {
                generations::recent_prompts_for_owner(&mut conn.tx(), self.user, 0, 50).await
            }
            Err(e) => Err(e.into()),
        };
        let latest = match latest {
            Ok(latest) => latest,
            Err(e) => {
                tracing::warn!(user = self.user, error = %crate::telemetry::chain(&e), "could not read recent prompts");
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

    async fn remember_avatar(&self, avatar_id: Uuid) {
        if let Err(e) = self.deps.users.set_last_avatar(self.user, avatar_id).await {
            tracing::warn!(user = self.user, %avatar_id, error = %crate::telemetry::chain(&e), "could not remember the last avatar");
        }
    }

    async fn execute(
        &self,
        avatar_id: Uuid,
        action: Action,
    ) -> Result<crate::store::Executed, StoreError> {
        let command = AvatarCommand::new(Actor::User(self.user), Utc::now(), action);
        let executed = self
            .deps
            .store
            .execute(avatar_id, command, Uuid::new_v4())
            .await;
        self.done_before(avatar_id, executed).await
    }

    /// When an interrupted update is handled again, what the first run created under the
    /// update's ids is refused as existing: that is the first run's success, not a refusal.
    pub(in crate::bot) async fn done_before(
        &self,
        avatar_id: Uuid,
        executed: Result<crate::store::Executed, StoreError>,
    ) -> Result<crate::store::Executed, StoreError> {
        match executed {
            Err(StoreError::Rejected(
                AvatarError::AlreadyExists | AvatarError::DuplicateGeneration(_),
            )) if crate::bot::inbox::is_retry() => {
                let state = self.deps.store.load(avatar_id).await?;
                Ok(crate::store::Executed {
                    events: Vec::new(),
                    state,
                })
            }
            other => other,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commands and messages
// ---------------------------------------------------------------------------------------------

pub async fn on_command(
    bot: TgBot,
    deps: Arc<BotDeps>,
    dialogue: BotDialogue,
    msg: Message,
    command: Command,
) -> HandlerResult {
    let Some(from) = msg.from.as_ref() else {
        return Ok(());
    };
    let ctx = Ctx::new(bot, deps, from, msg.chat.id).await;
    let t = ctx.t();
    match command {
        Command::Start => {
            dialogue.reset().await?;
            payments::grant_welcome(&ctx).await;
            ctx.say(t.welcome(&ctx.first_name), Some(ctx.main_menu()))
                .await?;
        }
        Command::Help => {
            ctx.say(t.help(), Some(kb::to_menu(t))).await?;
        }
        Command::Cancel => {
            let state = dialogue.get_or_default().await?;
            dialogue.reset().await?;
            let text = match state {
                State::Idle => t.nothing_to_cancel(),
                State::Uploading { avatar_id } => {
                    let avatar = ctx.deps.store.load(avatar_id).await?;
                    t.upload_stopped(&avatar_name(&avatar), avatar.photos.len())
                }
                State::AwaitingName { .. }
                | State::AwaitingPrompt { .. }
                | State::AwaitingNewName { .. }
                | State::AwaitingPromoCode => t.cancelled(),
            };
            ctx.say(text, Some(ctx.main_menu())).await?;
        }
        Command::Avatars => show_gallery(&ctx, Screen::New, 0).await?,
        Command::New => {
            dialogue.reset().await?;
            ctx.say(t.choose_type(), Some(kb::avatar_types(t))).await?;
        }
        Command::Buy => payments::show_packs(&ctx, Screen::New).await?,
        Command::Balance => payments::show_balance(&ctx).await?,
        Command::Refund => payments::show_refunds(&ctx, Screen::New).await?,
        Command::Promo(code) => payments::redeem_promo(&ctx, &code).await?,
        Command::Paysupport => payments::paysupport(&ctx).await?,
        Command::Terms => payments::terms(&ctx).await?,
        Command::Forgetme => forget::ask(&ctx, Screen::New).await?,
    }
    Ok(())
}

/// A photo or a document: intake for the avatar being filled.
pub async fn on_file(
    bot: TgBot,
    deps: Arc<BotDeps>,
    dialogue: BotDialogue,
    msg: Message,
    state: State,
) -> HandlerResult {
    let Some(from) = msg.from.as_ref() else {
        return Ok(());
    };
    let ctx = Ctx::new(bot, deps, from, msg.chat.id).await;
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
        if let super::photos::Refusal::Avatar(
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
    let open = matches!(
        avatar.status,
        AvatarStatus::Draft | AvatarStatus::TrainingFailed
    );
    Ok((open && avatar.owner == ctx.user).then_some(last))
}

/// The avatar's name, typed after choosing type and gender.
pub async fn on_name(
    bot: TgBot,
    deps: Arc<BotDeps>,
    dialogue: BotDialogue,
    msg: Message,
    (avatar_type, gender): (AvatarType, Gender),
) -> HandlerResult {
    let Some(from) = msg.from.as_ref() else {
        return Ok(());
    };
    let ctx = Ctx::new(bot, deps, from, msg.chat.id).await;
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

/// A prompt, typed after choosing an avatar and a preset.
pub async fn on_prompt(
    bot: TgBot,
    deps: Arc<BotDeps>,
    dialogue: BotDialogue,
    msg: Message,
    (avatar_id, preset): (Uuid, GenerationPreset),
) -> HandlerResult {
    let Some(from) = msg.from.as_ref() else {
        return Ok(());
    };
    let ctx = Ctx::new(bot, deps, from, msg.chat.id).await;
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
            let recent = ctx.recent_prompts().await;
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

/// The text after "Rename": the avatar's new name, or the reason it cannot be.
/// The text after "🎟 Promo code": the code to redeem.
pub async fn on_promo_code(
    bot: TgBot,
    deps: Arc<BotDeps>,
    dialogue: BotDialogue,
    msg: Message,
) -> HandlerResult {
    let Some(from) = msg.from.as_ref() else {
        return Ok(());
    };
    let ctx = Ctx::new(bot, deps, from, msg.chat.id).await;
    let Some(code) = msg.text().filter(|text| !text.starts_with('/')) else {
        ctx.say(ctx.t().ledger().promo_ask(), None).await?;
        return Ok(());
    };
    dialogue.reset().await?;
    payments::redeem_promo(&ctx, code).await?;
    Ok(())
}

pub async fn on_new_name(
    bot: TgBot,
    deps: Arc<BotDeps>,
    dialogue: BotDialogue,
    msg: Message,
    avatar_id: Uuid,
) -> HandlerResult {
    let Some(from) = msg.from.as_ref() else {
        return Ok(());
    };
    let ctx = Ctx::new(bot, deps, from, msg.chat.id).await;
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

/// The link to the bot's private chat.
fn private_chat_link(deps: &BotDeps) -> String {
    match deps.username.get() {
        Some(name) if !name.is_empty() => format!("https://t.me/{name}"),
        _ => "https://t.me/".into(),
    }
}

/// A message in a group, supergroup or channel: one sentence with a link to the private chat,
/// and nothing remembered. A group's members must never see someone's photos or images.
pub async fn on_message_outside_private_chat(
    bot: TgBot,
    deps: Arc<BotDeps>,
    msg: Message,
) -> HandlerResult {
    let lang = Lang::from_code(msg.from.as_ref().and_then(|u| u.language_code.as_deref()));
    let text = lang.texts().private_chat_only(&private_chat_link(&deps));
    // Only commands and replies to the bot deserve an answer; ordinary group chatter does not.
    let addressed = msg.text().is_some_and(|t| t.starts_with('/'))
        || msg
            .reply_to_message()
            .and_then(|m| m.from.as_ref())
            .is_some_and(|u| u.is_bot);
    if addressed {
        sending(&deps.limiter, msg.chat.id, 1, "sendMessage", || {
            bot.send_message(msg.chat.id, text.clone()).send()
        })
        .await?;
    }
    Ok(())
}

/// A button pressed on a message outside a private chat (forged or stale): the same sentence.
pub async fn on_button_outside_private_chat(
    bot: TgBot,
    deps: Arc<BotDeps>,
    q: CallbackQuery,
) -> HandlerResult {
    let lang = Lang::from_code(q.from.language_code.as_deref());
    let text = lang.texts().private_chat_only(&private_chat_link(&deps));
    retrying("answerCallbackQuery", || {
        bot.answer_callback_query(q.id.clone())
            .text(text.clone())
            .show_alert(true)
            .send()
    })
    .await?;
    Ok(())
}

/// Any other message: a reminder of what the bot waits for.
pub async fn on_other_message(
    bot: TgBot,
    deps: Arc<BotDeps>,
    msg: Message,
    state: State,
) -> HandlerResult {
    let Some(from) = msg.from.as_ref() else {
        return Ok(());
    };
    let ctx = Ctx::new(bot, deps, from, msg.chat.id).await;
    let t = ctx.t();
    match state {
        State::Uploading { avatar_id } => {
            let count = ctx.deps.store.load(avatar_id).await?.photos.len();
            ctx.say(
                t.text_while_uploading(count),
                kb::after_photo(t, avatar_id, count, None),
            )
            .await?;
        }
        _ => {
            ctx.say(t.unknown_input(), Some(ctx.main_menu())).await?;
        }
    }
    Ok(())
}

/// Asks for images; the progress message goes out at once, the images come with the notifier.
/// `Ok(Err(_))` is the domain's refusal, for the caller to explain.
async fn generate(
    ctx: &Ctx,
    avatar_id: Uuid,
    prompt: String,
    preset: Option<GenerationPreset>,
) -> Result<Result<(), Refusal>, BotError> {
    generate_one(ctx, avatar_id, prompt, preset, None, None, None).await
}

/// [`generate`] for one prompt, alone or (`batch`) as one item of a batch, whose progress
/// message the caller sends once for all.
async fn generate_one(
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
async fn generate_batch(
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

/// Logs an unexpected failure and tells the user, briefly.
async fn apologise(ctx: &Ctx, error: BotError) -> HandlerResult {
    tracing::error!(user = ctx.user, error = %error, "could not handle an update");
    ctx.say(ctx.t().something_went_wrong(), Some(kb::to_menu(ctx.t())))
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Buttons
// ---------------------------------------------------------------------------------------------

/// How a button press is answered (the small notice over the chat).
enum Answer {
    Silent,
    Toast(String),
    Alert(String),
}

pub async fn on_callback(
    bot: TgBot,
    deps: Arc<BotDeps>,
    dialogue: BotDialogue,
    q: CallbackQuery,
) -> HandlerResult {
    let chat = q
        .regular_message()
        .map(|m| m.chat.id)
        .unwrap_or(ChatId(q.from.id.0 as i64));
    let ctx = Ctx::new(bot, deps, &q.from, chat).await;
    let answer = match press(&ctx, &dialogue, &q).await {
        Ok(answer) => answer,
        Err(error) => {
            tracing::error!(user = ctx.user, error = %error, "could not handle a button press");
            Answer::Alert(ctx.t().something_went_wrong())
        }
    };
    let (text, alert) = match answer {
        Answer::Silent => (None, false),
        Answer::Toast(text) => (Some(text), false),
        Answer::Alert(text) => (Some(text), true),
    };
    let answered = retrying("answerCallbackQuery", || {
        let mut request = ctx.bot.answer_callback_query(q.id.clone());
        if let Some(text) = &text {
            request = request.text(text.clone()).show_alert(alert);
        }
        request.send()
    })
    .await;
    if let Err(e) = answered {
        // The query may simply be too old; the screen has been handled either way.
        tracing::debug!(user = ctx.user, error = %crate::telemetry::chain(&e), "could not answer a button press");
    }
    Ok(())
}

/// Checks and performs one button press.
async fn press(ctx: &Ctx, dialogue: &BotDialogue, q: &CallbackQuery) -> Result<Answer, BotError> {
    let t = ctx.t();
    let data = q.data.as_deref().unwrap_or_default();
    let callback = match Callback::parse(data) {
        Ok(callback) => callback,
        Err(e) => {
            tracing::warn!(user = ctx.user, error = %crate::telemetry::chain(&e), "refused callback data that is not ours");
            return Ok(Answer::Alert(t.stale_button().to_owned()));
        }
    };
    let avatar = match callback.avatar_id() {
        Some(avatar_id) => match owned_avatar(ctx, avatar_id).await? {
            Ok(avatar) => Some((avatar_id, avatar)),
            Err(refusal) => {
                tracing::warn!(user = ctx.user, %avatar_id, ?callback, refusal, "refused a button for an avatar the user may not use");
                return Ok(Answer::Alert(refusal.to_owned()));
            }
        },
        None => None,
    };
    // Only text messages are edited in place; under a photo, a new message follows.
    let screen = match q.regular_message() {
        Some(m) if m.text().is_some() => Screen::Edit(m.id),
        _ => Screen::New,
    };

    match (callback, avatar) {
        (Callback::Buy, _) => payments::show_packs(ctx, screen).await?,
        (Callback::BuyPack(pack), _) => return payments::send_invoice(ctx, pack).await,
        (Callback::Refunds, _) => payments::show_refunds(ctx, screen).await?,
        (Callback::Refund { charge }, _) => {
            return payments::request_refund(ctx, screen, charge).await
        }
        (Callback::Promo, _) => payments::ask_promo(ctx, dialogue).await?,
        (Callback::ForgetMe, _) => forget::ask(ctx, screen).await?,
        (Callback::ForgetMeConfirm, _) => return forget::confirm(ctx, dialogue).await,
        (Callback::ForgetMeCancel, _) => return forget::cancel(ctx, screen).await,
        (Callback::Menu, _) => {
            dialogue.reset().await?;
            ctx.show(screen, t.main_menu(), ctx.main_menu()).await?;
        }
        (Callback::Help, _) => ctx.show(screen, t.help(), kb::to_menu(t)).await?,
        (Callback::NewAvatar, _) => {
            dialogue.reset().await?;
            ctx.show(screen, t.choose_type(), kb::avatar_types(t))
                .await?;
        }
        (Callback::ChooseType(avatar_type), _) => {
            ctx.show(
                screen,
                t.choose_gender(avatar_type),
                kb::genders(t, avatar_type),
            )
            .await?;
        }
        (Callback::ChooseGender(avatar_type, gender), _) => {
            dialogue
                .update(State::AwaitingName {
                    avatar_type,
                    gender,
                })
                .await?;
            ctx.show(screen, t.ask_name(), kb::to_menu(t)).await?;
        }
        (Callback::Gallery(page), _) => show_gallery(ctx, screen, page).await?,
        (Callback::GenerateMenu, _) => match studio::main_avatar(ctx).await? {
            Some((avatar_id, avatar)) => {
                ctx.remember_avatar(avatar_id).await;
                let text = t.choose_generation_preset(&avatar_name(&avatar));
                ctx.show(screen, text, kb::generation_presets(t, avatar_id, true))
                    .await?;
            }
            None => show_generation_avatars(ctx, screen).await?,
        },
        (Callback::AllAvatars, _) => show_generation_avatars(ctx, screen).await?,
        (Callback::MakeMain(_), Some((avatar_id, avatar))) => {
            let answer = studio::make_main(ctx, avatar_id, &avatar).await?;
            if matches!(answer, Answer::Toast(_)) {
                show_card(ctx, screen, avatar_id, &avatar).await?;
            }
            return Ok(answer);
        }
        (Callback::Packs(_), Some((avatar_id, avatar))) => {
            return studio::show_packs(ctx, screen, avatar_id, &avatar).await;
        }
        (Callback::Pack { pack, .. }, Some((avatar_id, avatar))) => {
            return studio::show_pack(ctx, screen, avatar_id, &avatar, pack).await;
        }
        (Callback::RunPack { pack, press, .. }, Some((avatar_id, avatar))) => {
            return studio::run_pack(ctx, screen, avatar_id, &avatar, pack, press).await;
        }
        (
            Callback::UpscaleMenu {
                generation, image, ..
            },
            Some((avatar_id, avatar)),
        ) => {
            return studio::ask_upscale(ctx, avatar_id, &avatar, generation, image).await;
        }
        (
            Callback::Upscale {
                generation,
                image,
                factor,
                press,
                ..
            },
            Some((avatar_id, avatar)),
        ) => {
            let asked = studio::UpscaleAsk {
                generation,
                image,
                factor,
                press,
            };
            return studio::upscale(ctx, screen, avatar_id, &avatar, asked).await;
        }
        (Callback::Card(_), Some((avatar_id, avatar)))
        | (Callback::DeleteCancel(_), Some((avatar_id, avatar))) => {
            show_card(ctx, screen, avatar_id, &avatar).await?;
        }
        (Callback::Upload(_), Some((avatar_id, avatar))) => {
            if !matches!(
                avatar.status,
                AvatarStatus::Draft | AvatarStatus::TrainingFailed
            ) {
                return Ok(Answer::Alert(capitalised(
                    &t.refusal(&AvatarError::PhotosLocked),
                )));
            }
            dialogue.update(State::Uploading { avatar_id }).await?;
            ctx.remember_avatar(avatar_id).await;
            let count = avatar.photos.len();
            let keyboard =
                kb::after_photo(t, avatar_id, count, None).unwrap_or_else(|| kb::to_menu(t));
            ctx.show(
                screen,
                t.upload_more(&avatar_name(&avatar), count),
                keyboard,
            )
            .await?;
        }
        (Callback::Rename(_), Some((avatar_id, avatar))) => {
            dialogue
                .update(State::AwaitingNewName { avatar_id })
                .await?;
            let keyboard = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback(
                t.btn_back(),
                Callback::Card(avatar_id).encode(),
            )]]);
            ctx.show(screen, t.ask_new_name(&avatar_name(&avatar)), keyboard)
                .await?;
        }
        (Callback::RemovePhoto { photo, .. }, Some((avatar_id, avatar))) => {
            let Some(photo) = avatar
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
            forget_photo_bytes(ctx, avatar_id, std::slice::from_ref(photo)).await;
            dialogue.update(State::Uploading { avatar_id }).await?;
            let count = executed.state.photos.len();
            let keyboard =
                kb::after_photo(t, avatar_id, count, None).unwrap_or_else(|| kb::to_menu(t));
            ctx.show(screen, t.photo_removed(count), keyboard).await?;
        }
        (Callback::StartOver(_), Some((avatar_id, avatar))) => {
            if let Err(refusal) = ctx.execute(avatar_id, Action::ClearPhotos).await {
                return match refusal {
                    StoreError::Rejected(refusal) => {
                        Ok(Answer::Alert(capitalised(&t.refusal(&refusal))))
                    }
                    e => Err(e.into()),
                };
            }
            forget_photo_bytes(ctx, avatar_id, &avatar.photos).await;
            dialogue.update(State::Uploading { avatar_id }).await?;
            ctx.show(
                screen,
                t.set_started_over(avatar.photos.len()),
                kb::to_menu(t),
            )
            .await?;
        }
        (Callback::Train(_), Some((avatar_id, avatar))) => {
            let refusal = match avatar.status {
                AvatarStatus::Training => Some(AvatarError::TrainingAlreadyStarted),
                AvatarStatus::Trained => Some(AvatarError::AlreadyTrained),
                _ if avatar.photos.len() < MIN_PHOTOS => Some(AvatarError::NotEnoughPhotos {
                    have: avatar.photos.len(),
                    min: MIN_PHOTOS,
                }),
                _ => None,
            };
            if let Some(refusal) = refusal {
                return Ok(Answer::Alert(capitalised(&t.refusal(&refusal))));
            }
            let mut text = t.choose_training_preset(&avatar_name(&avatar), avatar.photos.len());
            if let Some(prices) = ctx.training_prices().await {
                text.push_str(&format!("\n\n{prices}"));
            }
            ctx.show(screen, text, kb::training_presets(t, avatar_id))
                .await?;
        }
        (Callback::StartTraining(_, preset), Some((avatar_id, avatar))) => {
            if let Some(reached) = ctx.quota(Ask::Training).await? {
                return Ok(Answer::Alert(t.quota_reached(reached)));
            }
            match ctx
                .execute_paid(
                    avatar_id,
                    Action::StartTraining {
                        preset,
                        style: ctx.deps.style_trainer,
                    },
                )
                .await?
            {
                Ok(_) => {
                    tracing::info!(user = ctx.user, %avatar_id, preset = preset.as_str(), "training started");
                    if dialogue.get().await? == Some(State::Uploading { avatar_id }) {
                        dialogue.reset().await?;
                    }
                    let avatar_type = avatar.avatar_type.unwrap_or(AvatarType::Portrait);
                    let text = t.training_started(&avatar_name(&avatar), avatar_type, preset);
                    // This message becomes the training's progress bar.
                    let shown = ctx.show_at(screen, text.clone(), kb::to_menu(t)).await?;
                    let (bot, deps) = (&ctx.bot, &*ctx.deps);
                    let message = (ctx.chat, shown);
                    super::progress::track(
                        bot, deps, avatar_id, ctx.user, message, ctx.lang, &text,
                    )
                    .await;
                }
                Err(refusal) => return ctx.answer_refusal(refusal).await,
            }
        }
        (Callback::Generate(_), Some((avatar_id, avatar))) => {
            if avatar.status != AvatarStatus::Trained {
                return Ok(Answer::Alert(capitalised(
                    &t.refusal(&AvatarError::NotTrained),
                )));
            }
            ctx.remember_avatar(avatar_id).await;
            let text = t.choose_generation_preset(&avatar_name(&avatar));
            ctx.show(screen, text, kb::generation_presets(t, avatar_id, false))
                .await?;
        }
        (Callback::GeneratePreset(_, preset), Some((avatar_id, avatar))) => {
            if avatar.status != AvatarStatus::Trained {
                return Ok(Answer::Alert(capitalised(
                    &t.refusal(&AvatarError::NotTrained),
                )));
            }
            dialogue
                .update(State::AwaitingPrompt { avatar_id, preset })
                .await?;
            ctx.show_prompt_screen(screen, avatar_id, &avatar, preset)
                .await?;
        }
        (
            Callback::PromptOptions {
                preset,
                images,
                aspect,
                ..
            },
            Some((avatar_id, avatar)),
        ) => {
            if avatar.status != AvatarStatus::Trained {
                return Ok(Answer::Alert(capitalised(
                    &t.refusal(&AvatarError::NotTrained),
                )));
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
            dialogue
                .update(State::AwaitingPrompt { avatar_id, preset })
                .await?;
            ctx.show_prompt_screen(screen, avatar_id, &avatar, preset)
                .await?;
        }
        (
            Callback::Reuse {
                preset, generation, ..
            },
            Some((avatar_id, _)),
        ) => {
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
            if let Err(refusal) = generate(ctx, avatar_id, earlier.prompt, Some(preset)).await? {
                return ctx.answer_refusal(refusal).await;
            }
        }
        (
            Callback::AsFile {
                generation, image, ..
            },
            Some((avatar_id, _)),
        ) => {
            let Some(found) = generated_image(ctx, avatar_id, generation, image).await? else {
                return Ok(Answer::Alert(t.image_unavailable().to_owned()));
            };
            let bytes = crate::actors::copies::image_bytes(
                &ctx.deps.photos,
                &ctx.deps.fal,
                avatar_id,
                &found.url,
            )
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
        }
        (Callback::Again { generation, .. }, Some((avatar_id, _))) => {
            let Some((prompt, preset)) = requested_generation(ctx, avatar_id, generation).await?
            else {
                return Ok(Answer::Alert(t.stale_button().to_owned()));
            };
            if let Err(refusal) = generate(ctx, avatar_id, prompt, preset).await? {
                return ctx.answer_refusal(refusal).await;
            }
        }
        (Callback::OtherPreset { generation, .. }, Some((avatar_id, avatar))) => {
            if requested_generation(ctx, avatar_id, generation)
                .await?
                .is_none()
            {
                return Ok(Answer::Alert(t.stale_button().to_owned()));
            }
            let text = t.choose_generation_preset(&avatar_name(&avatar));
            let keyboard = kb::regeneration_presets(t, avatar_id, generation);
            ctx.show(screen, text, keyboard).await?;
        }
        (
            Callback::Regenerate {
                generation, preset, ..
            },
            Some((avatar_id, _)),
        ) => {
            let Some((prompt, _)) = requested_generation(ctx, avatar_id, generation).await? else {
                return Ok(Answer::Alert(t.stale_button().to_owned()));
            };
            if let Err(refusal) = generate(ctx, avatar_id, prompt, Some(preset)).await? {
                return ctx.answer_refusal(refusal).await;
            }
        }
        (Callback::Delete(_), Some((avatar_id, avatar))) => {
            let text = t.delete_confirmation(
                &avatar_name(&avatar),
                avatar.status,
                ctx.deps.fal_uploads_kept_for,
            );
            ctx.show(screen, text, kb::delete_confirmation(t, avatar_id))
                .await?;
        }
        (Callback::DeleteConfirm(_), Some((avatar_id, avatar))) => {
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
            show_gallery(ctx, screen, 0).await?;
            return Ok(Answer::Toast(t.avatar_deleted(&avatar_name(&avatar))));
        }
        // Every callback that names an avatar was given one above.
        (_, None) => return Ok(Answer::Alert(t.stale_button().to_owned())),
    }
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

/// The avatar if the user may act on it, else the reason to show them. Someone else's avatar
/// and one that never existed get the same answer, so ids reveal nothing.
async fn owned_avatar(
    ctx: &Ctx,
    avatar_id: Uuid,
) -> Result<Result<Avatar, &'static str>, BotError> {
    let t = ctx.t();
    let avatar = ctx.deps.store.load(avatar_id).await?;
    Ok(match avatar.status {
        AvatarStatus::New => Err(t.not_available()),
        _ if avatar.owner != ctx.user => Err(t.not_available()),
        AvatarStatus::Deleted => Err(t.avatar_gone()),
        _ => Ok(avatar),
    })
}

/// The prompt and preset of one of the avatar's generations, from its history.
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
pub(super) async fn requested(
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

async fn show_card(
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

/// One page of the user's gallery, from the gallery read model.
async fn show_gallery(ctx: &Ctx, screen: Screen, page: u32) -> Result<(), BotError> {
    let t = ctx.t();
    let mut conn = connection(&ctx.deps.db).await?;
    let offset = i64::from(page) * i64::from(GALLERY_PAGE_SIZE);
    let mut listed = gallery::page(
        &mut conn.tx(),
        ctx.user,
        offset,
        i64::from(GALLERY_PAGE_SIZE),
    )
    .await?;
    let mut page = page;
    if listed.items.is_empty() && page > 0 {
        // The page emptied (a deletion): show the first one instead.
        page = 0;
        listed = gallery::page(&mut conn.tx(), ctx.user, 0, i64::from(GALLERY_PAGE_SIZE)).await?;
    }
    drop(conn);
    if listed.total == 0 {
        ctx.show(screen, t.gallery_empty(), kb::no_trained_avatars(t))
            .await?;
        return Ok(());
    }
    let lines: Vec<AvatarLine> = listed
        .items
        .iter()
        .map(|item| AvatarLine {
            name: item.name.clone(),
            avatar_type: avatar_type_from(&item.avatar_type),
            status: status_from(&item.status),
            photos: item.photo_count,
        })
        .collect();
    let buttons: Vec<(Uuid, String, AvatarType)> = listed
        .items
        .iter()
        .map(|item| {
            (
                item.avatar_id,
                item.name.clone(),
                avatar_type_from(&item.avatar_type),
            )
        })
        .collect();
    let pages =
        ((listed.total + i64::from(GALLERY_PAGE_SIZE) - 1) / i64::from(GALLERY_PAGE_SIZE)) as usize;
    let text = t.gallery(&lines, page as usize, pages, listed.total);
    let keyboard = kb::gallery(t, &buttons, page, listed.has_previous(), listed.has_next());
    ctx.show(screen, text, keyboard).await?;
    Ok(())
}

/// The user's trained avatars to generate with, the last used first.
async fn show_generation_avatars(ctx: &Ctx, screen: Screen) -> Result<(), BotError> {
    let t = ctx.t();
    let mut conn = connection(&ctx.deps.db).await?;
    let listed = gallery::page(&mut conn.tx(), ctx.user, 0, gallery::MAX_PAGE).await?;
    drop(conn);
    let trained: Vec<(Uuid, String)> = listed
        .items
        .into_iter()
        .filter(|item| item.has_model && status_from(&item.status) == AvatarStatus::Trained)
        .map(|item| (item.avatar_id, item.name))
        .collect();
    if trained.is_empty() {
        ctx.show(screen, t.no_trained_avatars(), kb::no_trained_avatars(t))
            .await?;
        return Ok(());
    }
    let last = ctx
        .deps
        .users
        .get(ctx.user)
        .await?
        .and_then(|u| u.last_avatar_id);
    let keyboard = kb::generation_avatars(t, &trained, last);
    ctx.show(screen, t.choose_avatar_for_generation(), keyboard)
        .await?;
    Ok(())
}

/// Waits (at most [`READ_MODEL_WAIT`]) until the generations read model counts no more of the
/// avatar's generations as waiting than the avatar itself does: the waiting-generations quota
/// reads that model, and a user who taps right after a result arrived must not be told their
/// images are still being made.
async fn caught_up_on_generations(ctx: &Ctx, avatar_id: Uuid) {
    let Ok(avatar) = ctx.deps.store.load(avatar_id).await else {
        return;
    };
    let waiting = avatar.pending_generations.len() as i64;
    let deadline = tokio::time::Instant::now() + READ_MODEL_WAIT;
    loop {
        let counted = match connection(&ctx.deps.db).await {
            Ok(mut conn) => generations::pending_for_avatar(&mut conn.tx(), avatar_id).await,
            Err(e) => Err(e.into()),
        };
        match counted {
            Ok(counted) if counted <= waiting => return,
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(counted) => {
                tracing::warn!(%avatar_id, counted, waiting, "the generations read model is behind; checking the quota anyway");
                return;
            }
            Err(e) => {
                tracing::warn!(%avatar_id, error = %crate::telemetry::chain(&e), "could not read the generations read model");
                return;
            }
        }
    }
}

/// Waits (at most [`READ_MODEL_WAIT`]) until the avatar's gallery card is as `done` wants, so
/// that a screen shown next agrees with what the user was just told.
pub(super) async fn wait_for_card(
    db: &Database,
    avatar_id: Uuid,
    done: impl Fn(&gallery::AvatarCard) -> bool,
) {
    wait_for_row(db, avatar_id, |card| card.is_some_and(&done)).await;
}

/// [`wait_for_card`] for a row that may be absent (a deleted avatar has none).
async fn wait_for_row(
    db: &Database,
    avatar_id: Uuid,
    done: impl Fn(Option<&gallery::AvatarCard>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + READ_MODEL_WAIT;
    loop {
        let seen = match connection(db).await {
            Ok(mut conn) => match gallery::card(&mut conn.tx(), avatar_id).await {
                Ok(card) => done(card.as_ref()),
                Err(_) => false,
            },
            Err(_) => false,
        };
        if seen || tokio::time::Instant::now() >= deadline {
            if !seen {
                tracing::warn!(%avatar_id, "the gallery is behind; showing it anyway");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn connection(db: &Database) -> Result<Conn, sqlx::Error> {
    Ok(match db {
        Database::Postgres(pool) => Conn::Postgres(pool.acquire().await?),
        Database::Sqlite(pool) => Conn::Sqlite(pool.acquire().await?),
    })
}

fn avatar_name(avatar: &Avatar) -> String {
    avatar
        .name
        .as_ref()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

fn avatar_type_from(name: &str) -> AvatarType {
    match name {
        "style" => AvatarType::Style,
        _ => AvatarType::Portrait,
    }
}

fn status_from(name: &str) -> AvatarStatus {
    [
        AvatarStatus::Draft,
        AvatarStatus::Training,
        AvatarStatus::Trained,
        AvatarStatus::TrainingFailed,
        AvatarStatus::Deleted,
    ]
    .into_iter()
    .find(|s| s.as_str() == name)
    .unwrap_or(AvatarStatus::Draft)
}

/// A refusal sentence as a stand-alone notice.
fn capitalised(sentence: &str) -> String {
    let mut chars = sentence.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
