//! The settings of how the service runs: its workers' timings, the users' quotas, what an avatar
//! starts with, and the master keys of personal data.

use std::time::Duration;

use clap::Args;

use super::{parse_hours, parse_secs};
use crate::secret::Secret;

/// The workers' timings (`serve`): FAL status polls, deadlines, leases, pruning, health.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Workers")]
pub struct WorkerSettings {
    /// Seconds after a training's submission before the status poller first asks FAL
    /// (the webhook usually brings the result; the polls move the user's progress bar).
    #[arg(long = "status-poll-after-secs", env = "STATUS_POLL_AFTER_SECS",
          default_value = "20", value_parser = parse_secs, global = true)]
    pub status_poll_after: Duration,

    /// Seconds between two status polls of one training.
    #[arg(long = "status-poll-every-secs", env = "STATUS_POLL_EVERY_SECS",
          default_value = "30", value_parser = parse_secs, global = true)]
    pub status_poll_every: Duration,

    /// Seconds after which a training without a result is failed and cancelled.
    #[arg(long = "training-deadline-secs", env = "TRAINING_DEADLINE_SECS",
          default_value = "10800", value_parser = parse_secs, global = true)]
    pub training_deadline: Duration,

    /// Seconds after which a generation without a result is failed and cancelled.
    #[arg(long = "generation-deadline-secs", env = "GENERATION_DEADLINE_SECS",
          default_value = "600", value_parser = parse_secs, global = true)]
    pub generation_deadline: Duration,

    /// Seconds a worker's claim on a work item lasts without a heartbeat; after that another
    /// worker (or instance) may take the item over.
    #[arg(long = "work-lease-secs", env = "WORK_LEASE_SECS",
          default_value = "45", value_parser = parse_secs, global = true)]
    pub work_lease: Duration,

    /// Seconds after which credits reserved for work the avatar never accepted (the process
    /// died in between) are given back.
    #[arg(long = "orphan-reservation-secs", env = "ORPHAN_RESERVATION_SECS",
          default_value = "120", value_parser = parse_secs, global = true)]
    pub orphan_reservation: Duration,

    /// Hours finished work items are kept before they are pruned.
    #[arg(long = "work-retention-hours", env = "WORK_RETENTION_HOURS",
          default_value = "168", value_parser = parse_hours, global = true)]
    pub work_retention: Duration,

    /// Seconds a feed consumer (read model or reactor) may leave an event unread before
    /// `/healthz` reports degraded.
    #[arg(long = "feed-lag-alert-secs", env = "FEED_LAG_ALERT_SECS",
          default_value = "60", value_parser = parse_secs, global = true)]
    pub feed_lag_alert: Duration,

    /// Seconds from SIGTERM to exit: requests and updates in hand are finished within it.
    #[arg(long = "shutdown-grace-secs", env = "SHUTDOWN_GRACE_SECS",
          default_value = "20", value_parser = parse_secs, global = true)]
    pub shutdown_grace: Duration,
}

impl WorkerSettings {
    /// The actors' timings; a zero that would make a worker spin or give up at once is one
    /// second instead.
    pub fn actor_settings(&self) -> crate::actors::ActorSettings {
        let second = Duration::from_secs(1);
        crate::actors::ActorSettings {
            status_poll_after: self.status_poll_after,
            status_poll_every: self.status_poll_every.max(second),
            training_deadline: self.training_deadline,
            generation_deadline: self.generation_deadline.max(second),
            lease: self.work_lease.max(second),
            orphan_reservation_after: self.orphan_reservation.max(second),
            work_retention: self.work_retention,
            ..Default::default()
        }
    }

    /// How long a feed consumer may lag before `/healthz` says so (at least a second).
    pub fn feed_lag_alert(&self) -> Duration {
        self.feed_lag_alert.max(Duration::from_secs(1))
    }
}

