//! The send budgets in PostgreSQL, so that every instance on one database counts against the
//! same GCRA buckets: one round trip reserves a send in its chat's bucket and, when the chat's
//! slot has come, in the overall one as well.
//!
//! Times are the database's clock in microseconds since the epoch, so instances whose clocks
//! disagree still agree on the schedule; a caller only learns how long to wait. Chats are keyed
//! by their keyed pseudonym (the one `erase-user` logs), never by their Telegram id.

use std::time::Duration;

use sqlx::PgPool;
use teloxide::types::ChatId;

use super::{Rate, SendLimits};
use crate::store::keys::DataKeys;
use crate::store::{Database, StoreError};

/// A statement with the database's clock as `clock.now_us`, read once (`now()` is the
/// statement's start, so every reading in one statement agrees).
macro_rules! with_clock {
    ($rest:literal) => {
        concat!(
            "WITH clock AS (SELECT (extract(epoch FROM now()) * 1000000)::bigint AS now_us)",
            $rest
        )
    };
}

/// Reserves in the chat's bucket, then — if its slot has come — in the overall one.
const RESERVE: &str = with_clock!(
    ", chat_bucket AS (
         INSERT INTO telegram_send_budgets AS b (chat_key, tat_us)
         SELECT $1, now_us + $2::bigint * $6::bigint FROM clock
         ON CONFLICT (chat_key) DO UPDATE
             SET tat_us = GREATEST(b.tat_us + $2::bigint * $6::bigint, excluded.tat_us)
         RETURNING b.tat_us - $2::bigint - $3::bigint AS at_us
     ),
     overall_bucket AS (
         INSERT INTO telegram_send_budget_overall AS o (id, tat_us)
         SELECT true, clock.now_us + $4::bigint * $6::bigint FROM clock, chat_bucket
          WHERE chat_bucket.at_us <= clock.now_us
         ON CONFLICT (id) DO UPDATE
             SET tat_us = GREATEST(o.tat_us + $4::bigint * $6::bigint, excluded.tat_us)
         RETURNING o.tat_us - $4::bigint - $5::bigint AS at_us
     )
     SELECT clock.now_us,
            GREATEST(chat_bucket.at_us, clock.now_us) AS chat_at_us,
            (SELECT GREATEST(overall_bucket.at_us, clock.now_us) FROM overall_bucket)
                AS overall_at_us
       FROM clock, chat_bucket"
);

const RESERVE_OVERALL: &str = with_clock!(
    " INSERT INTO telegram_send_budget_overall AS o (id, tat_us)
      SELECT true, now_us + $1::bigint * $3::bigint FROM clock
      ON CONFLICT (id) DO UPDATE
          SET tat_us = GREATEST(o.tat_us + $1::bigint * $3::bigint, excluded.tat_us)
      RETURNING (SELECT now_us FROM clock),
                GREATEST(o.tat_us - $1::bigint - $2::bigint, (SELECT now_us FROM clock))"
);

/// The next send is allowed at `tat − tolerance`; this puts that at `now + wait`, never earlier
/// than it already was.
const HOLD_OFF: &str = with_clock!(
    " INSERT INTO telegram_send_budgets AS b (chat_key, tat_us)
      SELECT $1, now_us + $2::bigint + $3::bigint FROM clock
      ON CONFLICT (chat_key) DO UPDATE SET tat_us = GREATEST(b.tat_us, excluded.tat_us)"
);

/// A send now would move `tat` to `max(tat, now) + every` and may go at that minus `every` and
/// the tolerance: `max(tat − tolerance, now)`.
const CHAT_WAIT: &str = with_clock!(
    " SELECT coalesce(max(b.tat_us - $2::bigint - clock.now_us), 0)
        FROM clock LEFT JOIN telegram_send_budgets b ON b.chat_key = $1"
);

/// Rows another instance holds locked are left for the next time.
const PRUNE: &str = with_clock!(
    " DELETE FROM telegram_send_budgets WHERE chat_key IN (
          SELECT chat_key FROM telegram_send_budgets, clock
           WHERE tat_us < clock.now_us
           FOR UPDATE OF telegram_send_budgets SKIP LOCKED)"
);

/// Why the shared budgets could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SharedBudgetError {
    #[error("the send budgets' tables could not be used")]
    Database(#[from] sqlx::Error),
    #[error("the chat's pseudonym could not be made")]
    Pseudonym(#[source] StoreError),
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
}

/// One reservation, in the database's clock (microseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// When it was made.
    pub now_us: i64,
    /// When the chat's budget lets the send go.
    pub chat_at_us: i64,
    /// When the overall budget lets it go; `None` when the chat's slot is later, and the overall
    /// one is to be reserved only once that has come ([`SharedBudgets::reserve_overall`]).
    pub overall_at_us: Option<i64>,
}

impl Reservation {
    /// How long to wait for the chat's slot.
    pub fn chat_wait(&self) -> Duration {
        micros(self.chat_at_us - self.now_us)
    }

    /// How long to wait for the overall slot, if it was reserved.
    pub fn overall_wait(&self) -> Option<Duration> {
        self.overall_at_us.map(|at| micros(at - self.now_us))
    }
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(us.max(0) as u64)
}

