//! Purchases Telegram took but the ledger never heard of: a process that died after Telegram
//! delivered `successful_payment` and before it was recorded loses that update for good, since
//! Telegram does not send it again. Telegram's own list of the bot's Star transactions
//! (`getStarTransactions`) is the record of what was paid, so it is read at start and then
//! periodically, and every incoming invoice payment of ours is recorded under its charge id;
//! one already in the ledger is a no-op there, so nothing is ever credited twice.

use std::sync::Arc;
use std::time::Duration;

use aggregates::{AccountAction, AccountCommand, Actor};
use teloxide::prelude::*;
use teloxide::types::{StarTransaction, TransactionPartner, TransactionPartnerUserKind};
use uuid::Uuid;

use super::pricing::{InvoicePayload, STARS};
use super::send::retrying;
use super::{BotDeps, BotError, TgBot};

/// How often the bot compares Telegram's transactions with the ledger.
pub const EVERY: Duration = Duration::from_secs(300);
/// Telegram returns at most 100 transactions a call.
const PAGE: u8 = 100;
/// The system actor recorded on purchases found this way.
const RECONCILE_ACTOR: &str = "telegram-star-transactions";

/// Reconciles now and then every [`EVERY`] until the task is dropped.
pub async fn run(bot: TgBot, deps: Arc<BotDeps>, every: Duration) {
    loop {
        match reconcile(&bot, &deps).await {
            Ok(0) => tracing::debug!("every Star payment is in the ledger"),
            Ok(found) => tracing::warn!(found, "credited Star payments the bot had not recorded"),
            Err(e) => tracing::warn!(error = %crate::telemetry::chain(&e),
                "could not compare Telegram's Star transactions with the ledger; will try again"),
        }
        tokio::time::sleep(every).await;
    }
}

/// One pass over Telegram's transactions; returns how many purchases it recorded.
pub async fn reconcile(bot: &TgBot, deps: &BotDeps) -> Result<usize, BotError> {
    let mut offset = 0;
    let mut found = 0;
    loop {
        let page = retrying("getStarTransactions", || {
            bot.get_star_transactions()
                .offset(offset)
                .limit(PAGE)
                .send()
        })
        .await?;
        let count = page.transactions.len() as u32;
        // Only the payments the read model does not know go to the ledger: every pass reads all
        // of Telegram's list, and loading each account for a no-op would grow with it.
        let charges: Vec<String> = page.transactions.iter().map(|t| t.id.0.clone()).collect();
        let known = crate::store::money::recorded_purchases(&deps.db, &charges).await?;
        for transaction in page
            .transactions
            .iter()
            .filter(|t| !known.contains(&t.id.0))
        {
            if record(bot, deps, transaction).await? {
                found += 1;
            }
        }
        if count < u32::from(PAGE) {
            return Ok(found);
        }
        offset += count;
    }
}

/// Records one transaction if it is a user's payment for one of our invoices; true if the
/// ledger did not have it yet.
async fn record(
    bot: &TgBot,
    deps: &BotDeps,
    transaction: &StarTransaction,
) -> Result<bool, BotError> {
    let Some(TransactionPartner::User(partner)) = &transaction.source else {
        return Ok(false);
    };
    let TransactionPartnerUserKind::InvoicePayment(invoice) = &partner.kind else {
        return Ok(false);
    };
    let pack = invoice
        .invoice_payload
        .as_deref()
        .and_then(|p| p.parse::<InvoicePayload>().ok())
        .map(|p| p.pack)
        .filter(|pack| pack.stars == transaction.amount);
    let Some(pack) = pack else {
        return Ok(false);
    };
    let user = partner.user.id.0 as i64;
    let charge_id = transaction.id.0.clone();
    let command = AccountCommand::new(
        Actor::System(RECONCILE_ACTOR.into()),
        transaction.date,
        AccountAction::RecordPurchase {
            pack: pack.name(),
            credits: pack.credits,
            stars: pack.stars,
            telegram_payment_charge_id: charge_id.clone(),
        },
    );
    let done = deps.accounts.execute(user, command, Uuid::new_v4()).await?;
    if done.events.is_empty() {
        return Ok(false);
    }
    tracing::warn!(user, charge_id = %charge_id, credits = pack.credits, stars = pack.stars,
        currency = STARS, "a paid purchase was missing from the ledger; credited it now");
    metrics::counter!("credits_purchased_total").increment(u64::from(pack.credits));
    let lang = deps
        .users
        .get(user)
        .await
        .ok()
        .flatten()
        .map_or(super::texts::Lang::default(), |u| u.lang());
    let text = lang
        .texts()
        .purchase_credited(pack.credits, done.state.available());
    // The credits are recorded either way; a message that does not go out costs only the news.
    let chat = ChatId(user);
    let sent = super::send::sending(&deps.limiter, chat, 1, "sendMessage", || {
        bot.send_message(chat, text.clone()).send()
    })
    .await;
    if let Err(e) = sent {
        tracing::warn!(user, error = %crate::telemetry::chain(&e), "could not tell the user about a reconciled purchase");
    }
    Ok(true)
}
