//! How one Account event becomes a `money_movements` row, labelled with what its reservation
//! paid for.

use std::collections::HashMap;

use aggregates::{AccountEvent, GrantSource, RefundRequester, ReleaseReason, ReservationPurpose};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::labels::{DEFAULT_PRESET, UNKNOWN};

/// Movement kinds as stored, one per Account event.
pub mod kind {
    pub const GRANTED: &str = "granted";
    pub const PURCHASED: &str = "purchased";
    pub const RESERVED: &str = "reserved";
    pub const CAPTURED: &str = "captured";
    pub const RELEASED: &str = "released";
    pub const REFUNDED: &str = "refunded";
}

/// What a reservation pays for, as its movements are labelled.
#[derive(Debug, Clone)]
pub(super) struct Held {
    pub(super) credits: i64,
    pub(super) purpose_kind: String,
    pub(super) preset: String,
    pub(super) avatar_id: Option<Uuid>,
    pub(super) generation_id: Option<Uuid>,
    pub(super) images: Option<i64>,
    pub(super) reserved_at: DateTime<Utc>,
}

impl Held {
    pub(super) fn of(credits: u32, purpose: &ReservationPurpose, at: DateTime<Utc>) -> Self {
        let (purpose_kind, preset, generation_id, images) = match purpose {
            ReservationPurpose::Training { preset, .. } => {
                ("training", preset.as_str(), None, None)
            }
            ReservationPurpose::Generation {
                generation_id,
                preset,
                images,
                ..
            } => (
                "generation",
                preset.map_or(DEFAULT_PRESET, |p| p.as_str()),
                Some(*generation_id),
                Some(i64::from(*images)),
            ),
        };
        Self {
            credits: i64::from(credits),
            purpose_kind: purpose_kind.to_owned(),
            preset: preset.to_owned(),
            avatar_id: Some(purpose.avatar_id()),
            generation_id,
            images,
            reserved_at: at,
        }
    }
}

/// One `money_movements` row before it is written.
#[derive(Debug, Default)]
pub(super) struct Row {
    pub(super) kind: &'static str,
    pub(super) credits: i64,
    pub(super) available_delta: i64,
    pub(super) reserved_delta: i64,
    pub(super) stars: Option<i64>,
    pub(super) reservation_id: Option<Uuid>,
    pub(super) purpose_kind: Option<String>,
    pub(super) preset: Option<String>,
    pub(super) pack: Option<String>,
    pub(super) charge_id: Option<String>,
    pub(super) grant_source: Option<&'static str>,
    pub(super) release_reason: Option<&'static str>,
    pub(super) refunded_by: Option<&'static str>,
}

pub fn release_reason(reason: ReleaseReason) -> &'static str {
    match reason {
        ReleaseReason::Failed => "failed",
        ReleaseReason::Cancelled => "cancelled",
        ReleaseReason::DeadlinePassed => "deadline_passed",
        ReleaseReason::AvatarDeleted => "avatar_deleted",
        ReleaseReason::Refused => "refused",
    }
}

pub(super) fn grant_source(source: &GrantSource) -> &'static str {
    match source {
        GrantSource::Welcome => "welcome",
        GrantSource::PromoCode { .. } => "promo_code",
        GrantSource::Operator { .. } => "operator",
    }
}

/// The movement row of one event, keeping `open` (reservations by account and id) and `packs`
/// (purchased packs by charge id) up to date.
pub(super) fn movement(
    account: i64,
    event: &AccountEvent,
    open: &mut HashMap<(i64, Uuid), Held>,
    packs: &mut HashMap<String, String>,
) -> Row {
    let credits_of = |c: &u32| i64::from(*c);
    match event {
        AccountEvent::CreditsGranted {
            credits, source, ..
        } => Row {
            kind: kind::GRANTED,
            credits: credits_of(credits),
            available_delta: credits_of(credits),
            grant_source: Some(grant_source(source)),
            ..Row::default()
        },
        AccountEvent::CreditsPurchased {
            pack,
            credits,
            stars,
            telegram_payment_charge_id,
            ..
        } => {
            packs.insert(telegram_payment_charge_id.clone(), pack.clone());
            Row {
                kind: kind::PURCHASED,
                credits: credits_of(credits),
                available_delta: credits_of(credits),
                stars: Some(i64::from(*stars)),
                pack: Some(pack.clone()),
                charge_id: Some(telegram_payment_charge_id.clone()),
                ..Row::default()
            }
        }
        AccountEvent::CreditsReserved {
            reservation_id,
            credits,
            purpose,
            at,
        } => {
            let held = Held::of(*credits, purpose, *at);
            let row = Row {
                kind: kind::RESERVED,
                credits: credits_of(credits),
                available_delta: -credits_of(credits),
                reserved_delta: credits_of(credits),
                reservation_id: Some(*reservation_id),
                purpose_kind: Some(held.purpose_kind.clone()),
                preset: Some(held.preset.clone()),
                ..Row::default()
            };
            open.insert((account, *reservation_id), held);
            row
        }
        AccountEvent::ReservationCaptured {
            reservation_id,
            credits,
            ..
        } => {
            let held = open.remove(&(account, *reservation_id));
            Row {
                kind: kind::CAPTURED,
                credits: credits_of(credits),
                reserved_delta: -credits_of(credits),
                reservation_id: Some(*reservation_id),
                ..labelled(held)
            }
        }
        AccountEvent::ReservationReleased {
            reservation_id,
            credits,
            reason,
            ..
        } => {
            let held = open.remove(&(account, *reservation_id));
            Row {
                kind: kind::RELEASED,
                credits: credits_of(credits),
                available_delta: credits_of(credits),
                reserved_delta: -credits_of(credits),
                reservation_id: Some(*reservation_id),
                release_reason: Some(release_reason(*reason)),
                ..labelled(held)
            }
        }
        AccountEvent::PurchaseRefunded {
            telegram_payment_charge_id,
            credits,
            stars,
            by,
            ..
        } => Row {
            kind: kind::REFUNDED,
            credits: credits_of(credits),
            available_delta: -credits_of(credits),
            stars: Some(i64::from(*stars)),
            pack: packs.get(telegram_payment_charge_id).cloned(),
            charge_id: Some(telegram_payment_charge_id.clone()),
            refunded_by: Some(match by {
                RefundRequester::User => "user",
                RefundRequester::Operator { .. } => "operator",
            }),
            ..Row::default()
        },
    }
}

