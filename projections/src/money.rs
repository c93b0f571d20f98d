//! Money: the credits ledger as analysts and the bot read it, built from Account events. One row
//! per movement (`money_movements`), one balance per account (`money_balances`) and the
//! reservations still open (`money_open_reservations`); the day-keyed views over them (purchases,
//! spending, refunds, balance totals, FAL cost against revenue) are listed in [`VIEWS`].
//!
//! A capture or release carries only its reservation id, so its purpose (training or generation,
//! preset) comes from the open reservation it ends. A batch reads the reservations and purchases
//! it needs once, applies its events in memory and writes each table once; the runner's
//! transaction makes each batch count exactly once.

use std::collections::{BTreeMap, HashMap, HashSet};

use aggregates::{AccountEvent, GrantSource, RefundRequester, ReleaseReason, ReservationPurpose};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

mod queries;
mod views;

pub use queries::{
    balances, last_sequence, open_reservations_before, recent_movements, store_prices, Balance,
    Movement, STARS_CURRENCY,
};
pub use views::{
    BALANCE_TOTALS_VIEW, FAL_REVENUE_VIEW, FAL_USAGE_VIEW, PURCHASES_VIEW, REFUNDS_VIEW,
    SPENDING_VIEW, VIEWS,
};

use crate::analytics::{DEFAULT_PRESET, UNKNOWN};
use crate::gallery::uuid;
use crate::sql::{Arg, SqlRow, Tx};
use crate::{LedgerEvent, Projection, ProjectionError};

pub const NAME: &str = "money";
pub const MOVEMENTS: &str = "money_movements";
pub const BALANCES: &str = "money_balances";
pub const OPEN_RESERVATIONS: &str = "money_open_reservations";

/// Movement kinds as stored, one per Account event.
pub mod kind {
    pub const GRANTED: &str = "granted";
    pub const PURCHASED: &str = "purchased";
    pub const RESERVED: &str = "reserved";
    pub const CAPTURED: &str = "captured";
    pub const RELEASED: &str = "released";
    pub const REFUNDED: &str = "refunded";
}

/// Builds the `money_*` tables.
#[derive(Debug, Default, Clone, Copy)]
pub struct Money;

impl Projection<LedgerEvent> for Money {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[MOVEMENTS, BALANCES, OPEN_RESERVATIONS]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        event: &'a LedgerEvent,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(apply_all(tx, std::slice::from_ref(event)))
    }

    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        events: &'a [LedgerEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(apply_all(tx, events))
    }
}

/// What a reservation pays for, as its movements are labelled.
#[derive(Debug, Clone)]
struct Held {
    credits: i64,
    purpose_kind: String,
    preset: String,
    avatar_id: Option<Uuid>,
    generation_id: Option<Uuid>,
    images: Option<i64>,
    reserved_at: DateTime<Utc>,
}

