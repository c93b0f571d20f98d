//! Commands to an account: who asks, when, and what. Amounts arrive already priced by the binary's
//! configuration; the account records exactly what it is told to reserve.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::{ReleaseReason, ReservationPurpose};
use crate::values::Actor;

/// A command to an account: who asks, when (also the "now" of every time rule), and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountCommand {
    pub by: Actor,
    pub at: DateTime<Utc>,
    pub action: AccountAction,
}

impl AccountCommand {
    pub fn new(by: Actor, at: DateTime<Utc>, action: AccountAction) -> Self {
        Self { by, at, action }
    }

    /// The command's name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        self.action.name()
    }
}

/// Everything an account can be asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AccountAction {
    /// The bot's first contact with a user: the welcome gift, once per account.
    GrantWelcome { credits: u32 },
    /// The user typed a promo code the binary knows; `credits` is what the configuration gives
    /// for it. Codes compare without case and surrounding spaces.
    RedeemPromoCode { code: String, credits: u32 },
    /// An operator gives credits (goodwill, compensation) and says why.
    GrantCredits { credits: u32, reason: String },
    /// Telegram reported `successful_payment` for a pack of credits paid in Stars.
    RecordPurchase {
        /// The pack's name from the invoice payload, as configured.
        pack: String,
        credits: u32,
        stars: u32,
        telegram_payment_charge_id: String,
    },
    /// Hold `credits` (the price shown to the user) before paid work starts.
    Reserve {
        reservation_id: Uuid,
        credits: u32,
        purpose: ReservationPurpose,
    },
    /// The paid work was delivered: the held credits are spent.
    Capture { reservation_id: Uuid },
    /// The paid work will not be delivered: the held credits come back.
    Release {
        reservation_id: Uuid,
        reason: ReleaseReason,
    },
    /// The user asks for the Stars of a purchase back; `window` is the configured refund period
    /// counted from the purchase.
    RequestRefund {
        telegram_payment_charge_id: String,
        window: Duration,
    },
    /// An operator refunds a purchase and says why; the operator chooses the window to apply.
    RefundPurchase {
        telegram_payment_charge_id: String,
        window: Duration,
        reason: String,
    },
}

impl AccountAction {
    pub fn name(&self) -> &'static str {
        match self {
            Self::GrantWelcome { .. } => "grant_welcome",
            Self::RedeemPromoCode { .. } => "redeem_promo_code",
            Self::GrantCredits { .. } => "grant_credits",
            Self::RecordPurchase { .. } => "record_purchase",
            Self::Reserve { .. } => "reserve",
            Self::Capture { .. } => "capture",
            Self::Release { .. } => "release",
            Self::RequestRefund { .. } => "request_refund",
            Self::RefundPurchase { .. } => "refund_purchase",
        }
    }
}
