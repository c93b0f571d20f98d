//! The Account aggregate: one Telegram user's credits ledger. Credits come in (welcome, promo
//! codes, operators, purchases in Telegram Stars), are held while paid work runs, and are then
//! spent or given back; refunds take a purchase's credits back out.
//!
//! The rules that keep it honest:
//! - the available balance never goes negative: a reservation needs the credits to be available;
//! - every movement is recorded once: duplicate payments, retried reservations and repeated
//!   captures or releases are no-ops, so at-least-once delivery from Telegram, FAL and our own
//!   retries is harmless;
//! - a reservation ends exactly once, captured or released, never both.

mod commands;
mod errors;
mod events;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use commands::{AccountAction, AccountCommand};
pub use errors::AccountError;
pub use events::{
    balance_from_events, AccountEvent, GrantSource, RefundRequester, ReleaseReason,
    ReservationPurpose, EVENT_VERSION,
};

use crate::values::Actor;

/// How many ended reservations are remembered, so that a late duplicate (a retried `Reserve`, a
/// second webhook) is recognised. Older ones are forgotten to keep the snapshot small; a
/// `Reserve` retried after that many newer reservations would hold credits again, which the
/// binary's deadline sweep releases, so it can delay but never spend twice.
pub const REMEMBERED_ENDED_RESERVATIONS: usize = 256;

const ACCOUNT_ID_PREFIX: &str = "account-";

/// The aggregate id of a Telegram user's account: the only place the Telegram id is recorded.
pub fn account_id(telegram_id: i64) -> String {
    format!("{ACCOUNT_ID_PREFIX}{telegram_id}")
}

/// The Telegram user an account id belongs to, if it is one.
pub fn telegram_id_of(aggregate_id: &str) -> Option<i64> {
    aggregate_id.strip_prefix(ACCOUNT_ID_PREFIX)?.parse().ok()
}

/// Checks that a user addresses their own account. The aggregate cannot do this itself because
/// its events never name the user (cqrs-es does not hand the aggregate id to `handle`), so the
/// binary calls this before executing a user's command. Systems and operators may address any
/// account.
pub fn ensure_own_account(aggregate_id: &str, by: &Actor) -> Result<(), AccountError> {
    match by {
        Actor::User(user) if telegram_id_of(aggregate_id) != Some(*user) => {
            Err(AccountError::NotOwner)
        }
        _ => Ok(()),
    }
}

