//! The actors (actix) that do Aisha's outside work: train on FAL, generate images, watch running
//! trainings, notify users and clean up after deletions.
//!
//! Work is driven from committed events: reactors (feed consumers in [`reactors`]) enqueue work
//! items in the same transaction as their checkpoint, and one [`Worker`] actor per kind claims
//! due items and runs them with bounded concurrency. The actors live on their own actix system
//! thread; the I/O they start runs on the main tokio runtime, and results come back as messages.

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
pub mod targets;
pub mod training;
pub mod watch;
pub mod work;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::future::BoxFuture;
use futures::FutureExt;
use tracing::Instrument;
use uuid::Uuid;

use crate::fal::FalClient;
use crate::photos::PhotoStore;
use crate::store::feed::Feed;
use crate::store::{AvatarStore, StoreError};

pub use notify::{Notification, Notifier};
pub use progress::{NoProgress, ProgressSink};
pub use targets::WebhookTargets;
use work::{WorkItem, WorkQueue};

/// The system actor name recorded on the commands each actor issues.
pub const TRAINING_ACTOR: &str = "training-actor";
pub const GENERATION_ACTOR: &str = "generation-actor";
pub const WEBHOOK_ACTOR: &str = "fal-webhook";
pub const POLLER_ACTOR: &str = "status-poller";

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
            generation_concurrency: 8,
            max_attempts: 6,
            retry_base: Duration::from_secs(2),
            fal_request_timeout: Duration::from_secs(30),
            deadline_sweep_every: Duration::from_secs(30),
            work_retention: Duration::from_secs(7 * 24 * 3600),
            orphan_reservation_after: Duration::from_secs(120),
            training_photo_retention: Some(crate::config::DEFAULT_PHOTO_RETENTION),
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
            training_photo_retention: Some(crate::config::DEFAULT_PHOTO_RETENTION),
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

/// A worker actor for one kind of work: claims due items up to its concurrency and runs each on
/// the tokio runtime, hearing back through [`Claimed`] and [`Finished`]. At most one task looks
/// for work at a time; only when it finds some does the next one start looking, so an idle
/// worker costs one query per poll, not one per free slot.
pub struct Worker {
    handler: Arc<dyn WorkHandler>,
    queue: WorkQueue,
    settings: ActorSettings,
    runtime: tokio::runtime::Handle,
    in_flight: usize,
    probing: bool,
}

/// Look for due work now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// The looking task found an item: another may start looking.
#[derive(Message)]
#[rtype(result = "()")]
struct Claimed;

/// One claim-and-run task ended; `claimed` says whether it found an item.
#[derive(Message)]
#[rtype(result = "()")]
struct Finished {
    claimed: bool,
}

impl Worker {
    fn fill(&mut self, ctx: &mut Context<Self>) {
        let limit = self.handler.concurrency().max(1);
        if self.probing || self.in_flight >= limit {
            return;
        }
        self.in_flight += 1;
        self.probing = true;
        let addr = ctx.address();
        let handler = self.handler.clone();
        let queue = self.queue.clone();
        let settings = self.settings.clone();
        self.runtime.spawn(async move {
            let on_claim = addr.clone();
            // Whatever happens inside, the slot comes back.
            let claimed = std::panic::AssertUnwindSafe(claim_and_run(
                &*handler,
                &queue,
                &settings,
                move || on_claim.do_send(Claimed),
            ))
            .catch_unwind()
            .await
            // A panic outside the handler: let the next poll look again.
            .unwrap_or(false);
            addr.do_send(Finished { claimed });
        });
    }
}

impl Actor for Worker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.settings.poll_interval, |act, ctx| act.fill(ctx));
        self.fill(ctx);
    }
}

impl Handler<Wake> for Worker {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.fill(ctx);
    }
}

impl Handler<Claimed> for Worker {
    type Result = ();
    fn handle(&mut self, _: Claimed, ctx: &mut Self::Context) {
        self.probing = false;
        // There may be more due work right behind it.
        self.fill(ctx);
    }
}

impl Handler<Finished> for Worker {
    type Result = ();
    fn handle(&mut self, msg: Finished, ctx: &mut Self::Context) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if msg.claimed {
            self.fill(ctx);
        } else {
            // The looking task found nothing (or could not look): the next poll tries again.
            self.probing = false;
        }
    }
}

