//! The worker actors (actix) and the system that runs them: one [`Worker`] per kind of work
//! claims due items and runs each on the tokio runtime.

use std::sync::Arc;

use actix::prelude::*;
use futures::FutureExt;
use tracing::Instrument;

use super::work::WorkQueue;
use super::{
    cancel, cleanup, deadlines, forget, generation, notify, reactors, refund, retention, settle,
    starter, training, watch, ActorSettings, Outcome, Services, WorkHandler,
};
use crate::store::feed::Feed;
use crate::store::StoreError;

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
