//! Refunds on the user's request: `/refund` (and the balance screen's button) lists the
//! purchases the ledger would refund now, one button each; a press enqueues the durable refund
//! ([`crate::actors::refund`]), whose worker records it, returns the Stars and tells the user.
//! [`TelegramStarRefunds`] is that worker's way to Telegram.
//!
//! Which purchases qualify is the Account aggregate's decision, asked on a copy of the account
//! (nothing is written), so the list and the ledger never disagree about the rules.

use std::sync::Arc;

use aggregates::{Account, AccountAction, AccountCommand, AccountError, Actor};
use chrono::Utc;
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use teloxide::adaptors::DefaultParseMode;
use teloxide::prelude::*;
use teloxide::types::{ParseMode, TelegramTransactionId};
use teloxide::{ApiError, RequestError};

use crate::actors::refund::{
    self, RefundBy, RefundCallError, RefundNotice, RefundRequest, StarRefunds,
};
use crate::actors::work::WorkQueue;
use crate::bot::ctx::{Ctx, Screen};
use crate::bot::keyboards as kb;
use crate::bot::press::Answer;
use crate::bot::send::{is_transient, is_unreachable_chat, sending};
use crate::bot::texts::{Lang, NoRefund};
use crate::bot::{BotDeps, BotError, Telegram, TgBot};

/// What Telegram answers to a second refund of one charge.
const ALREADY_REFUNDED: &str = "CHARGE_ALREADY_REFUNDED";

