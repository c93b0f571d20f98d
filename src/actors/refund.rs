//! Refunding a purchase paid in Stars, crash-safe and exactly once: a durable work item (keyed by
//! the charge) records the refund in the ledger, then asks Telegram to return the Stars, then
//! tells the user; each step survives a crash and is retried until it succeeds.
//!
//! The ledger command is idempotent (a purchase is refunded once), `refundStarPayment` answers
//! "already refunded" to a repeat (which counts as done), and the item's phase remembers how far
//! it got, so a retried item never takes credits twice and the Stars go back once.

use std::sync::Arc;
use std::time::Duration;

use aggregates::{AccountAction, AccountCommand, AccountError, Actor};
use chrono::Utc;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::work::{WorkItem, WorkQueue};
use super::{ActorSettings, Outcome, WorkHandler};
use crate::store::accounts::{AccountStore, AccountStoreError};
use crate::store::StoreError;

pub const KIND: &str = "refund";

/// The ledger holds the refund; the Stars are still to be returned.
const PHASE_RECORDED: &str = "recorded";
/// Telegram returned the Stars; the user is still to be told.
const PHASE_RETURNED: &str = "returned";

/// Who asked for a refund, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RefundBy {
    /// The user, from the bot's refund screen.
    User,
    /// An operator (`aisha credits refund`), with a reason.
    Operator { operator: String, reason: String },
}

/// One refund to carry out: the payload of a [`KIND`] work item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    pub telegram_id: i64,
    pub telegram_payment_charge_id: String,
    pub by: RefundBy,
    /// The refund window the ledger applies, counted from the purchase.
    pub window_secs: u64,
}

impl RefundRequest {
    fn command(&self) -> AccountCommand {
        let window = Duration::from_secs(self.window_secs);
        let charge = self.telegram_payment_charge_id.clone();
        let (by, action) = match &self.by {
            RefundBy::User => (
                Actor::User(self.telegram_id),
                AccountAction::RequestRefund {
                    telegram_payment_charge_id: charge,
                    window,
                },
            ),
            RefundBy::Operator { operator, reason } => (
                Actor::Operator(operator.clone()),
                AccountAction::RefundPurchase {
                    telegram_payment_charge_id: charge,
                    window,
                    reason: reason.clone(),
                },
            ),
        };
        AccountCommand::new(by, Utc::now(), action)
    }
}

/// The work item's key. `account_sequence` is the account's last event when the refund was
/// asked for: taps on one screen (a double tap) share it and so are one item, while a new request
/// after a refusal (the credits came back, an operator extends the window) is a new one.
pub fn key(charge_id: &str, account_sequence: u64) -> String {
    format!("refund:{charge_id}:{account_sequence}")
}

/// Enqueues a refund; a key seen before is ignored, so a double tap enqueues once.
pub async fn enqueue(
    queue: &WorkQueue,
    request: &RefundRequest,
    account_sequence: u64,
) -> Result<String, StoreError> {
    let key = key(&request.telegram_payment_charge_id, account_sequence);
    queue.enqueue_now(KIND, &key, Uuid::nil(), request).await?;
    Ok(key)
}

/// What the user hears about their refund.
#[derive(Debug, Clone, PartialEq)]
pub enum RefundNotice {
    /// The Stars are back and the credits left the balance.
    Refunded { stars: u32, credits: u32 },
    /// The ledger refused the refund the user asked for.
    Refused(AccountError),
    /// Telegram refused to return the Stars for good; an operator has to look.
    NotReturned,
}

/// Why a Telegram call of a refund did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RefundCallError {
    /// Worth another try later (network, rate limit, no bot in this process).
    #[error("transient: {0}")]
    Transient(String),
    /// Will never work (an unknown charge, a user who blocked the bot).
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Telegram's side of a refund (the bot in production).
pub trait StarRefunds: Send + Sync + 'static {
    /// `refundStarPayment`; a charge Telegram reports as already refunded is `Ok`.
    fn refund_star_payment<'a>(
        &'a self,
        telegram_id: i64,
        charge_id: &'a str,
    ) -> BoxFuture<'a, Result<(), RefundCallError>>;
    /// Tells the user how their refund went, in their language.
    fn tell<'a>(
        &'a self,
        telegram_id: i64,
        notice: &'a RefundNotice,
    ) -> BoxFuture<'a, Result<(), RefundCallError>>;
}

/// Without a bot nothing can be returned: the items wait (retried with backoff) for a process
/// that has one.
pub struct NoStarRefunds;

