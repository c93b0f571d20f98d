//! The ledger's rules: who may move credits, and when a grant, purchase, reservation or refund
//! is accepted, refused, or recognised as a repeat that changes nothing.

use chrono::{DateTime, TimeDelta, Utc};

use super::commands::{AccountAction, AccountCommand};
use super::errors::AccountError;
use super::events::{AccountEvent, GrantSource, RefundRequester};
use super::ids::normalize_promo_code;
use super::state::{Account, ReservationOutcome};
use crate::values::Actor;

impl Account {
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

    /// The events a command leads to, or why it is refused.
    pub(super) fn decide(
        &self,
        command: AccountCommand,
    ) -> Result<Vec<AccountEvent>, AccountError> {
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
