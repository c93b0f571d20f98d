//! Promo codes (`promo_codes`) and their uses (`promo_code_uses`): what operators create and how
//! many users may still redeem each. The credits themselves are granted by the ledger
//! (`RedeemPromoCode`, one use per account); this store only counts uses.
//!
//! A use is claimed before the ledger grants: one row per (code, user), inserted idempotently
//! together with the code's counter in one transaction. A crash after the claim leaves a row
//! the user's retry finds and completes; it never grants credits without a counted use.

use chrono::{DateTime, Utc};
use sqlx::Row;

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

const COLUMNS: &str = "code, credits, expires_at, max_uses, uses, created_by, created_at";

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
        let now = Utc::now();
        let sql = "INSERT INTO promo_codes (code, credits, expires_at, max_uses, uses, created_by, created_at)
                   VALUES ($1, $2, $3, $4, 0, $5, $6) ON CONFLICT (code) DO NOTHING";
        let max = max_uses.map(i64::from);
        let inserted = match &self.db {
            Database::Postgres(pool) => sqlx::query(sql)
                .bind(&code)
                .bind(i64::from(credits) as i32)
                .bind(expires_at)
                .bind(max.map(|m| m as i32))
                .bind(created_by)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected(),
            Database::Sqlite(pool) => sqlx::query(&sql.replace('$', "?"))
                .bind(&code)
                .bind(i64::from(credits))
                .bind(expires_at)
                .bind(max)
                .bind(created_by)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        if inserted == 0 {
            return Err(PromoError::Exists(code));
        }
        Ok(self.get(&code).await?.expect("the code just inserted"))
    }

    /// The code, looked up as normalised.
    pub async fn get(&self, code: &str) -> Result<Option<PromoCode>, sqlx::Error> {
        let code = aggregates::account::normalize_promo_code(code);
        let sql = format!("SELECT {COLUMNS} FROM promo_codes WHERE code = $1");
        Ok(match &self.db {
            Database::Postgres(pool) => sqlx::query(&sql)
                .bind(&code)
                .fetch_optional(pool)
                .await?
                .map(|r| pg_row(&r))
                .transpose()?,
            Database::Sqlite(pool) => sqlx::query(&sql.replace('$', "?"))
                .bind(&code)
                .fetch_optional(pool)
                .await?
                .map(|r| sqlite_row(&r))
                .transpose()?,
        })
    }

    /// Every code, newest first.
    pub async fn list(&self) -> Result<Vec<PromoCode>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM promo_codes ORDER BY created_at DESC, code");
        match &self.db {
            Database::Postgres(pool) => sqlx::query(&sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(pg_row)
                .collect(),
            Database::Sqlite(pool) => sqlx::query(&sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(sqlite_row)
                .collect(),
        }
    }

    /// Whether `telegram_id` holds a use of `code` already.
    pub async fn used_by(&self, code: &str, telegram_id: i64) -> Result<bool, sqlx::Error> {
        let sql = "SELECT count(*) FROM promo_code_uses WHERE code = $1 AND telegram_id = $2";
        let n: i64 = match &self.db {
            Database::Postgres(pool) => {
                sqlx::query_scalar(sql)
                    .bind(code)
                    .bind(telegram_id)
                    .fetch_one(pool)
                    .await?
            }
            Database::Sqlite(pool) => {
                sqlx::query_scalar(&sql.replace('$', "?"))
                    .bind(code)
                    .bind(telegram_id)
                    .fetch_one(pool)
                    .await?
            }
        };
        Ok(n > 0)
    }

    /// Claims one use of `code` (normalised) for `telegram_id`: the user's row and the code's
    /// counter in one transaction. The counter only rises below `max_uses`, and PostgreSQL
    /// re-checks that condition on the row it locked, so of two users racing for the last use
    /// one gets it; SQLite has one writer at a time.
    pub async fn claim(&self, code: &str, telegram_id: i64) -> Result<Claim, sqlx::Error> {
        let now = Utc::now();
        let insert = "INSERT INTO promo_code_uses (code, telegram_id, used_at) VALUES ($1, $2, $3)
                      ON CONFLICT (code, telegram_id) DO NOTHING";
        let count = "UPDATE promo_codes SET uses = uses + 1
                      WHERE code = $1 AND (max_uses IS NULL OR uses < max_uses)";
        macro_rules! claim_on {
            ($pool:expr, $fix:expr) => {{
                let mut tx = $pool.begin().await?;
                let inserted = sqlx::query(&$fix(insert))
                    .bind(code)
                    .bind(telegram_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if inserted == 0 {
                    tx.commit().await?;
                    return Ok(Claim::ClaimedBefore);
                }
                let counted = sqlx::query(&$fix(count))
                    .bind(code)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if counted == 0 {
                    tx.rollback().await?;
                    return Ok(Claim::UsedUp);
                }
                tx.commit().await?;
                Ok(Claim::Claimed)
            }};
        }
        match &self.db {
            Database::Postgres(pool) => claim_on!(pool, |s: &str| s.to_owned()),
            Database::Sqlite(pool) => claim_on!(pool, |s: &str| s.replace('$', "?")),
        }
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

fn pg_row(r: &sqlx::postgres::PgRow) -> Result<PromoCode, sqlx::Error> {
    Ok(PromoCode {
        code: r.try_get("code")?,
        credits: r.try_get::<i32, _>("credits")?.max(0) as u32,
        expires_at: r.try_get("expires_at")?,
        max_uses: r
            .try_get::<Option<i32>, _>("max_uses")?
            .map(|m| m.max(0) as u32),
        uses: r.try_get::<i32, _>("uses")?.max(0) as u32,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

fn sqlite_row(r: &sqlx::sqlite::SqliteRow) -> Result<PromoCode, sqlx::Error> {
    Ok(PromoCode {
        code: r.try_get("code")?,
        credits: r.try_get::<i64, _>("credits")?.clamp(0, u32::MAX.into()) as u32,
        expires_at: r.try_get("expires_at")?,
        max_uses: r
            .try_get::<Option<i64>, _>("max_uses")?
            .map(|m| m.clamp(0, u32::MAX.into()) as u32),
        uses: r.try_get::<i64, _>("uses")?.clamp(0, u32::MAX.into()) as u32,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}