/// Promo codes compare without surrounding spaces and without case, so `promo10` and ` PROMO10`
/// are one code and one use. The binary should look codes up in its configuration the same way.
pub fn normalize_promo_code(code: &str) -> String {
    code.trim().to_uppercase()
}

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

    fn ended(&self, reservation_id: Uuid) -> Option<&EndedReservation> {
        self.ended_reservations
            .iter()
            .find(|r| r.reservation_id == reservation_id)
    }

    /// Who may issue what. The bot acts for users when they reserve, redeem a code or ask for a
    /// refund; the system records what Telegram and the job actors report (payments, results,
    /// the welcome gift); operators grant, refund and may release a stuck reservation.
    fn authorize(by: &Actor, action: &AccountAction) -> Result<(), AccountError> {
        use AccountAction as A;
        let allowed = match by {
            Actor::User(_) => matches!(
                action,
                A::RedeemPromoCode { .. } | A::Reserve { .. } | A::RequestRefund { .. }
            ),
            Actor::System(_) => matches!(
                action,
                A::GrantWelcome { .. }
                    | A::RecordPurchase { .. }
                    | A::Capture { .. }
                    | A::Release { .. }
            ),
            Actor::Operator(_) => matches!(
                action,
                A::GrantCredits { .. } | A::Release { .. } | A::RefundPurchase { .. }
            ),
        };
        if allowed {
            return Ok(());
        }
        Err(AccountError::NotPermitted {
            actor: match by {
                Actor::User(_) => "a Telegram user",
                Actor::System(_) => "the system",
                Actor::Operator(_) => "an operator",
            },
            action: action.name(),
        })
    }

    fn decide(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        let AccountCommand { by, at, action } = command;
        Self::authorize(&by, &action)?;

        match action {
            AccountAction::GrantWelcome { credits } => {
                positive(credits)?;
                if self.welcome_granted {
                    return Err(AccountError::WelcomeAlreadyGranted);
                }
                Ok(vec![AccountEvent::CreditsGranted {
                    credits,
                    source: GrantSource::Welcome,
                    at,
                }])
            }

            AccountAction::RedeemPromoCode { code, credits } => {
                let code = normalize_promo_code(&code);
                if code.is_empty() {
                    return Err(AccountError::EmptyPromoCode);
                }
                positive(credits)?;
                if self.used_promo_codes.contains(&code) {
                    return Err(AccountError::PromoCodeAlreadyUsed(code));
                }
                Ok(vec![AccountEvent::CreditsGranted {
                    credits,
                    source: GrantSource::PromoCode { code },
                    at,
                }])
            }

            AccountAction::GrantCredits { credits, reason } => {
                positive(credits)?;
                Ok(vec![AccountEvent::CreditsGranted {
                    credits,
                    source: GrantSource::Operator {
                        operator: operator_name(&by),
                        reason: required_reason(&reason)?,
                    },
                    at,
                }])
            }

            AccountAction::RecordPurchase {
                pack,
                credits,
                stars,
                telegram_payment_charge_id,
            } => {
                if telegram_payment_charge_id.trim().is_empty() {
                    return Err(AccountError::EmptyChargeId);
                }
                // Telegram may deliver `successful_payment` more than once, and the handler must
                // be able to retry: the charge id was paid once, so it is credited once, and a
                // repeat is acknowledged without effect. The first recording stands even if the
                // configured pack changed in between.
                if self.purchases.contains_key(&telegram_payment_charge_id) {
                    return Ok(vec![]);
                }
                positive(credits)?;
                if stars == 0 {
                    return Err(AccountError::ZeroStars);
                }
                Ok(vec![AccountEvent::CreditsPurchased {
                    pack,
                    credits,
                    stars,
                    telegram_payment_charge_id,
                    at,
                }])
            }

            AccountAction::Reserve {
                reservation_id,
                credits,
                purpose,
            } => {
                positive(credits)?;
                // A retry of the same reservation (same credits, same work) is the same
                // reservation; anything else under its id is a bug that must not move credits.
                let earlier = self
                    .open_reservations
                    .get(&reservation_id)
                    .map(|r| (r.credits, &r.purpose))
                    .or_else(|| self.ended(reservation_id).map(|r| (r.credits, &r.purpose)));
                if let Some((earlier_credits, earlier_purpose)) = earlier {
                    return if earlier_credits == credits && *earlier_purpose == purpose {
                        Ok(vec![])
                    } else {
                        Err(AccountError::ReservationConflict(reservation_id))
                    };
                }
                if u64::from(credits) > self.balance {
                    return Err(AccountError::InsufficientCredits {
                        needed: credits,
                        balance: self.balance,
                    });
                }
                Ok(vec![AccountEvent::CreditsReserved {
                    reservation_id,
                    credits,
                    purpose,
                    at,
                }])
            }

            AccountAction::Capture { reservation_id } => {
                if let Some(open) = self.open_reservations.get(&reservation_id) {
                    return Ok(vec![AccountEvent::ReservationCaptured {
                        reservation_id,
                        credits: open.credits,
                        at,
                    }]);
                }
                match self.ended(reservation_id).map(|r| r.outcome) {
                    Some(ReservationOutcome::Captured) => Ok(vec![]),
                    Some(ReservationOutcome::Released { .. }) => {
                        Err(AccountError::ReservationAlreadyReleased(reservation_id))
                    }
                    None => Err(AccountError::UnknownReservation(reservation_id)),
                }
            }

            AccountAction::Release {
                reservation_id,
                reason,
            } => {
                if let Some(open) = self.open_reservations.get(&reservation_id) {
                    return Ok(vec![AccountEvent::ReservationReleased {
                        reservation_id,
                        credits: open.credits,
                        reason,
                        at,
                    }]);
                }
                // A second release is a no-op whatever its reason: the first one already
                // returned the credits, and its reason is the one on record.
                match self.ended(reservation_id).map(|r| r.outcome) {
                    Some(ReservationOutcome::Released { .. }) => Ok(vec![]),
                    Some(ReservationOutcome::Captured) => {
                        Err(AccountError::ReservationAlreadyCaptured(reservation_id))
                    }
                    None => Err(AccountError::UnknownReservation(reservation_id)),
                }
            }

            AccountAction::RequestRefund {
                telegram_payment_charge_id,
                window,
            } => self.refund(
                telegram_payment_charge_id,
                window,
                RefundRequester::User,
                at,
            ),

            AccountAction::RefundPurchase {
                telegram_payment_charge_id,
                window,
                reason,
            } => {
                let by = RefundRequester::Operator {
                    operator: operator_name(&by),
                    reason: required_reason(&reason)?,
                };
                self.refund(telegram_payment_charge_id, window, by, at)
            }
        }
    }

    /// A refund takes the purchase's credits back, all of them or none. Credits are fungible, so
    /// "still unspent" means: the available balance (credits held by open reservations do not
    /// count) is at least the purchase's credits. Granted credits are therefore in effect spent
    /// first, and a refund can never push the balance below zero.
    fn refund(
        &self,
        telegram_payment_charge_id: String,
        window: std::time::Duration,
        by: RefundRequester,
        at: DateTime<Utc>,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        let Some(purchase) = self.purchases.get(&telegram_payment_charge_id) else {
            return Err(AccountError::UnknownPurchase(telegram_payment_charge_id));
        };
        if purchase.refunded {
            return Ok(vec![]);
        }
        // The window is inclusive: a refund asked at exactly `purchased + window` is in time.
        let closed_at = TimeDelta::from_std(window)
            .ok()
            .and_then(|window| purchase.at.checked_add_signed(window))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if at > closed_at {
            return Err(AccountError::RefundWindowClosed {
                purchased_at: purchase.at,
                closed_at,
            });
        }
        if u64::from(purchase.credits) > self.balance {
            return Err(AccountError::PurchaseCreditsSpent {
                needed: purchase.credits,
                available: self.balance,
            });
        }
        Ok(vec![AccountEvent::PurchaseRefunded {
            telegram_payment_charge_id,
            credits: purchase.credits,
            stars: purchase.stars,
            by,
            at,
        }])
    }

    fn end_reservation(&mut self, reservation_id: Uuid, outcome: ReservationOutcome) -> u64 {
        let Some(open) = self.open_reservations.remove(&reservation_id) else {
            return 0;
        };
        let credits = u64::from(open.credits);
        self.reserved = self.reserved.saturating_sub(credits);
        self.ended_reservations.push_back(EndedReservation {
            reservation_id,
            credits: open.credits,
            purpose: open.purpose,
            outcome,
        });
        while self.ended_reservations.len() > REMEMBERED_ENDED_RESERVATIONS {
            self.ended_reservations.pop_front();
        }
        credits
    }
}