impl Held {
    fn of(credits: u32, purpose: &ReservationPurpose, at: DateTime<Utc>) -> Self {
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

/// Per account, what a batch adds to its balance row.
#[derive(Debug, Default)]
struct BalanceDelta {
    available: i64,
    reserved: i64,
    granted: i64,
    purchased: i64,
    spent: i64,
    refunded: i64,
    movements: i64,
    last_sequence: i64,
    updated_at: Option<DateTime<Utc>>,
}

/// One `money_movements` row before it is written.
#[derive(Debug, Default)]
struct Row {
    kind: &'static str,
    credits: i64,
    available_delta: i64,
    reserved_delta: i64,
    stars: Option<i64>,
    reservation_id: Option<Uuid>,
    purpose_kind: Option<String>,
    preset: Option<String>,
    pack: Option<String>,
    charge_id: Option<String>,
    grant_source: Option<&'static str>,
    release_reason: Option<&'static str>,
    refunded_by: Option<&'static str>,
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

fn grant_source(source: &GrantSource) -> &'static str {
    match source {
        GrantSource::Welcome => "welcome",
        GrantSource::PromoCode { .. } => "promo_code",
        GrantSource::Operator { .. } => "operator",
    }
}

async fn apply_all(tx: &mut Tx<'_>, events: &[LedgerEvent]) -> Result<(), ProjectionError> {
    if events.is_empty() {
        return Ok(());
    }
    // What earlier batches left that this one needs: the reservations it ends and the
    // purchases it refunds.
    let mut ended = Vec::new();
    let mut refunded = Vec::new();
    for e in events {
        match &e.event {
            AccountEvent::ReservationCaptured { reservation_id, .. }
            | AccountEvent::ReservationReleased { reservation_id, .. } => {
                ended.push(Arg::from(*reservation_id))
            }
            AccountEvent::PurchaseRefunded {
                telegram_payment_charge_id,
                ..
            } => refunded.push(Arg::from(telegram_payment_charge_id.as_str())),
            _ => {}
        }
    }
    let mut open = load_open(tx, ended).await?;
    let stored: HashSet<(i64, Uuid)> = open.keys().copied().collect();
    let mut packs = load_packs(tx, refunded).await?;

    let mut rows: Vec<Vec<Arg>> = Vec::with_capacity(events.len());
    let mut balances: BTreeMap<i64, BalanceDelta> = BTreeMap::new();
    for e in events {
        let account = e.telegram_id;
        let at = e.event.at();
        let row = movement(account, &e.event, &mut open, &mut packs);
        let balance = balances.entry(account).or_default();
        balance.available += row.available_delta;
        balance.reserved += row.reserved_delta;
        match row.kind {
            kind::GRANTED => balance.granted += row.credits,
            kind::PURCHASED => balance.purchased += row.credits,
            kind::CAPTURED => balance.spent += row.credits,
            kind::REFUNDED => balance.refunded += row.credits,
            _ => {}
        }
        balance.movements += 1;
        balance.last_sequence = e.sequence as i64;
        balance.updated_at = Some(at);
        rows.push(vec![
            account.into(),
            (e.sequence as i64).into(),
            at.date_naive().into(),
            row.kind.into(),
            row.credits.into(),
            row.available_delta.into(),
            row.reserved_delta.into(),
            row.stars.into(),
            row.reservation_id.map(|id| id.to_string()).into(),
            row.purpose_kind.into(),
            row.preset.into(),
            row.pack.into(),
            row.charge_id.into(),
            row.grant_source.map(str::to_owned).into(),
            row.release_reason.map(str::to_owned).into(),
            row.refunded_by.map(str::to_owned).into(),
            at.into(),
            serde_json::to_string(&e.event)
                .map_err(|e| ProjectionError::Invalid(format!("account event: {e}")))?
                .into(),
        ]);
    }

    tx.insert_rows(
        "INSERT INTO money_movements (telegram_id, sequence, day, kind, credits, available_delta,
             reserved_delta, stars, reservation_id, purpose_kind, preset, pack, charge_id,
             grant_source, release_reason, refunded_by, at, event)",
        rows,
        "",
    )
    .await?;

    let gone: Vec<Arg> = stored
        .iter()
        .filter(|key| !open.contains_key(key))
        .map(|(_, id)| Arg::from(*id))
        .collect();
    tx.execute_in(
        "DELETE FROM money_open_reservations WHERE reservation_id IN ({keys})",
        gone,
    )
    .await?;
    let new: Vec<Vec<Arg>> = open
        .iter()
        .filter(|(key, _)| !stored.contains(key))
        .map(|((account, id), held)| {
            vec![
                (*account).into(),
                (*id).into(),
                held.credits.into(),
                held.purpose_kind.clone().into(),
                held.preset.clone().into(),
                held.avatar_id.map(|id| id.to_string()).into(),
                held.generation_id.map(|id| id.to_string()).into(),
                held.images.into(),
                held.reserved_at.into(),
            ]
        })
        .collect();
    tx.insert_rows(
        "INSERT INTO money_open_reservations (telegram_id, reservation_id, credits, purpose_kind,
             preset, avatar_id, generation_id, images, reserved_at)",
        new,
        "",
    )
    .await?;

