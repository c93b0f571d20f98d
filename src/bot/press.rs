//! A button press as the screens receive it: its data parsed strictly, the avatar it names
//! checked against the pressing user, and how the press is answered.

use std::sync::Arc;

use aggregates::Avatar;
use teloxide::dispatching::DpHandlerDescription;
use teloxide::dptree::Handler;
use teloxide::types::CallbackQuery;
use uuid::Uuid;

use super::callbacks::Callback;
use super::ctx::{Ctx, Screen};
use super::BotError;

/// How a button press is answered (the small notice over the chat).
pub(in crate::bot) enum Answer {
    Silent,
    Toast(String),
    Alert(String),
}

/// What a screen makes of a press; `Err` is logged and answered with a short apology.
pub(in crate::bot) type Pressed = Result<Answer, BotError>;

/// A branch of the button tree: one screen's buttons.
pub(in crate::bot) type Buttons = Handler<'static, Pressed, DpHandlerDescription>;

/// The avatar a button names, once it is known to be the pressing user's and not deleted.
#[derive(Debug, Clone)]
pub(in crate::bot) struct Owned {
    pub(in crate::bot) id: Uuid,
    pub(in crate::bot) avatar: Avatar,
}

/// Why a button naming an avatar goes no further than the check.
#[derive(Debug, Clone)]
pub(in crate::bot) enum Denied {
    /// Not theirs, never existed or deleted: the sentence to show.
    NotYours(&'static str),
    /// The avatar could not be loaded.
    Failed(Arc<BotError>),
}

/// The avatar check of a button that names one.
pub(in crate::bot) type Checked = Result<Owned, Denied>;

/// Only text messages are edited in place; under a photo, a new message follows.
pub(in crate::bot) fn screen_of(q: &CallbackQuery) -> Screen {
    match q.regular_message() {
        Some(m) if m.text().is_some() => Screen::Edit(m.id),
        _ => Screen::New,
    }
}

/// The button's data when it is ours; anything else is logged and gets the "out of date" answer.
pub(in crate::bot) fn parse(ctx: Ctx, q: CallbackQuery) -> Option<Callback> {
    let data = q.data.as_deref().unwrap_or_default();
    match Callback::parse(data) {
        Ok(callback) => Some(callback),
        Err(e) => {
            tracing::warn!(user = ctx.user, error = %crate::telemetry::chain(&e), "refused callback data that is not ours");
            None
        }
    }
}

/// Checks the avatar a button names against the pressing user; `None` for a button naming none.
pub(in crate::bot) async fn check_owner(ctx: Ctx, callback: Callback) -> Option<Checked> {
    let id = callback.avatar_id()?;
    Some(match ctx.owned_avatar(id).await {
        Ok(Ok(avatar)) => Ok(Owned { id, avatar }),
        Ok(Err(refusal)) => Err(Denied::NotYours(refusal)),
        Err(error) => Err(Denied::Failed(Arc::new(error))),
    })
}

/// A button for an avatar the user may not use: a polite alert, nothing changed.
pub(in crate::bot) async fn refuse(ctx: Ctx, callback: Callback, denied: Denied) -> Pressed {
    match denied {
        Denied::NotYours(refusal) => {
            let avatar_id = callback.avatar_id().unwrap_or_default();
            tracing::warn!(user = ctx.user, %avatar_id, ?callback, refusal, "refused a button for an avatar the user may not use");
            Ok(Answer::Alert(refusal.to_owned()))
        }
        Denied::Failed(error) => {
            tracing::error!(user = ctx.user, error = %crate::telemetry::chain(&*error), "could not handle a button press");
            Ok(Answer::Alert(ctx.t().something_went_wrong()))
        }
    }
}