/// A row labelled with the purpose of the reservation it ends (`unknown` if none was open,
/// which the ledger's rules never allow).
pub(super) fn labelled(held: Option<Held>) -> Row {
    let (purpose_kind, preset) = held.map_or_else(
        || (UNKNOWN.to_owned(), UNKNOWN.to_owned()),
        |h| (h.purpose_kind, h.preset),
    );
    Row {
        purpose_kind: Some(purpose_kind),
        preset: Some(preset),
        ..Row::default()
    }
}

#[cfg(test)]
mod tests {
    use aggregates::{GenerationPreset, TrainingPreset};
    use chrono::TimeZone;

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap()
    }

    #[test]
    fn a_capture_is_labelled_with_the_purpose_of_the_reservation_it_ends() {
        let (mut open, mut packs) = (HashMap::new(), HashMap::new());
        let id = Uuid::new_v4();
        let reserved = AccountEvent::CreditsReserved {
            reservation_id: id,
            credits: 4,
            purpose: ReservationPurpose::Generation {
                avatar_id: Uuid::new_v4(),
                generation_id: Uuid::new_v4(),
                preset: Some(GenerationPreset::Ultra),
                images: 2,
            },
            at: at(),
        };
        let row = movement(7, &reserved, &mut open, &mut packs);
        assert_eq!((row.available_delta, row.reserved_delta), (-4, 4));
        assert_eq!(row.preset.as_deref(), Some("ultra"));
        let captured = AccountEvent::ReservationCaptured {
            reservation_id: id,
            credits: 4,
            at: at(),
        };
        let row = movement(7, &captured, &mut open, &mut packs);
        assert_eq!(row.kind, kind::CAPTURED);
        assert_eq!((row.available_delta, row.reserved_delta), (0, -4));
        assert_eq!(row.purpose_kind.as_deref(), Some("generation"));
        assert_eq!(row.preset.as_deref(), Some("ultra"));
        assert!(open.is_empty(), "the reservation is no longer open");
    }

    #[test]
    fn a_release_without_its_reservation_is_labelled_unknown_and_a_refund_finds_its_pack() {
        let (mut open, mut packs) = (HashMap::new(), HashMap::new());
        let released = AccountEvent::ReservationReleased {
            reservation_id: Uuid::new_v4(),
            credits: 3,
            reason: ReleaseReason::DeadlinePassed,
            at: at(),
        };
        let row = movement(7, &released, &mut open, &mut packs);
        assert_eq!(row.purpose_kind.as_deref(), Some(UNKNOWN));
        assert_eq!(row.release_reason, Some("deadline_passed"));
        assert_eq!((row.available_delta, row.reserved_delta), (3, -3));

        let bought = AccountEvent::CreditsPurchased {
            pack: "10:50".into(),
            credits: 10,
            stars: 50,
            telegram_payment_charge_id: "ch-1".into(),
            at: at(),
        };
        movement(7, &bought, &mut open, &mut packs);
        let refund = AccountEvent::PurchaseRefunded {
            telegram_payment_charge_id: "ch-1".into(),
            credits: 10,
            stars: 50,
            by: RefundRequester::User,
            at: at(),
        };
        let row = movement(7, &refund, &mut open, &mut packs);
        assert_eq!(row.pack.as_deref(), Some("10:50"));
        assert_eq!(row.available_delta, -10);
        assert_eq!(row.refunded_by, Some("user"));
    }

    #[test]
    fn a_training_reservation_names_its_preset_and_no_generation() {
        let held = Held::of(
            30,
            &ReservationPurpose::Training {
                avatar_id: Uuid::nil(),
                preset: TrainingPreset::Quality,
            },
            at(),
        );
        assert_eq!(held.purpose_kind, "training");
        assert_eq!(held.preset, "quality");
        assert_eq!((held.generation_id, held.images), (None, None));
    }
}
