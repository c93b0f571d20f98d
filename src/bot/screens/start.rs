//! Where every conversation starts and returns: the commands, the main menu and help, and the
//! answers to what the bot does not expect (including anything outside a private chat).

use std::sync::Arc;

use teloxide::dptree::{self, case};
use teloxide::prelude::*;
use teloxide::utils::command::BotCommands;

use super::{forget, gallery, payments};
use crate::bot::callbacks::Callback;
use crate::bot::ctx::{avatar_name, Ctx, Screen};
use crate::bot::keyboards as kb;
use crate::bot::press::{Answer, Buttons, Pressed};
use crate::bot::send::{retrying, sending};
use crate::bot::texts::Lang;
use crate::bot::{BotDeps, BotDialogue, HandlerResult, State, TgBot};

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

/// The main menu's and help's buttons.
pub(in crate::bot) fn buttons() -> Buttons {
    dptree::entry()
        .branch(case![Callback::Menu].endpoint(menu))
        .branch(
            case![Callback::Help].endpoint(|ctx: Ctx, screen: Screen| async move {
                let t = ctx.t();
                ctx.show(screen, t.help(), kb::to_menu(t)).await?;
                Ok(Answer::Silent)
            }),
        )
}

async fn menu(ctx: Ctx, screen: Screen, dialogue: BotDialogue) -> Pressed {
    dialogue.reset().await?;
    ctx.show(screen, ctx.t().main_menu(), ctx.main_menu())
        .await?;
    Ok(Answer::Silent)
}

/// A command from the menu or typed.
pub(in crate::bot) async fn on_command(
    ctx: Ctx,
    dialogue: BotDialogue,
    command: Command,
) -> HandlerResult {
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
        Command::Avatars => gallery::show_gallery(&ctx, Screen::New, 0).await?,
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

/// The link to the bot's private chat.
fn private_chat_link(deps: &BotDeps) -> String {
    match deps.username.get() {
        Some(name) if !name.is_empty() => format!("https://t.me/{name}"),
        _ => "https://t.me/".into(),
    }
}

/// A message in a group, supergroup or channel: one sentence with a link to the private chat,
/// and nothing remembered. A group's members must never see someone's photos or images.
pub(in crate::bot) async fn on_message_outside_private_chat(
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
pub(in crate::bot) async fn on_button_outside_private_chat(
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
pub(in crate::bot) async fn on_other_message(ctx: Ctx, state: State) -> HandlerResult {
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
