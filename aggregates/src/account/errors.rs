//! Every way an account can refuse a command, one variant per rule.

use chrono::{DateTime, Utc};
use thiserror::Error;
use uuid::Uuid;

/// Why the Account aggregate refused a command.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AccountError {
    #[error("{actor} may not {action}")]
    NotPermitted {
        actor: &'static str,
        action: &'static str,
    },
    #[error("a user may only act on their own account")]
    NotOwner,
    #[error("an amount of credits must be positive")]
    ZeroCredits,
    #[error("a purchase must have cost some Stars")]
    ZeroStars,
    #[error("the welcome credits were already granted")]
    WelcomeAlreadyGranted,
    #[error("the promo code is empty")]
    EmptyPromoCode,
    #[error("promo code {0} was already used on this account")]
    PromoCodeAlreadyUsed(String),
    #[error("an operator must give a reason")]
    EmptyReason,
    #[error("the payment has no Telegram charge id")]
    EmptyChargeId,
    #[error("not enough credits: {needed} needed, {balance} available")]
    InsufficientCredits { needed: u32, balance: u64 },
    #[error("reservation {0} already exists with other credits or another purpose")]
    ReservationConflict(Uuid),
    #[error("there is no reservation {0} on this account")]
    UnknownReservation(Uuid),
    #[error("reservation {0} was already captured")]
    ReservationAlreadyCaptured(Uuid),
    #[error("reservation {0} was already released")]
    ReservationAlreadyReleased(Uuid),
    #[error("there is no purchase with charge id {0} on this account")]
    UnknownPurchase(String),
    #[error("the refund window closed at {closed_at} (purchased at {purchased_at})")]
    RefundWindowClosed {
        purchased_at: DateTime<Utc>,
        closed_at: DateTime<Utc>,
    },
    #[error("the purchase's {needed} credits are no longer unspent: {available} available")]
    PurchaseCreditsSpent { needed: u32, available: u64 },
}
