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

use aggregates::AccountEvent;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

mod queries;
mod rows;
mod views;

pub use queries::{
    balances, last_sequence, open_reservations_before, recent_movements, store_prices, Balance,
    Movement, STARS_CURRENCY,
};
pub use rows::{kind, release_reason};
pub use views::{
    BALANCE_TOTALS_VIEW, FAL_REVENUE_VIEW, FAL_USAGE_VIEW, PURCHASES_VIEW, REFUNDS_VIEW,
    SPENDING_VIEW, VIEWS,
};

use db::{Arg, Tx};

use crate::gallery::uuid;
use crate::{LedgerEvent, Projection, ProjectionError};

use queries::optional_uuid;
use rows::{movement, Held};

pub const NAME: &str = "money";
pub const MOVEMENTS: &str = "money_movements";
pub const BALANCES: &str = "money_balances";
pub const OPEN_RESERVATIONS: &str = "money_open_reservations";

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

    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        events: &'a [LedgerEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(apply_all(tx, events))
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
