//! `aisha credits refund` and `aisha credits promo`: an operator's refund (recorded here, its
//! Stars returned by the running server's refund worker) and the promo codes users redeem.

use std::time::Duration;

use aggregates::{AccountAction, AccountCommand, Actor};
use chrono::{NaiveDate, Utc};
use uuid::Uuid;

use super::{CliError, PromoCommand};
use crate::actors::refund::{self, RefundBy, RefundRequest};
use crate::actors::work::WorkQueue;
use crate::audit::render::{escape_for_terminal, render_table};
use crate::store::accounts::AccountStore;
use crate::store::promo::{PromoCodes, PromoError};
use crate::store::Database;

/// `--until`: a calendar day.
pub fn parse_day(value: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|_| format!("`{value}` is not a day like 2026-12-31"))
}

/// Records the refund in the ledger, then enqueues the refund work item, which the running
/// server's workers carry out (its ledger step is then a no-op). Running the command again after
/// a crash in between enqueues the item the first run could not.
pub async fn refund(
    store: &AccountStore,
    telegram_id: i64,
    charge_id: String,
    reason: String,
    operator: String,
    window: Duration,
) -> Result<(), CliError> {
    let command = AccountCommand::new(
        Actor::Operator(operator.clone()),
        Utc::now(),
        AccountAction::RefundPurchase {
            telegram_payment_charge_id: charge_id.clone(),
            window,
            reason: reason.clone(),
        },
    );
    let by = command.by.to_string();
    let done = store.execute(telegram_id, command, Uuid::new_v4()).await?;
    let purchase = done.state.purchases.get(&charge_id);
    let (credits, stars) = purchase.map_or((0, 0), |p| (p.credits, p.stars));
    let sequence = store.load_with_sequence(telegram_id).await?.sequence;
    let request = RefundRequest {
        telegram_id,
        telegram_payment_charge_id: charge_id.clone(),
        by: RefundBy::Operator { operator, reason },
        window_secs: window.as_secs(),
    };
    let key = refund::enqueue(
        &WorkQueue::new(store.database().clone()),
        &request,
        sequence,
    )
    .await?;
    let charge = escape_for_terminal(&charge_id);
    if done.events.is_empty() {
        println!("charge {charge} of {telegram_id} was refunded in the ledger already");
    } else {
        println!(
            "refunded charge {charge} of {telegram_id} (by {}): {credits} credits taken back, {} available",
            escape_for_terminal(&by),
            done.state.available()
        );
    }
    println!(
        "the running server returns the {stars} Stars through Telegram and tells the user (work item {})",
        escape_for_terminal(&key)
    );
    Ok(())
}

pub async fn promo(db: &Database, command: PromoCommand) -> Result<(), CliError> {
    let promos = PromoCodes::new(db.clone());
    match command {
        PromoCommand::Add {
            code,
            credits,
            until,
            max_uses,
            by,
        } => {
            // The code works through its last day (UTC).
            let expires_at = until
                .and_then(|day| day.succ_opt())
                .and_then(|day| day.and_hms_opt(0, 0, 0))
                .map(|at| at.and_utc());
            let operator = super::operator_name(by);
            let added = promos
                .add(&code, credits, expires_at, max_uses, &operator)
                .await?;
            println!(
                "promo code {} added: {} credits per use, {}, {}",
                escape_for_terminal(&added.code),
                added.credits,
                added
                    .max_uses
                    .map_or("any number of users".to_owned(), |m| format!(
                        "at most {m} users"
                    )),
                until.map_or("no end".to_owned(), |d| format!("until {d} (UTC)"))
            );
        }
        PromoCommand::List => {
            let all = promos.list().await.map_err(PromoError::from)?;
            if all.is_empty() {
                println!("no promo codes yet");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|p| {
                    vec![
                        escape_for_terminal(&p.code),
                        p.credits.to_string(),
                        match p.max_uses {
                            Some(max) => format!("{}/{max}", p.uses),
                            None => p.uses.to_string(),
                        },
                        p.expires_at
                            .map_or("-".to_owned(), |at| at.format("%Y-%m-%d %H:%M").to_string()),
                        escape_for_terminal(&p.created_by),
                    ]
                })
                .collect();
            print!(
                "{}",
                render_table(&["code", "credits", "uses", "expires (UTC)", "by"], &rows)
            );
        }
    }
    Ok(())
}
