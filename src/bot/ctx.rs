//! One update's context, built once per update before any handler runs: who, in which chat and
//! language, and the ways every screen answers (say, show in place, run a command).

use std::sync::Arc;

use aggregates::{Action, Actor, Avatar, AvatarError, AvatarStatus, Command as AvatarCommand};
use chrono::Utc;
use teloxide::prelude::*;
use teloxide::types::{InlineKeyboardMarkup, MessageId};
use teloxide::{ApiError, RequestError};
use uuid::Uuid;

use super::keyboards as kb;
use super::quotas::{Ask, QuotaReached};
use super::send::{retrying, sending};
use super::texts::{Lang, Texts};
use super::users::GenerationOptions;
use super::{BotDeps, BotError, HandlerResult, TgBot};
use crate::store::StoreError;

/// One update's context: who, where, in which language.
#[derive(Clone)]
pub(in crate::bot) struct Ctx {
    pub(in crate::bot) bot: TgBot,
    pub(in crate::bot) deps: Arc<BotDeps>,
    pub(in crate::bot) user: i64,
    pub(in crate::bot) first_name: String,
    pub(in crate::bot) chat: ChatId,
    pub(in crate::bot) lang: Lang,
}

/// Where a screen goes: a new message, or the message whose button was pressed (edited in place).
#[derive(Debug, Clone, Copy)]
pub(in crate::bot) enum Screen {
    New,
    Edit(MessageId),
}

impl Ctx {
    pub(in crate::bot) async fn new(
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

    pub(in crate::bot) fn t(&self) -> &'static dyn Texts {
        self.lang.texts()
    }

    /// The main menu, with "Buy credits" when credits are sold.
    pub(in crate::bot) fn main_menu(&self) -> InlineKeyboardMarkup {
        if self.deps.payments.enabled() {
            kb::main_menu_with_buy(self.t())
        } else {
            kb::main_menu(self.t())
        }
    }

    /// Asks one of the quotas about this user; `Some` when the request must be refused.
    pub(in crate::bot) async fn quota(&self, ask: Ask) -> Result<Option<QuotaReached>, BotError> {
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

    pub(in crate::bot) async fn say(
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
    pub(in crate::bot) async fn show(
        &self,
        screen: Screen,
        text: String,
        keyboard: InlineKeyboardMarkup,
    ) -> Result<(), RequestError> {
        self.show_at(screen, text, keyboard).await.map(drop)
    }

    /// [`Ctx::show`], answering which message shows the screen (the edited one or a new one).
    pub(in crate::bot) async fn show_at(
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
    pub(in crate::bot) async fn options(&self) -> GenerationOptions {
        match self.deps.users.get(self.user).await {
            Ok(user) => user.map(|u| u.options).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(user = self.user, error = %crate::telemetry::chain(&e), "could not read the generation options");
                GenerationOptions::default()
            }
        }
    }

    pub(in crate::bot) async fn remember_avatar(&self, avatar_id: Uuid) {
        if let Err(e) = self.deps.users.set_last_avatar(self.user, avatar_id).await {
            tracing::warn!(user = self.user, %avatar_id, error = %crate::telemetry::chain(&e), "could not remember the last avatar");
        }
    }

    pub(in crate::bot) async fn execute(
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
                AvatarError::AlreadyExists
                | AvatarError::DuplicateGeneration(_)
                | AvatarError::DuplicateTraining(_),
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

    /// The context of a message; `None` for one without a sender (nothing to answer).
    pub(in crate::bot) async fn for_message(
        bot: TgBot,
        deps: Arc<BotDeps>,
        msg: Message,
    ) -> Option<Self> {
        let from = msg.from.as_ref()?;
        Some(Self::new(bot, deps, from, msg.chat.id).await)
    }

    /// The context of a button press, in the chat of the pressed message.
    pub(in crate::bot) async fn for_press(
        bot: TgBot,
        deps: Arc<BotDeps>,
        q: CallbackQuery,
    ) -> Self {
        let chat = q
            .regular_message()
            .map(|m| m.chat.id)
            .unwrap_or(ChatId(q.from.id.0 as i64));
        Self::new(bot, deps, &q.from, chat).await
    }

    /// The avatar if the user may act on it, else the reason to show them. Someone else's
    /// avatar and one that never existed get the same answer, so ids reveal nothing.
    pub(in crate::bot) async fn owned_avatar(
        &self,
        avatar_id: Uuid,
    ) -> Result<Result<Avatar, &'static str>, BotError> {
        let t = self.t();
        let avatar = self.deps.store.load(avatar_id).await?;
        Ok(match avatar.status {
            AvatarStatus::New => Err(t.not_available()),
            _ if avatar.owner != self.user => Err(t.not_available()),
            AvatarStatus::Deleted => Err(t.avatar_gone()),
            _ => Ok(avatar),
        })
    }
}

/// Logs an unexpected failure and tells the user, briefly.
pub(in crate::bot) async fn apologise(ctx: &Ctx, error: BotError) -> HandlerResult {
    tracing::error!(user = ctx.user, error = %crate::telemetry::chain(&error), "could not handle an update");
    ctx.say(ctx.t().something_went_wrong(), Some(kb::to_menu(ctx.t())))
        .await?;
    Ok(())
}

/// The avatar's name as the texts show it (empty before it has one).
pub(in crate::bot) fn avatar_name(avatar: &Avatar) -> String {
    avatar
        .name
        .as_ref()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// A refusal sentence as a stand-alone notice.
pub(in crate::bot) fn capitalised(sentence: &str) -> String {
    let mut chars = sentence.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
