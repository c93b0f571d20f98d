//! The actors (actix) that do Aisha's outside work: train on FAL, generate images, watch running
//! trainings, notify users and clean up after deletions.
//!
//! Work is driven from committed events: reactors (feed consumers in [`reactors`]) enqueue work
//! items in the same transaction as their checkpoint, and one named actor per kind
//! ([`TrainingActor`], [`GenerationActor`], [`PollerActor`], [`NotifierActor`], [`CleanupActor`],
//! …) claims due items and runs them with bounded concurrency.
//!
//! What actix gives: each actor owns its scheduling state alone (no locks around "how many are
//! running"), hears wake-ups, results and [`Stop`] as messages in order, and is restarted by its
//! supervisor if it ever stops. The I/O it starts runs on the main tokio runtime.

pub mod cancel;
pub mod cleanup;
pub mod copies;
pub mod deadlines;
pub mod forget;
pub mod generation;
pub mod notify;
pub mod progress;
pub mod reactors;
pub mod refund;
pub mod retention;
pub mod settle;
pub mod starter;
pub mod system;
pub mod targets;
pub mod training;
pub mod watch;
pub mod work;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use uuid::Uuid;

use crate::fal::FalClient;
use crate::photos::PhotoStore;
use crate::store::{AvatarStore, StoreError};

pub use notify::{Notification, Notifier};
pub use progress::{NoProgress, ProgressSink};
pub use system::ActorSystem;
pub use targets::WebhookTargets;
use work::{WorkItem, WorkQueue};
pub use worker::{
    CancelActor, CleanupActor, ForgetActor, GenerationActor, NotifierActor, PollerActor,
    RefundActor, SettleActor, StarterActor, Stop, Stopped, TrainingActor, Wake, Worker,
};

/// Who issued a command: the system names recorded on the commands the actors (and the FAL
/// webhook) issue.
pub mod by {
    pub const TRAINING: &str = "training-actor";
    pub const GENERATION: &str = "generation-actor";
    pub const WEBHOOK: &str = "fal-webhook";
    pub const POLLER: &str = "status-poller";
    pub const SETTLEMENT: &str = "settlement";
    pub const RETENTION: &str = "photo-retention";
    pub const STARTER: &str = "starter-samples";
}

/// Timing of the actors; tests shorten it.
#[derive(Debug, Clone)]
pub struct ActorSettings {
    /// How often each worker looks for due work when nothing woke it.
    pub poll_interval: Duration,
    /// How long a claimed item is ours before another worker may take it over.
    pub lease: Duration,
    /// After submission, when the poller first asks FAL about a training: early enough for the
    /// user's progress bar to start moving (the result usually comes by webhook).
    pub status_poll_after: Duration,
    /// Between two status polls of the same training.
    pub status_poll_every: Duration,
    /// A training without a result after this long is failed and cancelled.
    pub training_deadline: Duration,
    /// Between two status polls of a running generation.
    pub generation_poll_every: Duration,
    /// A generation without a result after this long is failed.
    pub generation_deadline: Duration,
    /// Concurrent generations (a batch runs this wide).
    pub generation_concurrency: usize,
    /// Attempts for an item whose failures are transient, before giving up visibly.
    pub max_attempts: i32,
    /// Base of the exponential backoff between attempts.
    pub retry_base: Duration,
    /// How long one FAL API call may take before it counts as timed out.
    pub fal_request_timeout: Duration,
    /// How often the deadline sweeper looks for overdue trainings and generations.
    pub deadline_sweep_every: Duration,
    /// How long finished work items are kept before they are pruned.
    pub work_retention: Duration,
    /// Credits reserved this long ago for work the avatar never accepted are given back.
    pub orphan_reservation_after: Duration,
    /// A trained avatar's photos are deleted this long after its training succeeded (`None`:
    /// kept); the application sets it from `TRAINING_PHOTO_RETENTION_DAYS`.
    pub training_photo_retention: Option<Duration>,
}