impl StarRefunds for NoStarRefunds {
    fn refund_star_payment<'a>(
        &'a self,
        _telegram_id: i64,
        _charge_id: &'a str,
    ) -> BoxFuture<'a, Result<(), RefundCallError>> {
        Box::pin(async {
            Err(RefundCallError::Transient(
                "no Telegram bot in this process".into(),
            ))
        })
    }

    fn tell<'a>(
        &'a self,
        telegram_id: i64,
        notice: &'a RefundNotice,
    ) -> BoxFuture<'a, Result<(), RefundCallError>> {
        Box::pin(async move {
            tracing::info!(telegram_id, ?notice, "refund notice (no bot attached)");
            Ok(())
        })
    }
}

/// Runs [`KIND`] items.
pub struct RefundHandler {
    pub accounts: Arc<AccountStore>,
    pub queue: WorkQueue,
    pub telegram: Arc<dyn StarRefunds>,
}

impl RefundHandler {
    pub fn new(services: &super::Services) -> Self {
        Self {
            accounts: services.accounts.clone(),
            queue: services.queue.clone(),
            telegram: services.refunds.clone(),
        }
    }

    async fn tell(&self, request: &RefundRequest, notice: &RefundNotice) -> Outcome {
        match self.telegram.tell(request.telegram_id, notice).await {
            Ok(()) => Outcome::Done,
            Err(RefundCallError::Transient(e)) => Outcome::Retry(e),
            // The refund itself is done; a user who cannot be reached is only logged.
            Err(RefundCallError::Permanent(e)) => {
                tracing::warn!(telegram_id = request.telegram_id, error = %e, "could not tell the user about their refund");
                Outcome::Done
            }
        }
    }
}

impl WorkHandler for RefundHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    /// Until it succeeds: credits already taken must come back as Stars.
    fn max_attempts(&self, _settings: &ActorSettings) -> Option<i32> {
        None
    }

    fn run<'a>(&'a self, item: &'a WorkItem) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(async move {
            let request: RefundRequest = item.payload()?;
            let charge = request.telegram_payment_charge_id.as_str();
            let telegram_id = request.telegram_id;
            let mut phase = item.phase.clone();

            if phase.is_none() {
                match self
                    .accounts
                    .execute(telegram_id, request.command(), Uuid::new_v4())
                    .await
                {
                    Ok(done) => {
                        tracing::info!(telegram_id, charge_id = %charge, recorded = !done.events.is_empty(), "refund recorded in the ledger");
                    }
                    Err(AccountStoreError::Rejected(refusal)) => {
                        tracing::info!(telegram_id, charge_id = %charge, reason = %refusal, "refund refused");
                        if request.by != RefundBy::User {
                            return Ok(Outcome::Failed(format!("refused: {refusal}")));
                        }
                        return Ok(self.tell(&request, &RefundNotice::Refused(refusal)).await);
                    }
                    Err(e) => return Ok(Outcome::Retry(crate::telemetry::chain(&e))),
                }
                self.queue.set_phase(item, Some(PHASE_RECORDED)).await?;
                phase = Some(PHASE_RECORDED.into());
            }

            if phase.as_deref() == Some(PHASE_RECORDED) {
                match self.telegram.refund_star_payment(telegram_id, charge).await {
                    Ok(()) => {
                        tracing::info!(telegram_id, charge_id = %charge, "Stars returned");
                        metrics::counter!("refunds_total").increment(1);
                    }
                    Err(RefundCallError::Transient(e)) => return Ok(Outcome::Retry(e)),
                    Err(RefundCallError::Permanent(e)) => {
                        tracing::error!(telegram_id, charge_id = %charge, error = %e,
                            "Telegram refused to return the Stars of a refund the ledger holds; an operator must look");
                        let _ = self.tell(&request, &RefundNotice::NotReturned).await;
                        return Ok(Outcome::Failed(e));
                    }
                }
                self.queue.set_phase(item, Some(PHASE_RETURNED)).await?;
            }

            let (stars, credits) = match self.accounts.load(telegram_id).await {
                Ok(account) => account
                    .purchases
                    .get(charge)
                    .map(|p| (p.stars, p.credits))
                    .unwrap_or_default(),
                Err(e) => return Ok(Outcome::Retry(crate::telemetry::chain(&e))),
            };
            Ok(self
                .tell(&request, &RefundNotice::Refunded { stars, credits })
                .await)
        })
    }
}
