//! `aisha credits …`: an operator's grant, a user's account, a refund (recorded here, its Stars
//! returned by the running server's refund worker) and the promo codes users redeem.

use std::process::ExitCode;
use std::time::Duration;

use aggregates::{AccountAction, AccountCommand, Actor};
use chrono::{NaiveDate, Utc};
use clap::Subcommand;
use uuid::Uuid;

use super::{not_blank, open_database, operator_name, CliError};
use crate::actors::refund::{self, RefundBy, RefundRequest};
use crate::actors::work::WorkQueue;
use crate::audit::render::{escape_for_terminal, render_account_history, render_table};
use crate::config::Config;
use crate::store::accounts::AccountStore;
use crate::store::promo::{PromoCodes, PromoError};
use crate::store::Database;

/// How many movements `credits show` prints.
pub const SHOWN_MOVEMENTS: usize = 20;

#[derive(Debug, Subcommand)]
pub enum CreditsCommand {
    /// Give a Telegram user credits (goodwill, compensation) and say why; prints the new balance.
    /// A user without an account gets one.
    Grant {
        /// The user's Telegram id.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        telegram_id: i64,
        /// How many credits (a whole number, at least 1).
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        credits: u32,
        /// Why the credits are given; recorded with the grant.
        #[arg(long, value_name = "WHY", value_parser = not_blank)]
        reason: String,
        /// Who grants them, for the record; the login name ($USER) if omitted.
        #[arg(long, value_name = "OPERATOR", value_parser = not_blank)]
        by: Option<String>,
    },
    /// A Telegram user's balance (available and reserved) and their last 20 movements.
    Show {
        /// The user's Telegram id.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        telegram_id: i64,
    },
    /// Refund a purchase and say why: the ledger takes its credits back now, and the running
    /// server's workers return its Stars through Telegram (retried until Telegram confirms).
    Refund {
        /// The user's Telegram id.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        telegram_id: i64,
        /// The purchase's Telegram payment charge id (`credits show` lists it).
        #[arg(value_parser = not_blank)]
        charge_id: String,
        /// Why the purchase is refunded; recorded with the refund.
        #[arg(long, value_name = "WHY", value_parser = not_blank)]
        reason: String,
        /// Who refunds, for the record; the login name ($USER) if omitted.
        #[arg(long, value_name = "OPERATOR", value_parser = not_blank)]
        by: Option<String>,
        /// The refund window to apply, in days from the purchase; REFUND_WINDOW_DAYS if omitted.
        #[arg(long, value_name = "DAYS")]
        window_days: Option<u64>,
    },
    /// Promo codes users redeem with `/promo CODE`: create one, or list them.
    Promo {
        #[command(subcommand)]
        command: PromoCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PromoCommand {
    /// Create a promo code (compared without case and surrounding spaces; once per user).
    Add {
        code: String,
        /// The credits one use grants.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000_000))]
        credits: u32,
        /// The last day (UTC) the code works; no end if omitted.
        #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day)]
        until: Option<chrono::NaiveDate>,
        /// How many users may redeem it; no limit if omitted.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000_000))]
        max_uses: Option<u32>,
        /// Who creates it, for the record; the login name ($USER) if omitted.
        #[arg(long, value_name = "OPERATOR", value_parser = not_blank)]
        by: Option<String>,
    },
    /// Every promo code with its uses.
    List,
}

/// `--until`: a calendar day.
pub fn parse_day(value: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|_| format!("`{value}` is not a day like 2026-12-31"))
}

/// Records the refund in the ledger, then enqueues the refund work item, which the running
/// server's workers carry out (its ledger step is then a no-op). Running the command again after
/// a crash in between enqueues the item the first run could not.
async fn refund_purchase(
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

async fn promo(db: &Database, command: PromoCommand) -> Result<(), CliError> {
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
            let operator = operator_name(by);
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

pub async fn credits_command(
    config: &Config,
    command: CreditsCommand,
) -> Result<ExitCode, CliError> {
    let store = AccountStore::new(open_database(config).await?);
    match command {
        CreditsCommand::Grant {
            telegram_id,
            credits,
            reason,
            by,
        } => {
            let operator = operator_name(by);
            let command = AccountCommand::new(
                Actor::Operator(operator),
                chrono::Utc::now(),
                AccountAction::GrantCredits { credits, reason },
            );
            let by = command.by.to_string();
            let done = store.execute(telegram_id, command, Uuid::new_v4()).await?;
            println!(
                "granted {credits} credits to {telegram_id} (by {}): {} available, {} reserved",
                escape_for_terminal(&by),
                done.state.available(),
                done.state.reserved()
            );
        }
        CreditsCommand::Refund {
            telegram_id,
            charge_id,
            reason,
            by,
            window_days,
        } => {
            let window = window_days
                .map(|days| std::time::Duration::from_secs(days.saturating_mul(24 * 60 * 60)))
                .unwrap_or(config.payments.refund_window);
            let operator = operator_name(by);
            refund_purchase(&store, telegram_id, charge_id, reason, operator, window).await?;
        }
        CreditsCommand::Promo { command } => promo(store.database(), command).await?,
        CreditsCommand::Show { telegram_id } => {
            let account = store.load(telegram_id).await?;
            let history = store.history(telegram_id).await?;
            println!(
                "account {telegram_id}: {} available, {} reserved",
                account.available(),
                account.reserved()
            );
            if history.is_empty() {
                println!("no movements yet");
            } else {
                println!(
                    "lifetime: {} granted, {} purchased, {} spent, {} refunded",
                    account.granted, account.purchased, account.spent, account.refunded
                );
                let shown = &history[history.len().saturating_sub(SHOWN_MOVEMENTS)..];
                println!("last {} of {} movements:", shown.len(), history.len());
                print!("{}", render_account_history(shown));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
