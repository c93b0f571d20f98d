//! The money read model as the rest of the binary reads it: the ledger's movements for the
//! balance screen, the open reservations a deadline sweep looks at, and the FAL prices the cost
//! views join. The rows are written by `projections::money`, run by a ledger
//! [`ProjectionRunner`](super::runner::ProjectionRunner); they follow the events by a moment.

use std::time::Duration;

use chrono::{DateTime, Utc};
pub use projections::money::Movement;
use uuid::Uuid;

use super::{Database, StoreError};

/// (telegram id, reservation id) of the reservations the read model still holds open that were
/// made at or before `cutoff`, oldest first. A reservation ended a moment ago may still be
/// listed: callers act through the Account, whose rules make a second end a no-op.
pub async fn open_reservations_before(
    db: &Database,
    cutoff: DateTime<Utc>,
) -> Result<Vec<(i64, Uuid)>, StoreError> {
    let mut conn = db.acquire().await?;
    Ok(projections::money::open_reservations_before(&mut conn.tx(), cutoff).await?)
}

/// The latest `limit` movements of `telegram_id`'s account, newest first.
pub async fn recent_movements(
    db: &Database,
    telegram_id: i64,
    limit: i64,
) -> Result<Vec<Movement>, StoreError> {
    let mut conn = db.acquire().await?;
    Ok(projections::money::recent_movements(&mut conn.tx(), telegram_id, limit).await?)
}

/// Which of `charge_ids` the read model already holds as purchases (it follows the ledger by a
/// moment, so one credited just now may be missing; the ledger itself is the final word).
pub async fn recorded_purchases(
    db: &Database,
    charge_ids: &[String],
) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut conn = db.acquire().await?;
    Ok(projections::money::recorded_purchases(&mut conn.tx(), charge_ids).await?)
}

/// Waits, at most `patience`, until the read model holds `telegram_id`'s movements up to event
/// `sequence` (as [`AccountStore::load_with_sequence`](super::accounts::AccountStore) reported
/// it), so a screen shown right after a payment lists that payment. Returns whether it got there.
pub async fn caught_up_to(
    db: &Database,
    telegram_id: i64,
    sequence: u64,
    patience: Duration,
) -> Result<bool, StoreError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let held = {
            let mut conn = db.acquire().await?;
            projections::money::last_sequence(&mut conn.tx(), telegram_id).await?
        };
        if held >= sequence as i64 {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::debug!(
                telegram_id,
                sequence,
                held,
                "money read model still behind the ledger"
            );
            return Ok(false);
        }
        tokio::time::sleep(CATCH_UP_CHECK_EVERY).await;
    }
}

/// How often [`caught_up_to`] looks again while the read model is behind.
const CATCH_UP_CHECK_EVERY: Duration = Duration::from_millis(20);

/// Stores the operator's FAL prices and Stars rate for the cost views, replacing those of an
/// earlier start (with several instances, the last one started wins).
pub async fn store_prices<'a>(
    db: &Database,
    fal: impl IntoIterator<Item = (&'a str, f64)>,
    stars_usd: f64,
) -> Result<(), StoreError> {
    let prices: Vec<(String, f64)> = fal
        .into_iter()
        .map(|(endpoint, usd)| (endpoint.to_owned(), usd))
        .collect();
    let mut tx = db.begin_write().await?;
    projections::money::store_prices(&mut tx.tx(), &prices, stars_usd).await?;
    tx.commit().await?;
    tracing::info!(
        endpoints = prices.len(),
        stars_usd,
        "FAL prices stored for the money views"
    );
    Ok(())
}