/// What one user, and all of them together, may ask for (`serve`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Quotas")]
pub struct LimitSettings {
    /// Avatars one user may have (deleted ones do not count).
    #[arg(
        long = "quota-avatars-per-user",
        env = "QUOTA_AVATARS_PER_USER",
        default_value_t = 10,
        global = true
    )]
    pub avatars_per_user: i64,

    /// Trainings one user may start in 24 hours.
    #[arg(
        long = "quota-trainings-per-day",
        env = "QUOTA_TRAININGS_PER_DAY",
        default_value_t = 3,
        global = true
    )]
    pub trainings_per_day: i64,

    /// Generations one user may have waiting for FAL at once.
    #[arg(
        long = "quota-pending-generations",
        env = "QUOTA_PENDING_GENERATIONS",
        default_value_t = 4,
        global = true
    )]
    pub pending_generations: i64,

    /// Generations one user may ask for in a minute.
    #[arg(
        long = "quota-generations-per-minute",
        env = "QUOTA_GENERATIONS_PER_MINUTE",
        default_value_t = 10,
        global = true
    )]
    pub generations_per_minute: i64,

    /// Paid FAL jobs (trainings and generations) all users together may start per UTC day;
    /// unset: no cap. Today's count is the `paid_jobs_today` gauge.
    #[arg(long = "paid-jobs-per-day", env = "PAID_JOBS_PER_DAY", global = true)]
    pub paid_jobs_per_day: Option<i64>,
}

impl LimitSettings {
    pub fn quotas(&self) -> crate::bot::quotas::Quotas {
        crate::bot::quotas::Quotas {
            avatars_per_user: self.avatars_per_user,
            trainings_per_user_per_day: self.trainings_per_day,
            pending_generations_per_user: self.pending_generations,
            generations_per_user_per_minute: self.generations_per_minute,
            paid_jobs_per_day: self.paid_jobs_per_day,
        }
    }
}

/// How avatars train and what they are shown first.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Avatars")]
pub struct AvatarSettings {
    /// The trainer new style avatars train on: `lora` (FAL's LoRA trainer in style mode) or
    /// `pro_finetune` (the deprecated pro trainer, for accounts where FAL still serves it).
    #[arg(long = "style-trainer", env = "STYLE_TRAINER", default_value = "lora",
          value_parser = parse_style_trainer)]
    pub style_trainer: aggregates::StyleTrainer,

    /// A folder of operator packs (`*.json`, each one pack or a list) added to the shipped
    /// ones; a pack with a shipped pack's id replaces it.
    #[arg(long = "packs-dir", env = "PACKS_DIR")]
    pub packs_dir: Option<std::path::PathBuf>,

    /// Sample images made from the starter pack when a training completes; 0 turns them off.
    #[arg(long = "starter-images", env = "STARTER_IMAGES", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(0..=10))]
    pub starter_images: u32,
}

fn parse_style_trainer(s: &str) -> Result<aggregates::StyleTrainer, String> {
    aggregates::StyleTrainer::parse(s)
        .ok_or_else(|| format!("`{s}`: expected `lora` or `pro_finetune`"))
}

/// The master keys that wrap every user's data key.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Data keys")]
pub struct KeySettings {
    /// The master key that wraps every user's data key (32 bytes: 64 hex digits or base64;
    /// `aisha keys generate` makes one). Never logged. Without it a public development key is
    /// used, which `serve` refuses with live FAL.
    #[arg(long = "data-key", env = "DATA_KEY", hide_env_values = true)]
    pub data_key: Option<Secret>,

    /// The master key being retired during a rotation (`aisha keys rotate` rewraps under
    /// DATA_KEY everything it wrapped).
    #[arg(
        long = "data-key-previous",
        env = "DATA_KEY_PREVIOUS",
        hide_env_values = true
    )]
    pub data_key_previous: Option<Secret>,
}

impl KeySettings {
    /// The master keys from `DATA_KEY` (and `DATA_KEY_PREVIOUS`); the development key if unset.
    pub fn master_keys(
        &self,
    ) -> Result<crate::store::keys::MasterKeys, crate::store::keys::KeyError> {
        use crate::store::keys::{MasterKey, MasterKeys};
        let current = match &self.data_key {
            Some(key) => MasterKey::parse(key.expose())?,
            None => MasterKey::development(),
        };
        let previous = match &self.data_key_previous {
            Some(key) => Some(MasterKey::parse(key.expose())?),
            None => None,
        };
        Ok(MasterKeys { current, previous })
    }
}
