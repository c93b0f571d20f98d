//! Per-user and overall limits on what costs the operator money or storage: avatars, trainings
//! a day, generations waiting and per minute, and an optional cap on paid FAL jobs a day. They
//! are read from the read models when a user asks, so they hold across instances; two requests
//! in the same instant may both pass (a quota is a budget, not a ledger).

use chrono::{Duration, Utc};

use crate::store::{Database, StoreError};

/// The limits; every one configurable, with defaults a normal user never meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub avatars_per_user: i64,
    pub trainings_per_user_per_day: i64,
    pub pending_generations_per_user: i64,
    pub generations_per_user_per_minute: i64,
    /// Paid FAL jobs (trainings and generations) all users together may start a day.
    pub paid_jobs_per_day: Option<i64>,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            avatars_per_user: 10,
            trainings_per_user_per_day: 3,
            pending_generations_per_user: 4,
            generations_per_user_per_minute: 10,
            paid_jobs_per_day: None,
        }
    }
}

/// Which limit a request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaReached {
    Avatars(i64),
    TrainingsToday(i64),
    PendingGenerations(i64),
    GenerationsPerMinute(i64),
    /// The service's daily budget of paid jobs is spent.
    ServiceToday,
}

impl QuotaReached {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Avatars(_) => "avatars",
            Self::TrainingsToday(_) => "trainings_per_day",
            Self::PendingGenerations(_) => "pending_generations",
            Self::GenerationsPerMinute(_) => "generations_per_minute",
            Self::ServiceToday => "paid_jobs_per_day",
        }
    }
}

/// What a user is asking for, as far as quotas care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    Avatar,
    Training,
    Generation,
}

impl Quotas {
    /// May `owner` have what they ask for? `Some` names the limit that says no.
    pub async fn check(
        &self,
        ask: Ask,
        db: &Database,
        owner: i64,
    ) -> Result<Option<QuotaReached>, StoreError> {
        match ask {
            Ask::Avatar => self.check_create(db, owner).await,
            Ask::Training => self.check_training(db, owner).await,
            Ask::Generation => self.check_generation(db, owner).await,
        }
    }

    /// May `owner` create another avatar?
    pub async fn check_create(
        &self,
        db: &Database,
        owner: i64,
    ) -> Result<Option<QuotaReached>, StoreError> {
        let mut conn = db.acquire().await?;
        let have = projections::gallery::count(&mut conn.tx(), owner).await?;
        Ok((have >= self.avatars_per_user).then_some(QuotaReached::Avatars(self.avatars_per_user)))
    }

    /// May `owner` start another training?
    pub async fn check_training(
        &self,
        db: &Database,
        owner: i64,
    ) -> Result<Option<QuotaReached>, StoreError> {
        let mut conn = db.acquire().await?;
        let mut tx = conn.tx();
        let day_ago = Utc::now() - Duration::days(1);
        let started = trainings_started_since(&mut tx, owner, day_ago).await?;
        if started >= self.trainings_per_user_per_day {
            return Ok(Some(QuotaReached::TrainingsToday(
                self.trainings_per_user_per_day,
            )));
        }
        drop(tx);
        self.check_service(db).await
    }

    /// May `owner` ask for another generation?
    pub async fn check_generation(
        &self,
        db: &Database,
        owner: i64,
    ) -> Result<Option<QuotaReached>, StoreError> {
        let mut conn = db.acquire().await?;
        let mut tx = conn.tx();
        let pending = projections::generations::pending_for_owner(&mut tx, owner).await?;
        if pending >= self.pending_generations_per_user {
            return Ok(Some(QuotaReached::PendingGenerations(
                self.pending_generations_per_user,
            )));
        }
        let minute_ago = Utc::now() - Duration::minutes(1);
        let recent =
            projections::generations::requested_by_owner_since(&mut tx, owner, minute_ago).await?;
        if recent >= self.generations_per_user_per_minute {
            return Ok(Some(QuotaReached::GenerationsPerMinute(
                self.generations_per_user_per_minute,
            )));
        }
        drop(tx);
        self.check_service(db).await
    }

    /// Whether the overall daily budget of paid jobs is spent (since 00:00 UTC); the count is
    /// published as `paid_jobs_today` for operators.
    async fn check_service(&self, db: &Database) -> Result<Option<QuotaReached>, StoreError> {
        let Some(cap) = self.paid_jobs_per_day else {
            return Ok(None);
        };
        let mut conn = db.acquire().await?;
        // From the daily counts: deleting an avatar removes its jobs' rows, not what they cost.
        let today =
            projections::analytics::paid_jobs_on(&mut conn.tx(), Utc::now().date_naive()).await?;
        metrics::gauge!("paid_jobs_today").set(today as f64);
        Ok((today >= cap).then_some(QuotaReached::ServiceToday))
    }
}

/// How long a training start counts for the quota, and more: older rows are pruned.
const TRAINING_STARTS_KEPT: Duration = Duration::days(2);

/// Records that `owner` started a training (event `sequence` of `avatar_id`), once: the reactor
/// calls it in its checkpoint's transaction. Rows past two days go at the same time.
pub async fn record_training_start(
    tx: &mut db::Tx<'_>,
    avatar_id: uuid::Uuid,
    sequence: u64,
    owner: i64,
    at: chrono::DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    tx.execute(
        "INSERT INTO quota_training_starts (avatar_id, sequence, owner, started_at)
         VALUES ($1, $2, $3, $4) ON CONFLICT (avatar_id, sequence) DO NOTHING",
        vec![
            avatar_id.into(),
            (sequence as i64).into(),
            owner.into(),
            at.into(),
        ],
    )
    .await?;
    tx.execute(
        "DELETE FROM quota_training_starts WHERE started_at < $1",
        vec![(Utc::now() - TRAINING_STARTS_KEPT).into()],
    )
    .await?;
    Ok(())
}

/// Trainings `owner` started since `since`, deleted avatars' included: each one was a paid job.
async fn trainings_started_since(
    tx: &mut db::Tx<'_>,
    owner: i64,
    since: chrono::DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    Ok(tx
        .fetch_i64(
            "SELECT count(*) FROM quota_training_starts WHERE owner = $1 AND started_at >= $2",
            vec![owner.into(), since.into()],
        )
        .await?
        .unwrap_or(0))
}
