//! What an account remembers between commands; it doubles as the snapshot, so ended
//! reservations are kept only as long as duplicates may still arrive.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::{ReleaseReason, ReservationPurpose};

/// How many ended reservations are remembered, so that a late duplicate (a retried `Reserve`, a
/// second webhook) is recognised. Older ones are forgotten to keep the snapshot small; a
/// `Reserve` retried after that many newer reservations would hold credits again, which the
/// binary's deadline sweep releases, so it can delay but never spend twice.
pub const REMEMBERED_ENDED_RESERVATIONS: usize = 256;

/// Credits held for one piece of paid work that has not ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub credits: u32,
    pub purpose: ReservationPurpose,
    pub at: DateTime<Utc>,
}

/// How a reservation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReservationOutcome {
    Captured,
    Released { reason: ReleaseReason },
}

/// A reservation that ended, remembered to answer duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedReservation {
    pub reservation_id: Uuid,
    pub credits: u32,
    pub purpose: ReservationPurpose,
    pub outcome: ReservationOutcome,
}

/// A purchase of credits paid in Stars, by Telegram charge id in [`Account::purchases`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchase {
    pub pack: String,
    pub credits: u32,
    pub stars: u32,
    pub at: DateTime<Utc>,
    pub refunded: bool,
}

/// The Account aggregate's state; it is also the snapshot. Purchases are kept for good (they are
/// few and refunds need them); ended reservations only for [`REMEMBERED_ENDED_RESERVATIONS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Account {
    /// Credits that can be reserved now.
    pub balance: u64,
    /// Credits held by open reservations; always the sum of `open_reservations`.
    pub reserved: u64,
    pub open_reservations: BTreeMap<Uuid, Reservation>,
    /// Oldest first.
    pub ended_reservations: VecDeque<EndedReservation>,
    pub purchases: BTreeMap<String, Purchase>,
    pub used_promo_codes: BTreeSet<String>,
    pub welcome_granted: bool,
    /// Lifetime totals, for the books: `balance + reserved == granted + purchased - spent - refunded`.
    pub granted: u64,
    pub purchased: u64,
    pub spent: u64,
    pub refunded: u64,
}

impl Account {
    /// Credits that can be reserved now.
    pub fn available(&self) -> u64 {
        self.balance
    }

    /// Credits held by open reservations.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Every credit that ever came in, granted or bought (refunds and spending not deducted).
    pub fn total_granted_and_purchased(&self) -> u64 {
        self.granted + self.purchased
    }

    pub fn reservation(&self, reservation_id: Uuid) -> Option<&Reservation> {
        self.open_reservations.get(&reservation_id)
    }

    /// Open reservations for an avatar: what to release when it is deleted.
    pub fn open_reservations_for_avatar(&self, avatar_id: Uuid) -> Vec<Uuid> {
        self.open_reservations
            .iter()
            .filter(|(_, r)| r.purpose.avatar_id() == avatar_id)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Open reservations made at or before `cutoff`: what a deadline sweep releases.
    pub fn open_reservations_made_before(&self, cutoff: DateTime<Utc>) -> Vec<Uuid> {
        self.open_reservations
            .iter()
            .filter(|(_, r)| r.at <= cutoff)
            .map(|(id, _)| *id)
            .collect()
    }

    pub(super) fn ended(&self, reservation_id: Uuid) -> Option<&EndedReservation> {
        self.ended_reservations
            .iter()
            .find(|r| r.reservation_id == reservation_id)
    }
}
