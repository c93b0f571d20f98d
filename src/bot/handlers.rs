//! The handler tree: which screen each update goes to. Messages go by conversation step;
//! buttons have their own tree, where the data is parsed and the avatar a button names is
//! checked against the pressing user before any screen sees the press. The context
//! ([`Ctx`]) is built once per update, before either tree branches.

use std::ops::ControlFlow;
use std::sync::LazyLock;

use teloxide::dispatching::UpdateHandler;
use teloxide::prelude::*;

use super::callbacks::Callback;
use super::ctx::Ctx;
use super::press::{self, Answer, Buttons, Checked};
use super::screens::{
    card, create, delete, forget, gallery, prompt, results, start, studio, training, upload,
};
use super::send::retrying;
use super::{dialogues, BotDialogue, BotError, HandlerResult, State};

/// Selling credits (the refund worker and tests reach it here).
pub use super::screens::payments;
pub use super::screens::start::Command;

/// The handler tree: payments, then chats that are not private, then messages (commands first,
/// then photos, then the text a conversation step waits for), then button presses.
pub fn schema() -> UpdateHandler<BotError> {
    use dptree::case;

    // Groups and channels get one sentence and nothing is stored: no user row, no dialogue.
    let elsewhere = dptree::entry()
        .branch(
            Update::filter_message()
                .filter(|m: Message| !m.chat.is_private())
                .endpoint(start::on_message_outside_private_chat),
        )
        .branch(
            Update::filter_callback_query()
                .filter(|q: CallbackQuery| {
                    q.message.as_ref().is_some_and(|m| !m.chat().is_private())
                })
                .endpoint(start::on_button_outside_private_chat),
        );
    // Payments come before any conversation step: a successful payment is a service message that
    // must be credited whatever step the chat is on, and a pre-checkout query has to be answered
    // within ten seconds, so it takes no detour.
    let payment_updates = dptree::entry()
        .branch(Update::filter_pre_checkout_query().endpoint(payments::on_pre_checkout))
        .branch(
            Update::filter_message()
                .filter(|m: Message| m.successful_payment().is_some())
                .endpoint(payments::on_successful_payment),
        )
        .branch(
            Update::filter_message()
                .filter(|m: Message| {
                    matches!(m.kind, teloxide::types::MessageKind::RefundedPayment(_))
                })
                .endpoint(payments::on_refunded_payment),
        );
    let messages = Update::filter_message()
        .enter_dialogue::<Message, dialogues::Dialogues, State>()
        .filter_map_async(Ctx::for_message)
        .branch(
            dptree::entry()
                .filter_command::<Command>()
                .endpoint(start::on_command),
        )
        .branch(
            dptree::filter(|m: Message| m.photo().is_some() || m.document().is_some())
                .endpoint(upload::on_file),
        )
        .branch(
            case![State::AwaitingName {
                avatar_type,
                gender
            }]
            .endpoint(create::on_name),
        )
        .branch(case![State::AwaitingPrompt { avatar_id, preset }].endpoint(prompt::on_prompt))
        .branch(case![State::AwaitingNewName { avatar_id }].endpoint(card::on_new_name))
        .branch(case![State::AwaitingPromoCode].endpoint(payments::on_promo_code))
        .branch(dptree::endpoint(start::on_other_message));
    let buttons = Update::filter_callback_query()
        .enter_dialogue::<CallbackQuery, dialogues::Dialogues, State>()
        .map_async(Ctx::for_press)
        .endpoint(on_press);
    dptree::entry()
        .branch(payment_updates)
        .branch(elsewhere)
        .branch(messages)
        .branch(buttons)
}

/// The button tree: screens that name no avatar, then those that do, behind the owner check.
fn buttons() -> Buttons {
    let general = dptree::filter(|c: Callback| c.avatar_id().is_none())
        .branch(start::buttons())
        .branch(create::buttons())
        .branch(gallery::buttons())
        .branch(prompt::buttons())
        .branch(payments::buttons())
        .branch(forget::buttons());
    let avatar = dptree::filter_map_async(press::check_owner)
        .branch(dptree::filter_map(|c: Checked| c.err()).endpoint(press::refuse))
        .filter_map(|c: Checked| c.ok())
        .branch(card::buttons())
        .branch(upload::buttons())
        .branch(training::buttons())
        .branch(prompt::avatar_buttons())
        .branch(results::buttons())
        .branch(studio::buttons())
        .branch(delete::buttons());
    dptree::entry()
        .filter_map(press::parse)
        .branch(general)
        .branch(avatar)
}

/// Built once: the tree is the same for every press.
static BUTTONS: LazyLock<Buttons> = LazyLock::new(buttons);

/// A button press: its screen runs in the button tree, then the press is answered once.
async fn on_press(ctx: Ctx, dialogue: BotDialogue, q: CallbackQuery) -> HandlerResult {
    let screen = press::screen_of(&q);
    let pressed = BUTTONS
        .dispatch(dptree::deps![ctx.clone(), dialogue, q.clone(), screen])
        .await;
    let answer = match pressed {
        ControlFlow::Break(Ok(answer)) => answer,
        ControlFlow::Break(Err(error)) => {
            tracing::error!(user = ctx.user, error = %crate::telemetry::chain(&error), "could not handle a button press");
            Answer::Alert(ctx.t().something_went_wrong())
        }
        // Data that is not ours (logged when parsed), or a button no screen takes.
        ControlFlow::Continue(_) => Answer::Alert(ctx.t().stale_button().to_owned()),
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