fn positive(credits: u32) -> Result<(), AccountError> {
    if credits == 0 {
        Err(AccountError::ZeroCredits)
    } else {
        Ok(())
    }
}

fn required_reason(reason: &str) -> Result<String, AccountError> {
    let reason = reason.trim();
    if reason.is_empty() {
        Err(AccountError::EmptyReason)
    } else {
        Ok(reason.to_owned())
    }
}

/// The operator's own name for the record; `authorize` lets only operators get here.
fn operator_name(by: &Actor) -> String {
    match by {
        Actor::Operator(name) => name.clone(),
        other => other.to_string(),
    }
}

impl Aggregate for Account {
    const TYPE: &'static str = "Account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AccountEvent::CreditsGranted {
                credits, source, ..
            } => {
                match source {
                    GrantSource::Welcome => self.welcome_granted = true,
                    GrantSource::PromoCode { code } => {
                        self.used_promo_codes.insert(code);
                    }
                    GrantSource::Operator { .. } => {}
                }
                self.balance += u64::from(credits);
                self.granted += u64::from(credits);
            }
            AccountEvent::CreditsPurchased {
                pack,
                credits,
                stars,
                telegram_payment_charge_id,
                at,
            } => {
                self.balance += u64::from(credits);
                self.purchased += u64::from(credits);
                self.purchases.insert(
                    telegram_payment_charge_id,
                    Purchase {
                        pack,
                        credits,
                        stars,
                        at,
                        refunded: false,
                    },
                );
            }
            AccountEvent::CreditsReserved {
                reservation_id,
                credits,
                purpose,
                at,
            } => {
                // Saturating: a recorded event is a fact and must load even if it were wrong;
                // the audit (`balance_from_events`) is where such a fact would show.
                self.balance = self.balance.saturating_sub(u64::from(credits));
                self.reserved += u64::from(credits);
                self.open_reservations.insert(
                    reservation_id,
                    Reservation {
                        credits,
                        purpose,
                        at,
                    },
                );
            }
            AccountEvent::ReservationCaptured { reservation_id, .. } => {
                let credits = self.end_reservation(reservation_id, ReservationOutcome::Captured);
                self.spent += credits;
            }
            AccountEvent::ReservationReleased {
                reservation_id,
                reason,
                ..
            } => {
                let credits =
                    self.end_reservation(reservation_id, ReservationOutcome::Released { reason });
                self.balance += credits;
            }
            AccountEvent::PurchaseRefunded {
                telegram_payment_charge_id,
                credits,
                ..
            } => {
                if let Some(purchase) = self.purchases.get_mut(&telegram_payment_charge_id) {
                    purchase.refunded = true;
                }
                self.balance = self.balance.saturating_sub(u64::from(credits));
                self.refunded += u64::from(credits);
            }
        }
    }
}