/// Aborts a task when dropped, so a heartbeat never outlives its handler, even on a panic.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Claims one item and runs it; returns whether there was one. `claimed` is called as soon as
/// an item is held.
async fn claim_and_run(
    handler: &dyn WorkHandler,
    queue: &WorkQueue,
    settings: &ActorSettings,
    claimed: impl FnOnce(),
) -> bool {
    let kind = handler.kind();
    let item = match queue.claim(kind, settings.lease).await {
        Ok(Some(item)) => {
            claimed();
            item
        }
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!(kind, error = %crate::telemetry::chain(&e), "could not claim work");
            tokio::time::sleep(settings.poll_interval).await;
            return false;
        }
    };
    let span = tracing::info_span!("work", kind, key = %item.key, avatar_id = %item.avatar_id, attempt = item.attempts + 1);
    // Keep the claim alive while the handler works; a crash or a pause stops the heartbeat and
    // the item is taken over one lease later. Once the heartbeat learns that another worker
    // holds the item, this one stops.
    let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
    let _heartbeat = {
        let (queue, lease, item) = (queue.clone(), settings.lease, item.clone());
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match queue.extend(&item, lease).await {
                    Ok(()) => {}
                    Err(StoreError::ClaimLost) => {
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(key = %item.key, error = %crate::telemetry::chain(&e), "could not extend a work lease")
                    }
                }
            }
        }))
    };
    let run = std::panic::AssertUnwindSafe(handler.run(&item).instrument(span)).catch_unwind();
    let outcome = tokio::select! {
        result = run => match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(StoreError::ClaimLost)) => {
                tracing::warn!(kind, key = %item.key, "another worker took this item over; stopping without changes");
                return true;
            }
            // A store error (database away) is transient from the work's point of view.
            Ok(Err(e)) => Outcome::Retry(crate::telemetry::chain(&e)),
            Err(panic) => {
                let message = panic_message(&*panic);
                tracing::error!(kind, key = %item.key, panic = %message, "work handler panicked; will retry");
                crate::telemetry::work_panicked(kind);
                Outcome::Retry(format!("the handler panicked: {message}"))
            }
        },
        _ = lost_rx.wait_for(|lost| *lost) => {
            tracing::warn!(kind, key = %item.key, "lost the claim to another worker; stopping without changes");
            return true;
        }
    };
    drop(_heartbeat);
    let failures = item.attempts + 1;
    let result = match outcome {
        Outcome::Done => queue.complete(&item).await,
        Outcome::RetryAfter(delay) => queue.wait(&item, delay).await,
        Outcome::Retry(error)
            if handler
                .max_attempts(settings)
                .is_none_or(|max| failures < max) =>
        {
            tracing::warn!(kind, key = %item.key, failures, %error, "work failed; will retry");
            queue
                .retry_later(&item, settings.backoff(item.attempts), &error)
                .await
        }
        Outcome::Retry(error) => {
            tracing::error!(kind, key = %item.key, failures, %error, "work failed too often; giving up");
            handler.give_up(&item, &error).await;
            queue.fail(&item, &error).await
        }
        Outcome::Failed(error) => {
            tracing::warn!(kind, key = %item.key, %error, "work failed");
            queue.fail(&item, &error).await
        }
    };
    match result {
        Ok(()) => {}
        Err(StoreError::ClaimLost) => {
            tracing::warn!(kind, key = %item.key, "another worker took this item over before its outcome was recorded")
        }
        Err(e) => {
            tracing::error!(kind, key = %item.key, error = %crate::telemetry::chain(&e), "could not record the work's outcome; its lease will lapse and it will run again")
        }
    }
    true
}

/// The running actors; dropping it does not stop them, [`ActorSystem::stop`] does.
pub struct ActorSystem {
    system: actix::System,
    thread: Option<std::thread::JoinHandle<()>>,
    reactor: tokio::task::JoinHandle<()>,
    sweeper: tokio::task::JoinHandle<()>,
    retention: tokio::task::JoinHandle<()>,
}

impl ActorSystem {
    /// Starts the reactor on the tokio runtime and one worker actor per kind of work on a
    /// dedicated actix system thread.
    pub fn start(services: Services, feed: Feed) -> Self {
        let runtime = tokio::runtime::Handle::current();
        let handlers: Vec<Arc<dyn WorkHandler>> = vec![
            Arc::new(training::TrainingHandler {
                services: services.clone(),
            }),
            Arc::new(watch::StatusPoller {
                services: services.clone(),
            }),
            Arc::new(generation::GenerationHandler {
                services: services.clone(),
            }),
            Arc::new(notify::NotifyHandler {
                notifier: services.notifier.clone(),
                queue: services.queue.clone(),
            }),
            Arc::new(cleanup::CleanupHandler {
                services: services.clone(),
            }),
            Arc::new(cancel::CancelHandler {
                services: services.clone(),
            }),
            Arc::new(forget::ForgetHandler {
                services: services.clone(),
            }),
            Arc::new(starter::StarterHandler {
                services: services.clone(),
            }),
            Arc::new(settle::SettleHandler {
                services: services.clone(),
            }),
            Arc::new(refund::RefundHandler::new(&services)),
        ];
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let queue = services.queue.clone();
        let settings = services.settings.clone();
        let thread = std::thread::Builder::new()
            .name("actors".into())
            .spawn(move || {
                let system = actix::System::new();
                system.block_on(async move {
                    let workers: Vec<Addr<Worker>> = handlers
                        .into_iter()
                        .map(|handler| {
                            Worker {
                                handler,
                                queue: queue.clone(),
                                settings: settings.clone(),
                                runtime: runtime.clone(),
                                in_flight: 0,
                                probing: false,
                            }
                            .start()
                        })
                        .collect();
                    let _ = ready_tx.send((actix::System::current(), workers));
                });
                if let Err(e) = system.run() {
                    tracing::error!(error = %crate::telemetry::chain(&e), "actor system stopped with an error");
                }
            })
            .expect("spawn the actor thread");
        let (system, workers) = ready_rx.recv().expect("actor system started");
        let reactor = reactors::ActorReactor {
            status_poll_after: services.settings.status_poll_after,
            charging: services.charging,
        };
        let runner = crate::store::runner::ProjectionRunner::new(feed, Arc::new(reactor))
            .on_commit(move || {
                for worker in &workers {
                    worker.do_send(Wake);
                }
            });
        let reactor = tokio::spawn(runner.run());
        let retention = tokio::spawn(retention::run(services.clone()));
        let sweeper = tokio::spawn(deadlines::run(services));
        Self {
            system,
            thread: Some(thread),
            reactor,
            sweeper,
            retention,
        }
    }

    /// Stops the reactor and the actors; work in flight is picked up again after a restart.
    pub fn stop(mut self) {
        self.reactor.abort();
        self.sweeper.abort();
        self.retention.abort();
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
