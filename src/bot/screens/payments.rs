//! Selling credits for Telegram Stars: the pack list, invoices, the pre-checkout answer, crediting
//! a successful payment exactly once, and the balance, support and terms screens; refunds
//! ([`refunds`]) and promo codes ([`promo`]) have their own modules.
//!
//! With `PAYMENTS=off` every screen here answers that payments are off and nothing else happens;
//! a payment that still arrives (an invoice sent before the switch) is credited all the same,
//! since the user has paid.

use std::sync::Arc;
use std::time::Duration;

use aggregates::{AccountAction, AccountCommand, AccountError, Actor};
use chrono::Utc;
use teloxide::dptree::{self, case};
use teloxide::prelude::*;
use teloxide::types::{LabeledPrice, PreCheckoutQuery};
use uuid::Uuid;

use crate::bot::callbacks::Callback;
use crate::bot::ctx::{Ctx, Screen};
use crate::bot::keyboards as kb;
use crate::bot::press::{Answer, Buttons};
use crate::bot::pricing::{InvoicePayload, STARS};
use crate::bot::send::{retrying, sending};
use crate::bot::texts::Lang;
use crate::bot::{BotDeps, BotDialogue, BotError, HandlerResult, TgBot};
use crate::store::accounts::{AccountStoreError, ExecutedAccount};

mod promo;
mod refunds;

pub(in crate::bot) use promo::{ask as ask_promo, redeem as redeem_promo};
pub use refunds::{charge_tag, star_refunds, TelegramStarRefunds};
pub(in crate::bot) use refunds::{request_refund, show_refunds};

/// The movements the balance screen lists.
const BALANCE_MOVEMENTS: usize = 5;
/// Who records what Telegram reports about payments, in the ledger's metadata.
const PAYMENTS_ACTOR: &str = "telegram-payments";
/// Attempts at recording a payment when the database fails: Telegram does not deliver the
/// update again once it is confirmed, so a passing outage must not lose a purchase.
const RECORD_ATTEMPTS: u32 = 4;

/// The buttons of the credits screens.
pub(in crate::bot) fn buttons() -> Buttons {
    dptree::entry()
        .branch(
            case![Callback::Buy].endpoint(|ctx: Ctx, screen: Screen| async move {
                show_packs(&ctx, screen).await?;
                Ok(Answer::Silent)
            }),
        )
        .branch(
            case![Callback::BuyPack(pack)]
                .endpoint(|ctx: Ctx, pack| async move { send_invoice(&ctx, pack).await }),
        )
        .branch(
            case![Callback::Refunds].endpoint(|ctx: Ctx, screen: Screen| async move {
                show_refunds(&ctx, screen).await?;
                Ok(Answer::Silent)
            }),
        )
        .branch(case![Callback::Refund { charge }].endpoint(
            |ctx: Ctx, screen: Screen, charge: u32| async move {
                request_refund(&ctx, screen, charge).await
            },
        ))
        .branch(
            case![Callback::Promo].endpoint(|ctx: Ctx, dialogue: BotDialogue| async move {
                ask_promo(&ctx, &dialogue).await?;
                Ok(Answer::Silent)
            }),
        )
}

/// The text after "🎟 Promo code": the code to redeem.
pub(in crate::bot) async fn on_promo_code(
    ctx: Ctx,
    dialogue: BotDialogue,
    msg: Message,
) -> HandlerResult {
    let Some(code) = msg.text().filter(|text| !text.starts_with('/')) else {
        ctx.say(ctx.t().ledger().promo_ask(), None).await?;
        return Ok(());
    };
    dialogue.reset().await?;
    redeem_promo(&ctx, code).await?;
    Ok(())
}

/// The packs on sale (`/buy`, "Buy credits").
pub(in crate::bot) async fn show_packs(ctx: &Ctx, screen: Screen) -> Result<(), BotError> {
    let t = ctx.t();
    if !ctx.deps.payments.enabled() {
        ctx.say(t.payments_off(), None).await?;
        return Ok(());
    }
    let available = ctx.deps.accounts.load(ctx.user).await?.available();
    ctx.show(
        screen,
        t.choose_credit_pack(available),
        kb::credit_packs(t, &ctx.deps.payments.packs),
    )
    .await?;
    Ok(())
}

/// A pack button: the invoice for it, if the pack is still on sale exactly so.
pub(in crate::bot) async fn send_invoice(
    ctx: &Ctx,
    pack: crate::bot::pricing::CreditPack,
) -> Result<Answer, BotError> {
    let t = ctx.t();
    if !ctx.deps.payments.enabled() {
        return Ok(Answer::Alert(t.payments_off()));
    }
    if !ctx.deps.payments.packs.offers(pack) {
        tracing::info!(
            user = ctx.user,
            pack = %pack.name(),
            "a pack button for a pack not on sale"
        );
        return Ok(Answer::Alert(t.pack_unavailable()));
    }
    let payload = InvoicePayload::new(pack).to_string();
    // Stars: no provider token, exactly one price, whole Stars.
    sending(&ctx.deps.limiter, ctx.chat, 1, "sendInvoice", || {
        ctx.bot
            .send_invoice(
                ctx.chat,
                t.invoice_title(pack),
                t.invoice_description(pack),
                payload.clone(),
                STARS,
                [LabeledPrice::new(t.invoice_label(pack), pack.stars)],
            )
            .send()
    })
    .await?;
    tracing::info!(user = ctx.user, pack = %pack.name(), "invoice sent");
    metrics::counter!("invoices_sent_total").increment(1);
    Ok(Answer::Silent)
}

