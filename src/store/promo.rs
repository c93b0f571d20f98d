//! Promo codes (`promo_codes`) and their uses (`promo_code_uses`): what operators create and how
//! many users may still redeem each. The credits themselves are granted by the ledger
//! (`RedeemPromoCode`, one use per account); this store only counts uses.
//!
//! A use is claimed before the ledger grants: one row per (code, user), inserted idempotently
//! together with the code's counter in one transaction. A crash after the claim leaves a row
//! the user's retry finds and completes; it never grants credits without a counted use.

use chrono::{DateTime, Utc};
use db::{Arg, SqlRow};

use super::Database;

/// A promo code as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromoCode {
    /// Normalised (trimmed, upper case), as the ledger records it.
    pub code: String,
    pub credits: u32,
    /// The first moment the code no longer works; `None`: never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// `None`: no limit.
    pub max_uses: Option<u32>,
    pub uses: u32,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// Why a code cannot be redeemed (before the ledger's own "already used on this account").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromoRefusal {
    Unknown,
    Expired,
    UsedUp,
    AlreadyUsed,
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// A use was counted for this user now.
    Claimed,
    /// This user's use was counted before (a retry): the grant is still to be completed.
    ClaimedBefore,
    /// Every use is taken.
    UsedUp,
}

/// Why a promo code could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum PromoError {
    #[error("promo code {0} exists already")]
    Exists(String),
    #[error("a promo code must not be empty")]
    Empty,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The promo codes over one database.
#[derive(Clone)]
pub struct PromoCodes {
    db: Database,
}

// The counters are `integer` on PostgreSQL: widened so both backends read them as `i64`.
const COLUMNS: &str = "code, CAST(credits AS BIGINT) AS credits, expires_at,
                       CAST(max_uses AS BIGINT) AS max_uses, CAST(uses AS BIGINT) AS uses,
                       created_by, created_at";

impl PromoCodes {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates a code; `code` is normalised first. A code that exists is refused.
    pub async fn add(
        &self,
        code: &str,
        credits: u32,
        expires_at: Option<DateTime<Utc>>,
        max_uses: Option<u32>,
        created_by: &str,
    ) -> Result<PromoCode, PromoError> {
        let code = aggregates::account::normalize_promo_code(code);
        if code.is_empty() {
            return Err(PromoError::Empty);
        }
        let mut conn = self.db.acquire().await?;
        let inserted = conn
            .tx()
            .execute(
                "INSERT INTO promo_codes
                     (code, credits, expires_at, max_uses, uses, created_by, created_at)
                 VALUES ($1, $2, $3, $4, 0, $5, $6) ON CONFLICT (code) DO NOTHING",
                vec![
                    Arg::Text(code.clone()),
                    Arg::I64(credits.into()),
                    Arg::OptTime(expires_at),
                    Arg::OptI64(max_uses.map(i64::from)),
                    Arg::Text(created_by.to_owned()),
                    Arg::Time(Utc::now()),
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(PromoError::Exists(code));
        }
        Ok(self.get(&code).await?.expect("the code just inserted"))
    }

    /// The code, looked up as normalised.
    pub async fn get(&self, code: &str) -> Result<Option<PromoCode>, sqlx::Error> {
        let code = aggregates::account::normalize_promo_code(code);
        let mut conn = self.db.acquire().await?;
        conn.tx()
            .fetch_optional(
                &format!("SELECT {COLUMNS} FROM promo_codes WHERE code = $1"),
                vec![Arg::Text(code)],
            )
            .await?
            .map(|r| row(&r))
            .transpose()
    }

    /// Every code, newest first.
    pub async fn list(&self) -> Result<Vec<PromoCode>, sqlx::Error> {
        let mut conn = self.db.acquire().await?;
        conn.tx()
            .fetch_all(
                &format!("SELECT {COLUMNS} FROM promo_codes ORDER BY created_at DESC, code"),
                vec![],
            )
            .await?
            .iter()
            .map(row)
            .collect()
    }

    /// Whether `telegram_id` holds a use of `code` already.
    pub async fn used_by(&self, code: &str, telegram_id: i64) -> Result<bool, sqlx::Error> {
        let mut conn = self.db.acquire().await?;
        let n = conn
            .tx()
            .fetch_i64(
                "SELECT count(*) FROM promo_code_uses WHERE code = $1 AND telegram_id = $2",
                vec![Arg::Text(code.to_owned()), Arg::I64(telegram_id)],
            )
            .await?;
        Ok(n.unwrap_or(0) > 0)
    }

    /// Claims one use of `code` (normalised) for `telegram_id`: the user's row and the code's
    /// counter in one transaction. The counter only rises below `max_uses`, and PostgreSQL
    /// re-checks that condition on the row it locked, so of two users racing for the last use
    /// one gets it; SQLite has one writer at a time.
    pub async fn claim(&self, code: &str, telegram_id: i64) -> Result<Claim, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let inserted = tx
            .tx()
            .execute(
                "INSERT INTO promo_code_uses (code, telegram_id, used_at) VALUES ($1, $2, $3)
                 ON CONFLICT (code, telegram_id) DO NOTHING",
                vec![
                    Arg::Text(code.to_owned()),
                    Arg::I64(telegram_id),
                    Arg::Time(Utc::now()),
                ],
            )
            .await?;
        if inserted == 0 {
            tx.commit().await?;
            return Ok(Claim::ClaimedBefore);
        }
        let counted = tx
            .tx()
            .execute(
                "UPDATE promo_codes SET uses = uses + 1
                 WHERE code = $1 AND (max_uses IS NULL OR uses < max_uses)",
                vec![Arg::Text(code.to_owned())],
            )
            .await?;
        if counted == 0 {
            tx.rollback().await?;
            return Ok(Claim::UsedUp);
        }
        tx.commit().await?;
        Ok(Claim::Claimed)
    }
}

impl PromoCode {
    /// Whether the code still works at `now` (its uses aside).
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    pub fn used_up(&self) -> bool {
        self.max_uses.is_some_and(|max| self.uses >= max)
    }
}

fn row(r: &SqlRow) -> Result<PromoCode, sqlx::Error> {
    let count = |n: i64| n.clamp(0, u32::MAX.into()) as u32;
    Ok(PromoCode {
        code: r.get("code")?,
        credits: count(r.get("credits")?),
        expires_at: r.get("expires_at")?,
        max_uses: r.get::<Option<i64>>("max_uses")?.map(count),
        uses: count(r.get("uses")?),
        created_by: r.get("created_by")?,
        created_at: r.get("created_at")?,
    })
}