/// A duration in whole microseconds, rounded up: a budget's interval rounded down would let
/// slightly more through than the rate (1/30 s is 33,333.3 µs).
fn ceil_micros(d: Duration) -> i64 {
    i64::try_from(d.as_nanos().div_ceil(1000)).unwrap_or(i64::MAX)
}

/// A rate as the statements take it: the interval and the tolerance, in microseconds.
fn rate_us(rate: Rate) -> (i64, i64) {
    let every = ceil_micros(rate.every).max(1);
    (
        every,
        every.saturating_mul(i64::from(rate.burst.saturating_sub(1))),
    )
}

/// The budgets' tables on one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct SharedBudgets {
    pool: PgPool,
    keys: DataKeys,
}

impl SharedBudgets {
    pub fn new(pool: PgPool) -> Self {
        Self {
            keys: DataKeys::new(Database::Postgres(pool.clone())),
            pool,
        }
    }

    async fn chat_key(&self, chat: ChatId) -> Result<String, SharedBudgetError> {
        self.keys
            .pseudonym(chat.0)
            .await
            .map_err(SharedBudgetError::Pseudonym)
    }

    /// Reserves `cost` messages to `chat` in its budget and, if that lets them go at once, in the
    /// overall one too, atomically. (GCRA as in the in-process buckets: `tat` moves to
    /// `max(tat, now) + every × cost`, and the send may go at `tat − every − tolerance`.)
    pub async fn reserve(
        &self,
        chat: ChatId,
        cost: u32,
        limits: &SendLimits,
    ) -> Result<Reservation, SharedBudgetError> {
        let key = self.chat_key(chat).await?;
        let (chat_every, chat_tolerance) = rate_us(limits.for_chat(chat));
        let (overall_every, overall_tolerance) = rate_us(limits.overall);
        let (now_us, chat_at_us, overall_at_us): (i64, i64, Option<i64>) = sqlx::query_as(RESERVE)
            .bind(key)
            .bind(chat_every)
            .bind(chat_tolerance)
            .bind(overall_every)
            .bind(overall_tolerance)
            .bind(i64::from(cost.max(1)))
            .fetch_one(&self.pool)
            .await?;
        Ok(Reservation {
            now_us,
            chat_at_us,
            overall_at_us,
        })
    }

    /// Reserves `cost` messages in the overall budget alone (for a send whose chat slot has just
    /// come); returns the reservation with the chat's slot at `now`.
    pub async fn reserve_overall(
        &self,
        cost: u32,
        rate: Rate,
    ) -> Result<Reservation, SharedBudgetError> {
        let (every, tolerance) = rate_us(rate);
        let (now_us, at_us): (i64, i64) = sqlx::query_as(RESERVE_OVERALL)
            .bind(every)
            .bind(tolerance)
            .bind(i64::from(cost.max(1)))
            .fetch_one(&self.pool)
            .await?;
        Ok(Reservation {
            now_us,
            chat_at_us: now_us,
            overall_at_us: Some(at_us),
        })
    }

    /// Telegram answered 429 for `chat`: no instance sends there for `wait` from now. A shorter
    /// wait never shortens a longer one.
    pub async fn hold_off(
        &self,
        chat: ChatId,
        wait: Duration,
        rate: Rate,
    ) -> Result<(), SharedBudgetError> {
        let key = self.chat_key(chat).await?;
        let (_, tolerance) = rate_us(rate);
        sqlx::query(HOLD_OFF)
            .bind(key)
            .bind(ceil_micros(wait))
            .bind(tolerance)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How long until `chat` may send, without reserving anything.
    pub async fn chat_wait(&self, chat: ChatId, rate: Rate) -> Result<Duration, SharedBudgetError> {
        let key = self.chat_key(chat).await?;
        let (_, tolerance) = rate_us(rate);
        let wait: i64 = sqlx::query_scalar(CHAT_WAIT)
            .bind(key)
            .bind(tolerance)
            .fetch_one(&self.pool)
            .await?;
        Ok(micros(wait))
    }

    /// Deletes the chats whose schedule is behind the clock — as good as new, so they carry no
    /// history — and returns how many. Rows another instance is updating are left for next time.
    pub async fn prune(&self) -> Result<u64, SharedBudgetError> {
        Ok(sqlx::query(PRUNE)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_round_up_so_the_rate_is_never_exceeded() {
        let overall = Rate::per(30, Duration::from_secs(1), 30);
        let (every, tolerance) = rate_us(overall);
        assert_eq!(every, 33_334);
        assert_eq!(tolerance, 29 * 33_334);
        assert!(every * 30 >= 1_000_000);
        let chat = Rate::per(1, Duration::from_secs(1), 3);
        assert_eq!(rate_us(chat), (1_000_000, 2_000_000));
    }

    #[test]
    fn waits_are_never_negative() {
        let r = Reservation {
            now_us: 10,
            chat_at_us: 10,
            overall_at_us: Some(5),
        };
        assert_eq!(r.chat_wait(), Duration::ZERO);
        assert_eq!(r.overall_wait(), Some(Duration::ZERO));
    }
}