/// Why a checkout is declined, for the log.
fn checkout_refusal(deps: &BotDeps, query: &PreCheckoutQuery) -> Option<&'static str> {
    if !deps.payments.enabled() {
        return Some("payments are off");
    }
    if query.currency != STARS {
        return Some("not in Stars");
    }
    let Ok(payload) = query.invoice_payload.parse::<InvoicePayload>() else {
        return Some("payload is not a pack");
    };
    if !deps.payments.packs.offers(payload.pack) {
        return Some("pack not on sale");
    }
    if payload.pack.stars != query.total_amount {
        return Some("amount differs from the pack's price");
    }
    None
}

/// Telegram asks whether to take the Stars; it cancels the payment unless answered within ten
/// seconds, so this only checks the invoice against the configuration, without the database.
pub async fn on_pre_checkout(
    bot: TgBot,
    deps: Arc<BotDeps>,
    query: PreCheckoutQuery,
) -> HandlerResult {
    let t = Lang::from_code(query.from.language_code.as_deref()).texts();
    let user = query.from.id.0;
    let refusal = checkout_refusal(&deps, &query);
    let error_message = refusal.map(|_| {
        if deps.payments.enabled() {
            t.checkout_refused()
        } else {
            t.payments_off()
        }
    });
    retrying("answerPreCheckoutQuery", || {
        let mut request = bot.answer_pre_checkout_query(query.id.clone(), refusal.is_none());
        if let Some(message) = &error_message {
            request = request.error_message(message.clone());
        }
        request.send()
    })
    .await?;
    match refusal {
        None => tracing::info!(
            user,
            total_amount = query.total_amount,
            "pre-checkout approved"
        ),
        Some(reason) => {
            tracing::warn!(
                user,
                total_amount = query.total_amount,
                currency = %query.currency,
                reason,
                "pre-checkout declined"
            );
            metrics::counter!("checkouts_declined_total").increment(1);
        }
    }
    Ok(())
}

/// Telegram took the Stars: the pack's credits go to the payer's account, once per charge id
/// however often the message is delivered.
pub async fn on_successful_payment(bot: TgBot, deps: Arc<BotDeps>, msg: Message) -> HandlerResult {
    let (Some(from), Some(payment)) = (msg.from.as_ref(), msg.successful_payment()) else {
        return Ok(());
    };
    let ctx = Ctx::new(bot, deps, from, msg.chat.id).await;
    let t = ctx.t();
    let charge_id = payment.telegram_payment_charge_id.0.clone();
    let pack = payment
        .invoice_payload
        .parse::<InvoicePayload>()
        .ok()
        .map(|p| p.pack)
        .filter(|pack| payment.currency == STARS && pack.stars == payment.total_amount);
    let Some(pack) = pack else {
        // Not an invoice of ours as we send them: an operator has to look (and refund).
        tracing::error!(
            user = ctx.user,
            charge_id = %charge_id,
            total_amount = payment.total_amount,
            currency = %payment.currency,
            "a successful payment for an invoice the bot does not recognise; nothing credited"
        );
        ctx.say(t.purchase_not_credited(), None).await?;
        return Ok(());
    };
    let command = || {
        AccountCommand::new(
            Actor::System(PAYMENTS_ACTOR.into()),
            Utc::now(),
            AccountAction::RecordPurchase {
                pack: pack.name(),
                credits: pack.credits,
                stars: pack.stars,
                telegram_payment_charge_id: charge_id.clone(),
            },
        )
    };
    let recorded = record(&ctx, command).await;
    match recorded {
        Ok(done) if done.events.is_empty() => {
            tracing::info!(user = ctx.user, charge_id = %charge_id, "payment already credited");
        }
        Ok(done) => {
            tracing::info!(
                user = ctx.user,
                charge_id = %charge_id,
                credits = pack.credits,
                stars = pack.stars,
                available = done.state.available(),
                "purchase credited"
            );
            metrics::counter!("credits_purchased_total").increment(u64::from(pack.credits));
            ctx.say(
                t.purchase_credited(pack.credits, done.state.available()),
                Some(ctx.main_menu()),
            )
            .await?;
        }
        Err(e) => {
            tracing::error!(
                user = ctx.user,
                charge_id = %charge_id,
                error = %crate::telemetry::chain(&e),
                "could not credit a successful payment"
            );
            ctx.say(t.purchase_not_credited(), None).await?;
        }
    }
    Ok(())
}

