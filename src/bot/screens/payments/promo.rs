//! Redeeming promo codes: `/promo CODE`, or the balance screen's button and then the code. The use is
//! claimed in `promo_codes` first and the credits granted by the ledger second; a retry after a
//! crash in between finds its claim and completes the grant (see [`crate::store::promo`]).

use aggregates::account::normalize_promo_code;
use aggregates::{AccountAction, AccountCommand, AccountError, Actor};
use chrono::Utc;

use super::record;
use crate::bot::ctx::Ctx;
use crate::bot::BotError;
use crate::store::accounts::AccountStoreError;
use crate::store::promo::{Claim, PromoCodes, PromoRefusal};

/// The promo button: the next message is the code (`/cancel` leaves the step).
pub(in crate::bot) async fn ask(
    ctx: &Ctx,
    dialogue: &crate::bot::BotDialogue,
) -> Result<(), BotError> {
    let t = ctx.t();
    if !ctx.deps.payments.enabled() {
        ctx.say(t.payments_off(), None).await?;
        return Ok(());
    }
    dialogue
        .update(crate::bot::State::AwaitingPromoCode)
        .await?;
    ctx.say(t.ledger().promo_ask(), None).await?;
    Ok(())
}

/// `/promo CODE`.
pub(in crate::bot) async fn redeem(ctx: &Ctx, typed: &str) -> Result<(), BotError> {
    let t = ctx.t();
    let l = t.ledger();
    if !ctx.deps.payments.enabled() {
        ctx.say(t.payments_off(), None).await?;
        return Ok(());
    }
    let code = normalize_promo_code(typed);
    if code.is_empty() {
        ctx.say(l.promo_usage(), None).await?;
        return Ok(());
    }
    let refuse = |why: PromoRefusal| {
        tracing::info!(user = ctx.user, code = %code, ?why, "promo code refused");
        ctx.say(l.promo_refused(&code, why), None)
    };
    let promos = PromoCodes::new(ctx.deps.db.clone());
    let Some(promo) = promos.get(&code).await? else {
        refuse(PromoRefusal::Unknown).await?;
        return Ok(());
    };
    if ctx
        .deps
        .accounts
        .load(ctx.user)
        .await?
        .used_promo_codes
        .contains(&code)
    {
        refuse(PromoRefusal::AlreadyUsed).await?;
        return Ok(());
    }
    // A use claimed before (the grant was cut short) is completed whatever the code's state now.
    if !promos.used_by(&code, ctx.user).await? {
        if promo.expired(Utc::now()) {
            refuse(PromoRefusal::Expired).await?;
            return Ok(());
        }
        if promos.claim(&code, ctx.user).await? == Claim::UsedUp {
            refuse(PromoRefusal::UsedUp).await?;
            return Ok(());
        }
    }
    let command = || {
        AccountCommand::new(
            Actor::User(ctx.user),
            Utc::now(),
            AccountAction::RedeemPromoCode {
                code: code.clone(),
                credits: promo.credits,
            },
        )
    };
    match record(ctx, command).await {
        Ok(done) => {
            tracing::info!(user = ctx.user, code = %code, credits = promo.credits, "promo code redeemed");
            metrics::counter!("promo_codes_redeemed_total").increment(1);
            ctx.say(
                l.promo_redeemed(&code, promo.credits, done.state.available()),
                Some(ctx.main_menu()),
            )
            .await?;
        }
        Err(AccountStoreError::Rejected(AccountError::PromoCodeAlreadyUsed(_))) => {
            refuse(PromoRefusal::AlreadyUsed).await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
