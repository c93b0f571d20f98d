//! The money read model's queries: what the bot, the deadline sweep, the audit and the start-up
//! settings read and write outside the runner.

use aggregates::AccountEvent;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::gallery::uuid;
use crate::ProjectionError;
use db::{SqlRow, Tx};

/// One movement of an account, as the bot's balance screen and auditors read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Movement {
    pub telegram_id: i64,
    pub sequence: i64,
    pub kind: String,
    pub credits: i64,
    /// How it moved the available balance (a capture moves only the reserved credits).
    pub available_delta: i64,
    pub reserved_delta: i64,
    pub stars: Option<i64>,
    pub reservation_id: Option<Uuid>,
    pub purpose_kind: Option<String>,
    pub preset: Option<String>,
    pub pack: Option<String>,
    pub charge_id: Option<String>,
    pub grant_source: Option<String>,
    pub release_reason: Option<String>,
    pub at: DateTime<Utc>,
    /// The event itself, for texts that need more than the columns (a promo code).
    pub event: AccountEvent,
}

/// The latest `limit` movements of `telegram_id`'s account, newest first.
pub async fn recent_movements(
    tx: &mut Tx<'_>,
    telegram_id: i64,
    limit: i64,
) -> Result<Vec<Movement>, ProjectionError> {
    let rows = tx
        .fetch_all(
            "SELECT telegram_id, sequence, kind, credits, available_delta, reserved_delta, stars,
                    reservation_id, purpose_kind, preset, pack, charge_id, grant_source,
                    release_reason, at, event
               FROM money_movements WHERE telegram_id = $1
              ORDER BY sequence DESC LIMIT $2",
            vec![telegram_id.into(), limit.into()],
        )
        .await?;
    rows.iter().map(movement_row).collect()
}

fn movement_row(row: &SqlRow) -> Result<Movement, ProjectionError> {
    let event: String = row.get("event")?;
    Ok(Movement {
        telegram_id: row.get("telegram_id")?,
        sequence: row.get("sequence")?,
        kind: row.get("kind")?,
        credits: row.get("credits")?,
        available_delta: row.get("available_delta")?,
        reserved_delta: row.get("reserved_delta")?,
        stars: row.get("stars")?,
        reservation_id: optional_uuid(row, "reservation_id")?,
        purpose_kind: row.get("purpose_kind")?,
        preset: row.get("preset")?,
        pack: row.get("pack")?,
        charge_id: row.get("charge_id")?,
        grant_source: row.get("grant_source")?,
        release_reason: row.get("release_reason")?,
        at: row.get("at")?,
        event: serde_json::from_str(&event)
            .map_err(|e| ProjectionError::Invalid(format!("stored movement event: {e}")))?,
    })
}

/// The sequence of the newest event of `telegram_id`'s account the read model holds (0: none).
pub async fn last_sequence(tx: &mut Tx<'_>, telegram_id: i64) -> Result<i64, ProjectionError> {
    Ok(tx
        .fetch_i64(
            "SELECT last_sequence FROM money_balances WHERE telegram_id = $1",
            vec![telegram_id.into()],
        )
        .await?
        .unwrap_or(0))
}

/// (telegram id, reservation id) of the reservations still open and made at or before `cutoff`,
/// oldest first.
pub async fn open_reservations_before(
    tx: &mut Tx<'_>,
    cutoff: DateTime<Utc>,
) -> Result<Vec<(i64, Uuid)>, ProjectionError> {
    let rows = tx
        .fetch_all(
            "SELECT telegram_id, reservation_id FROM money_open_reservations
              WHERE reserved_at <= $1 ORDER BY reserved_at, reservation_id",
            vec![cutoff.into()],
        )
        .await?;
    rows.iter()
        .map(|row| Ok((row.get("telegram_id")?, uuid(row, "reservation_id")?)))
        .collect()
}

/// One account's balance row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Balance {
    pub telegram_id: i64,
    pub available: i64,
    pub reserved: i64,
    pub granted: i64,
    pub purchased: i64,
    pub spent: i64,
    pub refunded: i64,
    pub movements: i64,
    pub last_sequence: i64,
}

/// Every balance row, by account. With `from_movements`, the same figures summed from
/// `money_movements` instead, for the audit's "a balance is the sum of its movements".
pub async fn balances(
    tx: &mut Tx<'_>,
    from_movements: bool,
) -> Result<Vec<Balance>, ProjectionError> {
    let sql = if from_movements {
        "SELECT telegram_id,
                CAST(sum(available_delta) AS bigint) AS available,
                CAST(sum(reserved_delta) AS bigint) AS reserved,
                CAST(sum(CASE WHEN kind = 'granted' THEN credits ELSE 0 END) AS bigint) AS granted,
                CAST(sum(CASE WHEN kind = 'purchased' THEN credits ELSE 0 END) AS bigint)
                    AS purchased,
                CAST(sum(CASE WHEN kind = 'captured' THEN credits ELSE 0 END) AS bigint) AS spent,
                CAST(sum(CASE WHEN kind = 'refunded' THEN credits ELSE 0 END) AS bigint)
                    AS refunded,
                count(*) AS movements, max(sequence) AS last_sequence
           FROM money_movements GROUP BY telegram_id ORDER BY telegram_id"
    } else {
        "SELECT telegram_id, available, reserved, granted, purchased, spent, refunded, movements,
                last_sequence
           FROM money_balances ORDER BY telegram_id"
    };
    let rows = tx.fetch_all(sql, vec![]).await?;
    rows.iter()
        .map(|row| {
            Ok(Balance {
                telegram_id: row.get("telegram_id")?,
                available: row.get("available")?,
                reserved: row.get("reserved")?,
                granted: row.get("granted")?,
                purchased: row.get("purchased")?,
                spent: row.get("spent")?,
                refunded: row.get("refunded")?,
                movements: row.get("movements")?,
                last_sequence: row.get("last_sequence")?,
            })
        })
        .collect()
}

/// The FAL prices and the Stars rate the cost views join, as the operator configured them:
/// replaces whatever an earlier start stored.
pub async fn store_prices(
    tx: &mut Tx<'_>,
    fal: &[(String, f64)],
    stars_usd: f64,
) -> Result<(), ProjectionError> {
    tx.execute("DELETE FROM money_fal_prices", vec![]).await?;
    tx.insert_rows(
        "INSERT INTO money_fal_prices (endpoint, usd)",
        fal.iter()
            .map(|(endpoint, usd)| vec![endpoint.as_str().into(), (*usd).into()])
            .collect(),
        "",
    )
    .await?;
    tx.execute(
        "INSERT INTO money_currency_rates (currency, usd) VALUES ($1, $2)
         ON CONFLICT (currency) DO UPDATE SET usd = excluded.usd",
        vec![STARS_CURRENCY.into(), stars_usd.into()],
    )
    .await?;
    Ok(())
}

/// Telegram's currency code of Stars, under which `money_currency_rates` keeps their USD value.
pub const STARS_CURRENCY: &str = "XTR";

pub(super) fn optional_uuid(row: &SqlRow, column: &str) -> Result<Option<Uuid>, ProjectionError> {
    match row.get::<Option<String>>(column)? {
        None => Ok(None),
        Some(_) => uuid(row, column).map(Some),
    }
}