/// Runs a ledger command, retrying while the database fails (never a refusal).
async fn record(
    ctx: &Ctx,
    command: impl Fn() -> AccountCommand,
) -> Result<ExecutedAccount, AccountStoreError> {
    let mut attempt = 1;
    loop {
        match ctx
            .deps
            .accounts
            .execute(ctx.user, command(), Uuid::new_v4())
            .await
        {
            Err(e @ AccountStoreError::Rejected(_)) => return Err(e),
            Err(e) if attempt < RECORD_ATTEMPTS => {
                tracing::warn!(user = ctx.user, attempt, error = %crate::telemetry::chain(&e), "ledger write failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Telegram's notice that a payment was refunded: the ledger already holds the refund (the
/// refund worker recorded it before asking Telegram), so it is only logged.
pub async fn on_refunded_payment(msg: Message) -> HandlerResult {
    let refund = match &msg.kind {
        teloxide::types::MessageKind::RefundedPayment(r) => Some(&r.refunded_payment),
        _ => None,
    };
    tracing::info!(
        user = msg.from.as_ref().map(|u| u.id.0),
        charge_id = refund.map(|r| r.telegram_payment_charge_id.0.as_str()),
        total_amount = refund.map(|r| r.total_amount),
        currency = refund.map(|r| r.currency.as_str()),
        "Telegram confirmed a refund"
    );
    Ok(())
}

/// The welcome gift, once per account, when payments are on. A failure costs only the gift now
/// (the next /start tries again), so it is logged and the start goes on. Returns the account as
/// it is afterwards, for a caller that shows the balance (`None` when payments are off or the
/// account cannot be read).
pub(in crate::bot) async fn grant_welcome(ctx: &Ctx) -> Option<aggregates::Account> {
    if !ctx.deps.payments.enabled() {
        return None;
    }
    let account = match ctx.deps.accounts.load(ctx.user).await {
        Ok(account) => account,
        Err(e) => {
            tracing::warn!(user = ctx.user, error = %crate::telemetry::chain(&e), "could not read the account for the welcome gift");
            return None;
        }
    };
    let credits = ctx.deps.payments.welcome_credits;
    if account.welcome_granted || credits == 0 {
        return Some(account);
    }
    let command = AccountCommand::new(
        Actor::System("bot".into()),
        Utc::now(),
        AccountAction::GrantWelcome { credits },
    );
    match ctx
        .deps
        .accounts
        .execute(ctx.user, command, Uuid::new_v4())
        .await
    {
        Ok(done) => Some(done.state),
        // Granted meanwhile by a concurrent update of the same user.
        Err(AccountStoreError::Rejected(AccountError::WelcomeAlreadyGranted)) => {
            ctx.deps.accounts.load(ctx.user).await.ok()
        }
        Err(e) => {
            tracing::warn!(user = ctx.user, error = %crate::telemetry::chain(&e), "could not grant the welcome credits");
            Some(account)
        }
    }
}

/// `/balance`: available and reserved credits and the latest movements.
pub(in crate::bot) async fn show_balance(ctx: &Ctx) -> Result<(), BotError> {
    let t = ctx.t();
    if !ctx.deps.payments.enabled() {
        ctx.say(t.payments_off(), None).await?;
        return Ok(());
    }
    grant_welcome(ctx).await;
    let loaded = ctx.deps.accounts.load_with_sequence(ctx.user).await?;
    let account = loaded.state;
    // The movements come from the money read model, which follows the ledger by a moment (the
    // balance itself is the account's own): give it that moment, then show what it has.
    crate::store::money::caught_up_to(
        &ctx.deps.db,
        ctx.user,
        loaded.sequence,
        Duration::from_secs(2),
    )
    .await?;
    let recent =
        crate::store::money::recent_movements(&ctx.deps.db, ctx.user, BALANCE_MOVEMENTS as i64)
            .await?;
    let movements: Vec<String> = recent
        .iter()
        .map(|movement| {
            format!(
                "{} · {}",
                movement.at.format("%d.%m.%Y %H:%M UTC"),
                t.movement(&movement.event)
            )
        })
        .collect();
    ctx.say(
        t.balance(account.available(), account.reserved(), &movements),
        Some(kb::credit_packs(t, &ctx.deps.payments.packs)),
    )
    .await?;
    Ok(())
}

/// `/paysupport`: who answers questions about payments.
pub(in crate::bot) async fn paysupport(ctx: &Ctx) -> Result<(), BotError> {
    let t = ctx.t();
    let text = if ctx.deps.payments.enabled() {
        t.paysupport(ctx.deps.payments.support_contact.as_deref())
    } else {
        t.payments_off()
    };
    ctx.say(text, None).await?;
    Ok(())
}

/// `/terms`: what credits are, and when a purchase is refunded.
pub(in crate::bot) async fn terms(ctx: &Ctx) -> Result<(), BotError> {
    let t = ctx.t();
    let text = if ctx.deps.payments.enabled() {
        t.terms(ctx.deps.payments.refund_window.as_secs() / (24 * 60 * 60))
    } else {
        t.payments_off()
    };
    ctx.say(text, None).await?;
    Ok(())
}
