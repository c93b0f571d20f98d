//! Events: what happened to an account's credits, in the past tense. Each event states its own
//! amount, so the ledger can be summed without replaying the rules (see [`balance_from_events`]).
//! No event names the Telegram user: that id lives only in the aggregate id.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::presets::{GenerationPreset, TrainingPreset};

/// Where granted (not bought) credits came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GrantSource {
    Welcome,
    /// The code as normalised (trimmed, upper case), so one code is one use whatever its spelling.
    PromoCode {
        code: String,
    },
    Operator {
        operator: String,
        reason: String,
    },
}

/// What reserved credits pay for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReservationPurpose {
    Training {
        avatar_id: Uuid,
        preset: TrainingPreset,
    },
    Generation {
        avatar_id: Uuid,
        generation_id: Uuid,
        preset: Option<GenerationPreset>,
        images: u32,
    },
}

impl ReservationPurpose {
    /// The avatar the paid work is for (its deletion releases the reservation).
    pub fn avatar_id(&self) -> Uuid {
        match self {
            Self::Training { avatar_id, .. } | Self::Generation { avatar_id, .. } => *avatar_id,
        }
    }
}

/// Why held credits came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    /// The training or generation failed.
    Failed,
    /// The user (or the bot for them) cancelled before the work was delivered.
    Cancelled,
    /// We gave up waiting for the result.
    DeadlinePassed,
    /// The avatar was deleted while the work was pending.
    AvatarDeleted,
    /// The work was refused before it started (e.g. the avatar's rules said no).
    Refused,
}

/// Who asked for a refund. A user is not named: the account is theirs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RefundRequester {
    User,
    Operator { operator: String, reason: String },
}

/// Everything that can happen to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum AccountEvent {
    CreditsGranted {
        credits: u32,
        source: GrantSource,
        at: DateTime<Utc>,
    },
    CreditsPurchased {
        pack: String,
        credits: u32,
        stars: u32,
        telegram_payment_charge_id: String,
        at: DateTime<Utc>,
    },
    /// Credits left the available balance and are held for one piece of paid work.
    CreditsReserved {
        reservation_id: Uuid,
        credits: u32,
        purpose: ReservationPurpose,
        at: DateTime<Utc>,
    },
    /// The held credits are spent; `credits` repeats what was reserved.
    ReservationCaptured {
        reservation_id: Uuid,
        credits: u32,
        at: DateTime<Utc>,
    },
    /// The held credits are available again; `credits` repeats what was reserved.
    ReservationReleased {
        reservation_id: Uuid,
        credits: u32,
        reason: ReleaseReason,
        at: DateTime<Utc>,
    },
    /// The purchase's credits left the balance; the binary now returns its Stars through Telegram.
    PurchaseRefunded {
        telegram_payment_charge_id: String,
        credits: u32,
        stars: u32,
        by: RefundRequester,
        at: DateTime<Utc>,
    },
}

impl AccountEvent {
    /// When it happened.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::CreditsGranted { at, .. }
            | Self::CreditsPurchased { at, .. }
            | Self::CreditsReserved { at, .. }
            | Self::ReservationCaptured { at, .. }
            | Self::ReservationReleased { at, .. }
            | Self::PurchaseRefunded { at, .. } => *at,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::CreditsGranted { .. } => "CreditsGranted",
            Self::CreditsPurchased { .. } => "CreditsPurchased",
            Self::CreditsReserved { .. } => "CreditsReserved",
            Self::ReservationCaptured { .. } => "ReservationCaptured",
            Self::ReservationReleased { .. } => "ReservationReleased",
            Self::PurchaseRefunded { .. } => "PurchaseRefunded",
        }
    }

    /// How this event moves the available balance. A capture moves nothing: its credits already
    /// left the available balance when they were reserved.
    pub fn available_delta(&self) -> i64 {
        match self {
            Self::CreditsGranted { credits, .. }
            | Self::CreditsPurchased { credits, .. }
            | Self::ReservationReleased { credits, .. } => i64::from(*credits),
            Self::CreditsReserved { credits, .. } | Self::PurchaseRefunded { credits, .. } => {
                -i64::from(*credits)
            }
            Self::ReservationCaptured { .. } => 0,
        }
    }
}

/// The available balance as the plain sum of the ledger's movements, for auditors: it must equal
/// [`Account::available`](super::Account::available) after the same events, and never dip below
/// zero along the way.
pub fn balance_from_events(events: &[AccountEvent]) -> i64 {
    events.iter().map(AccountEvent::available_delta).sum()
}

/// Version of every account event shape today; bump one event's version (and add an upcaster in
/// the store) when its shape changes.
pub const EVENT_VERSION: &str = "1";

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        self.name().to_owned()
    }

    fn event_version(&self) -> String {
        EVENT_VERSION.to_owned()
    }
}