impl Default for ActorSettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            lease: Duration::from_secs(45),
            status_poll_after: Duration::from_secs(20),
            status_poll_every: Duration::from_secs(30),
            training_deadline: Duration::from_secs(3 * 3600),
            generation_poll_every: Duration::from_secs(2),
            generation_deadline: Duration::from_secs(600),
            // A slot is held only while a step runs (submit, record, a poll), not while FAL
            // works, so this bounds our own concurrent steps, not FAL's queue.
            generation_concurrency: 16,
            max_attempts: 6,
            retry_base: Duration::from_secs(2),
            fal_request_timeout: Duration::from_secs(30),
            deadline_sweep_every: Duration::from_secs(30),
            work_retention: Duration::from_secs(7 * 24 * 3600),
            orphan_reservation_after: Duration::from_secs(120),
            training_photo_retention: Some(retention::DEFAULT_PHOTO_RETENTION),
        }
    }
}

impl ActorSettings {
    /// Fast timings for tests and the offline demo.
    pub fn fast() -> Self {
        Self {
            poll_interval: Duration::from_millis(50),
            lease: Duration::from_secs(3),
            status_poll_after: Duration::from_millis(1500),
            status_poll_every: Duration::from_millis(300),
            training_deadline: Duration::from_secs(60),
            generation_poll_every: Duration::from_millis(100),
            generation_deadline: Duration::from_secs(60),
            generation_concurrency: 8,
            max_attempts: 4,
            retry_base: Duration::from_millis(100),
            fal_request_timeout: Duration::from_secs(2),
            deadline_sweep_every: Duration::from_millis(200),
            work_retention: Duration::from_secs(24 * 3600),
            // Far above a reserve-then-start on a slow machine, so a test never races it.
            orphan_reservation_after: Duration::from_secs(30),
            training_photo_retention: Some(retention::DEFAULT_PHOTO_RETENTION),
        }
    }

    /// Backoff before attempt `attempts + 1`.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let exp = attempts.clamp(0, 10) as u32;
        self.retry_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(Duration::from_secs(300))
    }
}

/// What the actors need from the rest of Aisha.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<AvatarStore>,
    pub queue: WorkQueue,
    pub fal: FalClient,
    pub photos: PhotoStore,
    pub notifier: Arc<dyn Notifier>,
    /// Where the status poller shows how far running trainings are.
    pub progress: Arc<dyn ProgressSink>,
    /// Our webhook URLs for FAL; without a public base URL jobs are polled.
    pub webhooks: WebhookTargets,
    pub settings: ActorSettings,
    /// The samples asked for when a training completes.
    pub starter: crate::packs::StarterPlan,
    /// The credits ledger, where paid work is settled.
    pub accounts: Arc<crate::store::accounts::AccountStore>,
    /// Whether paid work is charged (`PAYMENTS` on): outcomes then capture or release credits.
    pub charging: bool,
    /// Telegram's side of refunds in Stars (the bot; [`refund::NoStarRefunds`] without one).
    pub refunds: Arc<dyn refund::StarRefunds>,
}

impl Services {
    /// The webhook URL FAL should call for a training of `avatar_id`.
    pub fn training_webhook(&self, avatar_id: Uuid) -> Option<String> {
        self.webhooks.training(avatar_id)
    }

    /// The webhook URL FAL should call for a generation.
    pub fn generation_webhook(&self, avatar_id: Uuid, generation_id: Uuid) -> Option<String> {
        self.webhooks.generation(avatar_id, generation_id)
    }
}

/// How a handler finished an item.
#[derive(Debug)]
pub enum Outcome {
    Done,
    /// A transient problem: a failed attempt; try again after the backoff (or give up after
    /// too many in a row).
    Retry(String),
    /// Not a failure: look again after exactly this long (a FAL job still running).
    RetryAfter(Duration),
    /// Permanent; the handler has already told the avatar (and so the user) if needed.
    Failed(String),
}

/// Runs one kind of work item.
pub trait WorkHandler: Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    fn concurrency(&self) -> usize {
        4
    }
    /// Failed attempts in a row before [`WorkHandler::give_up`]; `None` never gives up (the
    /// attempts back off to the longest pause instead), for work whose end is guarded
    /// elsewhere, like a deadline.
    fn max_attempts(&self, settings: &ActorSettings) -> Option<i32> {
        Some(settings.max_attempts)
    }
    fn run<'a>(&'a self, item: &'a WorkItem) -> BoxFuture<'a, Result<Outcome, StoreError>>;
    /// Called when an item has been retried too often; should fail the avatar's operation
    /// visibly. Default: nothing beyond marking the item failed.
    fn give_up<'a>(&'a self, _item: &'a WorkItem, _error: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}