    let balances: Vec<Vec<Arg>> = balances
        .into_iter()
        .map(|(account, d)| {
            vec![
                account.into(),
                d.available.into(),
                d.reserved.into(),
                d.granted.into(),
                d.purchased.into(),
                d.spent.into(),
                d.refunded.into(),
                d.movements.into(),
                d.last_sequence.into(),
                d.updated_at.into(),
            ]
        })
        .collect();
    tx.insert_rows(
        "INSERT INTO money_balances (telegram_id, available, reserved, granted, purchased, spent,
             refunded, movements, last_sequence, updated_at)",
        balances,
        "ON CONFLICT (telegram_id) DO UPDATE
            SET available = money_balances.available + excluded.available,
                reserved = money_balances.reserved + excluded.reserved,
                granted = money_balances.granted + excluded.granted,
                purchased = money_balances.purchased + excluded.purchased,
                spent = money_balances.spent + excluded.spent,
                refunded = money_balances.refunded + excluded.refunded,
                movements = money_balances.movements + excluded.movements,
                last_sequence = excluded.last_sequence,
                updated_at = excluded.updated_at",
    )
    .await?;
    Ok(())
}

/// The movement row of one event, keeping `open` (reservations by account and id) and `packs`
/// (purchased packs by charge id) up to date.
fn movement(
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
fn labelled(held: Option<Held>) -> Row {
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

async fn load_open(
    tx: &mut Tx<'_>,
    ids: Vec<Arg>,
) -> Result<HashMap<(i64, Uuid), Held>, ProjectionError> {
    let rows = tx
        .fetch_in(
            "SELECT telegram_id, reservation_id, credits, purpose_kind, preset, avatar_id,
                    generation_id, images, reserved_at
               FROM money_open_reservations WHERE reservation_id IN ({keys})",
            ids,
        )
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        out.insert(
            (row.get("telegram_id")?, uuid(&row, "reservation_id")?),
            Held {
                credits: row.get("credits")?,
                purpose_kind: row.get("purpose_kind")?,
                preset: row.get("preset")?,
                avatar_id: optional_uuid(&row, "avatar_id")?,
                generation_id: optional_uuid(&row, "generation_id")?,
                images: row.get("images")?,
                reserved_at: row.get("reserved_at")?,
            },
        );
    }
    Ok(out)
}

/// Which of `charge_ids` the read model already holds as purchases.
pub async fn recorded_purchases(
    tx: &mut Tx<'_>,
    charge_ids: &[String],
) -> Result<std::collections::HashSet<String>, ProjectionError> {
    if charge_ids.is_empty() {
        return Ok(Default::default());
    }
    let keys = charge_ids.iter().map(|c| Arg::from(c.as_str())).collect();
    Ok(load_packs(tx, keys).await?.into_keys().collect())
}

async fn load_packs(
    tx: &mut Tx<'_>,
    charges: Vec<Arg>,
) -> Result<HashMap<String, String>, ProjectionError> {
    let rows = tx
        .fetch_in(
            "SELECT charge_id, pack FROM money_movements
              WHERE kind = 'purchased' AND charge_id IN ({keys})",
            charges,
        )
        .await?;
    rows.iter()
        .map(|row| Ok((row.get("charge_id")?, row.get("pack")?)))
        .collect()
}

fn optional_uuid(row: &SqlRow, column: &str) -> Result<Option<Uuid>, ProjectionError> {
    match row.get::<Option<String>>(column)? {
        None => Ok(None),
        Some(_) => uuid(row, column).map(Some),
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

    #[test]
    fn every_money_view_is_exported_by_the_analytics_list() {
        for view in VIEWS {
            assert_eq!(
                crate::analytics::view(view.name),
                Some(&view),
                "{}",
                view.name
            );
        }
    }
}
