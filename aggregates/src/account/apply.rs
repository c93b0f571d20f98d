//! How each recorded event changes the ledger: facts that already happened, so nothing here
//! refuses, and totals saturate rather than fail to load.

use uuid::Uuid;

use super::events::{AccountEvent, GrantSource};
use super::state::{
    Account, EndedReservation, Purchase, Reservation, ReservationOutcome,
    REMEMBERED_ENDED_RESERVATIONS,
};

impl Account {
    /// The state after `event`; the aggregate's `apply`.
    pub(super) fn evolve(&mut self, event: AccountEvent) {
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