/// A charge id's tag for a button: Telegram's charge ids may not fit in callback data.
pub fn charge_tag(charge_id: &str) -> u32 {
    let digest = Sha256::digest(charge_id.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn days(ctx: &Ctx) -> u64 {
    ctx.deps.payments.refund_window.as_secs() / (24 * 60 * 60)
}

fn request_by_user(ctx: &Ctx, charge: &str) -> AccountCommand {
    AccountCommand::new(
        Actor::User(ctx.user),
        Utc::now(),
        AccountAction::RequestRefund {
            telegram_payment_charge_id: charge.to_owned(),
            window: ctx.deps.payments.refund_window,
        },
    )
}

/// What the account would do with `command` now: `Ok(true)` refund, `Ok(false)` nothing (the
/// purchase is refunded already), or its refusal. Decided on a copy; nothing is written.
async fn would_refund(account: &Account, command: AccountCommand) -> Result<bool, AccountError> {
    let mut copy = account.clone();
    let sink = EventSink::default();
    copy.handle(command, &(), &sink).await?;
    Ok(!sink.collect().await.is_empty())
}

/// `/refund`: the purchases that can be refunded now, or why there are none.
pub(in crate::bot) async fn show_refunds(ctx: &Ctx, screen: Screen) -> Result<(), BotError> {
    let t = ctx.t();
    let l = t.ledger();
    if !ctx.deps.payments.enabled() {
        ctx.say(t.payments_off(), None).await?;
        return Ok(());
    }
    let account = ctx.deps.accounts.load(ctx.user).await?;
    let mut purchases: Vec<_> = account.purchases.iter().collect();
    purchases.sort_by_key(|(_, p)| std::cmp::Reverse(p.at));
    let (mut items, mut spent, mut closed) = (Vec::new(), false, false);
    for (charge, purchase) in purchases {
        match would_refund(&account, request_by_user(ctx, charge)).await {
            Ok(true) => items.push((
                charge_tag(charge),
                l.refund_button(purchase.credits, purchase.stars, purchase.at),
            )),
            Ok(false) => {}
            Err(AccountError::PurchaseCreditsSpent { .. }) => spent = true,
            Err(AccountError::RefundWindowClosed { .. }) => closed = true,
            Err(other) => {
                tracing::warn!(user = ctx.user, charge_id = %charge, reason = %other, "a purchase the refund screen cannot offer");
            }
        }
    }
    if items.is_empty() {
        let why = if account.purchases.is_empty() {
            NoRefund::NoPurchases
        } else if spent {
            NoRefund::CreditsSpent
        } else if closed {
            NoRefund::WindowClosed
        } else {
            NoRefund::AllRefunded
        };
        ctx.show(screen, l.refund_none(why, days(ctx)), kb::to_menu(t))
            .await?;
    } else {
        ctx.show(screen, l.refund_choose(days(ctx)), kb::refunds(t, &items))
            .await?;
    }
    Ok(())
}

/// A purchase's refund button: checked against the ledger's rules now, then carried out by the
/// refund worker. Taps of one screen share one work item, so a double tap refunds once.
pub(in crate::bot) async fn request_refund(
    ctx: &Ctx,
    screen: Screen,
    tag: u32,
) -> Result<Answer, BotError> {
    let t = ctx.t();
    let l = t.ledger();
    if !ctx.deps.payments.enabled() {
        return Ok(Answer::Alert(t.payments_off()));
    }
    let loaded = ctx.deps.accounts.load_with_sequence(ctx.user).await?;
    let Some((charge, _)) = loaded
        .state
        .purchases
        .iter()
        .filter(|(charge, _)| charge_tag(charge) == tag)
        .min_by_key(|(_, p)| p.refunded)
    else {
        tracing::warn!(
            user = ctx.user,
            tag,
            "a refund button for no purchase of this user"
        );
        return Ok(Answer::Alert(t.stale_button().to_owned()));
    };
    match would_refund(&loaded.state, request_by_user(ctx, charge)).await {
        Ok(false) => return Ok(Answer::Alert(l.refund_already())),
        Err(refusal) => {
            tracing::info!(user = ctx.user, charge_id = %charge, reason = %refusal, "refund refused");
            ctx.show(screen, l.refund_refused(&refusal), kb::to_menu(t))
                .await?;
            return Ok(Answer::Silent);
        }
        Ok(true) => {}
    }
    let request = RefundRequest {
        telegram_id: ctx.user,
        telegram_payment_charge_id: charge.clone(),
        by: RefundBy::User,
        window_secs: ctx.deps.payments.refund_window.as_secs(),
    };
    let key = refund::enqueue(
        &WorkQueue::new(ctx.deps.db.clone()),
        &request,
        loaded.sequence,
    )
    .await?;
    tracing::info!(user = ctx.user, charge_id = %charge, %key, "refund requested");
    ctx.show(screen, l.refund_requested(), kb::to_menu(t))
        .await?;
    Ok(Answer::Silent)
}

/// The refund worker's way to Telegram: the bot's own client and send budgets.
pub struct TelegramStarRefunds {
    bot: TgBot,
    deps: Arc<BotDeps>,
}

/// What the actors use to return Stars and tell users, for a built bot.
pub fn star_refunds(telegram: &Telegram) -> Arc<dyn StarRefunds> {
    let deps = telegram.deps();
    Arc::new(TelegramStarRefunds {
        bot: DefaultParseMode::new(deps.downloader.clone(), ParseMode::Html),
        deps,
    })
}

/// Telegram's descriptions of refund errors are not in teloxide's list: a 400 ("Bad Request:
/// CHARGE_NOT_FOUND") will not change by itself, anything else may.
fn classify(error: &RequestError) -> RefundCallError {
    match error {
        RequestError::Api(ApiError::Unknown(text)) if text.starts_with("Bad Request") => {
            RefundCallError::Permanent(error.to_string())
        }
        _ if is_unreachable_chat(error) => RefundCallError::Permanent(error.to_string()),
        _ if is_transient(error) => RefundCallError::Transient(error.to_string()),
        _ => RefundCallError::Permanent(error.to_string()),
    }
}

impl StarRefunds for TelegramStarRefunds {
    fn refund_star_payment<'a>(
        &'a self,
        telegram_id: i64,
        charge_id: &'a str,
    ) -> BoxFuture<'a, Result<(), RefundCallError>> {
        Box::pin(async move {
            // Not `retrying`: it would retry Telegram's unlisted 400s as if they were 5xx, and
            // the work queue retries with backoff anyway.
            let result = self
                .bot
                .refund_star_payment(
                    UserId(telegram_id as u64),
                    TelegramTransactionId(charge_id.to_owned()),
                )
                .send()
                .await;
            match result {
                Ok(_) => Ok(()),
                Err(RequestError::Api(ApiError::Unknown(text)))
                    if text.contains(ALREADY_REFUNDED) =>
                {
                    tracing::info!(
                        telegram_id,
                        charge_id,
                        "Telegram had refunded this charge already"
                    );
                    Ok(())
                }
                Err(e) => Err(classify(&e)),
            }
        })
    }

    fn tell<'a>(
        &'a self,
        telegram_id: i64,
        notice: &'a RefundNotice,
    ) -> BoxFuture<'a, Result<(), RefundCallError>> {
        Box::pin(async move {
            let user = self
                .deps
                .users
                .get(telegram_id)
                .await
                .map_err(|e| RefundCallError::Transient(e.to_string()))?;
            let chat = ChatId(user.as_ref().map_or(telegram_id, |u| u.chat_id));
            let l = Lang::from_code(user.as_ref().and_then(|u| u.language_code.as_deref()))
                .texts()
                .ledger();
            let text = match notice {
                RefundNotice::Refunded { stars, credits } => l.refund_done(*stars, *credits),
                RefundNotice::Refused(refusal) => l.refund_refused(refusal),
                RefundNotice::NotReturned => l.refund_not_returned(),
            };
            sending(&self.deps.limiter, chat, 1, "sendMessage", || {
                self.bot.send_message(chat, text.clone()).send()
            })
            .await
            .map(drop)
            .map_err(|e| classify(&e))
        })
    }
}
