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
//!
//! Parts: `ids` (account ids and promo code spelling), `state` (what is kept, also the snapshot),
//! `decide` (the rules of `handle`) and `apply` (state changes), besides the vocabulary in
//! `commands`, `events` and `errors`.

mod apply;
mod commands;
mod decide;
mod errors;
mod events;
mod ids;
mod state;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;

pub use commands::{AccountAction, AccountCommand};
pub use errors::AccountError;
pub use events::{
    balance_from_events, AccountEvent, GrantSource, RefundRequester, ReleaseReason,
    ReservationPurpose, EVENT_VERSION,
};
pub use ids::{account_id, ensure_own_account, normalize_promo_code, telegram_id_of};
pub use state::{
    Account, EndedReservation, Purchase, Reservation, ReservationOutcome,
    REMEMBERED_ENDED_RESERVATIONS,
};

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
        self.evolve(event);
    }
}
