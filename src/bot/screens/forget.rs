//! `/forgetme`: the user's own button to erase everything the bot holds about them, behind a
//! confirmation like the one before deleting an avatar (seed 003). The erasure itself is
//! [`crate::erasure`]; this is what the user reads before and after it.

use teloxide::dptree::{self, case};
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

use crate::bot::callbacks::Callback;
use crate::bot::ctx::{Ctx, Screen};
use crate::bot::press::{Answer, Buttons};
use crate::bot::texts::Lang;
use crate::bot::{BotDialogue, BotError};
use crate::erasure::{erase_user, ErasureReport, Requester};

/// The words of this screen, per language; kept beside the flow they belong to.
struct Words {
    confirm: &'static str,
    payments_kept: &'static str,
    yes: &'static str,
    no: &'static str,
    cancelled: &'static str,
    failed: &'static str,
    done: fn(&ErasureReport) -> String,
}

const RU: Words = Words {
    confirm: "⚠️ <b>Удалить все мои данные?</b>\n\n\
        Будут удалены навсегда: все ваши аватары с обученными моделями, загруженные фотографии, \
        история генераций и созданные изображения, ваш язык и незаконченные диалоги. \
        Ключ, которым зашифрованы ваши имена аватаров, промпты и ваш Telegram ID в истории событий, \
        будет уничтожен: в истории останутся только обезличенные записи (что и когда произошло).\n\n\
        Отменить это нельзя.",
    payments_kept: "\n\nЗаписи о покупках и балансе кредитов хранятся, как того требует учёт платежей.",
    yes: "🗑 Да, удалить всё",
    no: "↩️ Нет, оставить",
    cancelled: "Хорошо, ничего не удалено.",
    failed: "❌ Удалить данные полностью не получилось. Попробуйте ещё раз через минуту — уже удалённое не вернётся.",
    done: |r| {
        format!(
            "✅ Ваши данные удалены: аватаров — {}, ключ шифрования уничтожен, записи о вас стёрты. \
             Это последнее сообщение от меня; если напишете снова, я начну с чистого листа.",
            r.avatars_deleted
        )
    },
};

const EN: Words = Words {
    confirm: "⚠️ <b>Delete all my data?</b>\n\n\
        This deletes for good: all your avatars with their trained models, the photos you uploaded, \
        your generation history and the images made, your language and any unfinished dialogue. \
        The key that encrypts your avatars' names, your prompts and your Telegram ID in the history \
        of events is destroyed: the history keeps only anonymous records (what happened, and when).\n\n\
        This cannot be undone.",
    payments_kept: "\n\nRecords of purchases and of the credit balance are kept, as payment accounting requires.",
    yes: "🗑 Yes, delete everything",
    no: "↩️ No, keep it",
    cancelled: "All right, nothing was deleted.",
    failed: "❌ Your data could not be deleted completely. Please try again in a minute — what is deleted already stays deleted.",
    done: |r| {
        format!(
            "✅ Your data is deleted: {} avatar(s), the encryption key destroyed, the records about you erased. \
             This is my last message; if you write again, I start from a clean slate.",
            r.avatars_deleted
        )
    },
};

fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::Ru => &RU,
        Lang::En => &EN,
    }
}

/// The buttons of "delete all my data".
pub(in crate::bot) fn buttons() -> Buttons {
    dptree::entry()
        .branch(
            case![Callback::ForgetMe].endpoint(|ctx: Ctx, screen: Screen| async move {
                ask(&ctx, screen).await?;
                Ok(Answer::Silent)
            }),
        )
        .branch(case![Callback::ForgetMeConfirm].endpoint(
            |ctx: Ctx, dialogue: BotDialogue| async move { confirm(&ctx, &dialogue).await },
        ))
        .branch(
            case![Callback::ForgetMeCancel]
                .endpoint(|ctx: Ctx, screen: Screen| async move { cancel(&ctx, screen).await }),
        )
}

/// The confirmation screen.
pub(in crate::bot) async fn ask(ctx: &Ctx, screen: Screen) -> Result<(), BotError> {
    let w = words(ctx.lang);
    let mut text = w.confirm.to_owned();
    if ctx.deps.payments.enabled() {
        text.push_str(w.payments_kept);
    }
    let keyboard = InlineKeyboardMarkup::new([[
        InlineKeyboardButton::callback(w.yes, Callback::ForgetMeConfirm.encode()),
        InlineKeyboardButton::callback(w.no, Callback::ForgetMeCancel.encode()),
    ]]);
    ctx.show(screen, text, keyboard).await?;
    Ok(())
}

/// "No": nothing happens, and the user is told so.
pub(in crate::bot) async fn cancel(ctx: &Ctx, screen: Screen) -> Result<Answer, BotError> {
    let w = words(ctx.lang);
    ctx.show(screen, w.cancelled.to_owned(), ctx.main_menu())
        .await?;
    Ok(Answer::Silent)
}

/// "Yes": erase, then one last message saying what was erased.
pub(in crate::bot) async fn confirm(ctx: &Ctx, dialogue: &BotDialogue) -> Result<Answer, BotError> {
    let w = words(ctx.lang);
    // The dialogue goes first: the erasure removes its row, and nothing may write it again.
    dialogue.reset().await?;
    match erase_user(
        &ctx.deps.store,
        ctx.user,
        Requester::User,
        "requested in the bot",
    )
    .await
    {
        Ok(report) => {
            ctx.say((w.done)(&report), None).await?;
            Ok(Answer::Silent)
        }
        Err(e) => {
            tracing::error!(user = ctx.user, error = %crate::telemetry::chain(&e), "erasure requested in the bot did not finish");
            Ok(Answer::Alert(w.failed.to_owned()))
        }
    }
}
