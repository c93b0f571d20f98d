//! The worker actors (actix): one named actor per kind of work
//! ([`TrainingActor`], [`GenerationActor`], …) claims due items and runs each on the tokio
//! runtime, where the database pool's and the HTTP clients' connections live; the actor decides
//! what runs, when, and how many at once, and ends it on [`Stop`].
//!
//! Each actor is started under actix's [`Supervisor`]: if it ever stops, it is started again,
//! so a kind of work never goes quiet while the process runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use futures::FutureExt;
use tracing::Instrument;

use super::work::{WorkItem, WorkQueue};
use super::{
    cancel, cleanup, forget, generation, notify, refund, settle, starter, training, watch,
    ActorSettings, Outcome, Services, WorkHandler,
};
use crate::store::StoreError;

/// How many tasks of one worker look for due items at once while work keeps turning up:
/// concurrent claims commit together on PostgreSQL (one WAL flush for several), where one look
/// at a time takes a burst up at one commit per item.
const MAX_PROBES: usize = 4;

/// Submits trainings to FAL and records their jobs.
pub type TrainingActor = Worker<training::TrainingHandler>;
/// Polls running trainings and records their outcome.
pub type PollerActor = Worker<watch::StatusPoller>;
/// Submits generations, polls them and records their images.
pub type GenerationActor = Worker<generation::GenerationHandler>;
/// Sends the users what happened.
pub type NotifierActor = Worker<notify::NotifyHandler>;
/// Deletes a deleted avatar's files, here and at FAL.
pub type CleanupActor = Worker<cleanup::CleanupHandler>;
/// Cancels FAL jobs nobody will record.
pub type CancelActor = Worker<cancel::CancelHandler>;
/// Has FAL forget what a finished job left there.
pub type ForgetActor = Worker<forget::ForgetHandler>;
/// Asks for a trained avatar's starter pictures.
pub type StarterActor = Worker<starter::StarterHandler>;
/// Captures or releases the credits reserved for work.
pub type SettleActor = Worker<settle::SettleHandler>;
/// Returns Stars and tells the user.
pub type RefundActor = Worker<refund::RefundHandler>;

/// A worker actor for one kind of work: claims due items up to its concurrency and runs each on
/// the tokio runtime, hearing back through [`Claimed`] and the task's end. While nothing was
/// found one task looks for work at a time, so an idle worker costs one query per poll, not one
/// per free slot; once work turns up, up to [`MAX_PROBES`] look at once.
pub struct Worker<H: WorkHandler> {
    handler: Arc<H>,
    queue: WorkQueue,
    settings: ActorSettings,
    runtime: tokio::runtime::Handle,
    in_flight: usize,
    /// Tasks looking for an item and not holding one yet.
    probing: usize,
    /// The latest look found an item: there may be a burst of due work.
    finding: bool,
    /// Set by [`Stop`]: nothing new is claimed.
    stopping: bool,
    running: Arc<Running>,
    next_task: u64,
}

/// The tasks a worker has started and the items they hold, shared with the tasks so each can
/// say when it holds an item and when it is done with it.
#[derive(Default)]
struct Running {
    tasks: Mutex<HashMap<u64, Task>>,
    /// Counts the tasks still running; [`Stop`] waits for zero.
    left: tokio::sync::watch::Sender<usize>,
}

struct Task {
    abort: tokio::task::AbortHandle,
    /// The item it claimed, until its outcome is recorded.
    item: Option<WorkItem>,
}

impl Running {
    fn hold(&self, id: u64, item: &WorkItem) {
        if let Some(task) = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&id)
        {
            task.item = Some(item.clone());
        }
    }

    fn end(&self, id: u64) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.remove(&id);
        self.left.send_replace(tasks.len());
    }
}

/// Look for due work now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

/// Stop claiming; let the work in flight finish within `finish_within`, then abort what is left
/// and release its claims, so another instance takes those items over at once instead of a
/// lease later. Answers with what became of the work in flight.
#[derive(Message)]
#[rtype(result = "Stopped")]
pub struct Stop {
    pub finish_within: Duration,
}

/// What a worker's [`Stop`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stopped {
    /// Items whose work was cut short and whose claims were released.
    pub released: usize,
    /// Tasks that were still running at the deadline (released or not).
    pub aborted: usize,
}

/// The looking task found an item: another may start looking.
#[derive(Message)]
#[rtype(result = "()")]
struct Claimed;

impl<H: WorkHandler> Worker<H> {
    pub(super) fn new(handler: H, services: &Services, runtime: tokio::runtime::Handle) -> Self {
        Self {
            handler: Arc::new(handler),
            queue: services.queue.clone(),
            settings: services.settings.clone(),
            runtime,
            in_flight: 0,
            probing: 0,
            finding: false,
            stopping: false,
            running: Arc::new(Running::default()),
            next_task: 0,
        }
    }

    fn fill(&mut self, ctx: &mut Context<Self>) {
        let limit = self.handler.concurrency().max(1);
        let probes = if self.finding { MAX_PROBES } else { 1 };
        while !self.stopping && self.probing < probes && self.in_flight < limit {
            self.look(ctx);
        }
    }

    /// Starts one task that claims an item and runs it.
    fn look(&mut self, ctx: &mut Context<Self>) {
        self.in_flight += 1;
        self.probing += 1;
        let on_claim = ctx.address();
        let handler = self.handler.clone();
        let queue = self.queue.clone();
        let settings = self.settings.clone();
        let running = self.running.clone();
        let id = self.next_task;
        self.next_task += 1;
        // The task is registered before it can end, under the same lock it ends with.
        let mut tasks = self.running.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let task = self.runtime.spawn(async move {
            let holder = running.clone();
            let told = Arc::new(AtomicBool::new(false));
            let telling = told.clone();
            // Whatever happens inside, the slot comes back; a panic outside the handler lets
            // the next poll look again.
            let _ = std::panic::AssertUnwindSafe(claim_and_run(
                &*handler,
                &queue,
                &settings,
                move |item| {
                    holder.hold(id, item);
                    telling.store(true, Ordering::Release);
                    on_claim.do_send(Claimed);
                },
            ))
            .catch_unwind()
            .await;
            running.end(id);
            // Whether [`Claimed`] was sent: then it, not the end, counts the look as done.
            told.load(Ordering::Acquire)
        });
        tasks.insert(
            id,
            Task {
                abort: task.abort_handle(),
                item: None,
            },
        );
        self.running.left.send_replace(tasks.len());
        drop(tasks);
        // The actor owns the work in flight: its end comes back to the actor as the rest of
        // this future, in order with the messages it hears.
        ctx.spawn(
            async move { task.await.unwrap_or(false) }
                .into_actor(self)
                .map(|claimed, act, ctx| act.finished(claimed, ctx)),
        );
    }

    /// One claim-and-run task ended; `claimed` says whether it found an item.
    fn finished(&mut self, claimed: bool, ctx: &mut Context<Self>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if claimed {
            self.fill(ctx);
        } else {
            // The looking task found nothing (or could not look): the next poll tries again,
            // with one look.
            self.probing = self.probing.saturating_sub(1);
            self.finding = false;
        }
    }
}

impl<H: WorkHandler> Actor for Worker<H> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.settings.poll_interval, |act, ctx| act.fill(ctx));
        self.fill(ctx);
    }
}

impl<H: WorkHandler> Supervised for Worker<H> {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // A restart drops the futures bound to the old context, so the ends of the tasks still
        // running are no longer heard: the count starts again from zero, and those tasks (their
        // claims heartbeated as before) may briefly run beside a full set of new ones.
        let running = self
            .running
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        self.in_flight = 0;
        self.probing = 0;
        self.finding = false;
        tracing::warn!(
            kind = self.handler.kind(),
            running,
            "worker actor restarted"
        );
    }
}

impl<H: WorkHandler> Handler<Wake> for Worker<H> {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.fill(ctx);
    }
}

impl<H: WorkHandler> Handler<Claimed> for Worker<H> {
    type Result = ();
    fn handle(&mut self, _: Claimed, ctx: &mut Self::Context) {
        self.probing = self.probing.saturating_sub(1);
        self.finding = true;
        // There may be more due work right behind it.
        self.fill(ctx);
    }
}

impl<H: WorkHandler> Handler<Stop> for Worker<H> {
    type Result = ResponseFuture<Stopped>;

    fn handle(&mut self, stop: Stop, _ctx: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        let running = self.running.clone();
        let queue = self.queue.clone();
        let kind = self.handler.kind();
        let mut left = running.left.subscribe();
        // On the main runtime, as all the I/O: a connection opened on the actor thread's
        // runtime would die with it.
        let stopping = self.runtime.spawn(async move {
            let all_done = tokio::time::timeout(stop.finish_within, left.wait_for(|n| *n == 0))
                .await
                .is_ok();
            if all_done {
                return Stopped::default();
            }
            let cut: Vec<Task> = {
                let mut tasks = running.tasks.lock().unwrap_or_else(|e| e.into_inner());
                tasks.drain().map(|(_, task)| task).collect()
            };
            let mut stopped = Stopped {
                aborted: cut.len(),
                ..Stopped::default()
            };
            for task in cut {
                task.abort.abort();
                let Some(item) = task.item else { continue };
                // A paid step already entered keeps its phase: whoever claims the item next
                // knows not to repeat it.
                match queue.release(&item).await {
                    Ok(()) => stopped.released += 1,
                    Err(StoreError::ClaimLost) => {}
                    Err(e) => tracing::warn!(kind, key = %item.key,
                        error = %crate::telemetry::chain(&e), "could not release a work item at stop; its lease will lapse"),
                }
            }
            running.left.send_replace(0);
            tracing::info!(kind, aborted = stopped.aborted, released = stopped.released, "worker stopped with work in flight");
            stopped
        });
        Box::pin(async move { stopping.await.unwrap_or_default() })
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
async fn claim_and_run<H: WorkHandler>(
    handler: &H,
    queue: &WorkQueue,
    settings: &ActorSettings,
    claimed: impl FnOnce(&WorkItem),
) -> bool {
    let kind = handler.kind();
    let item = match queue.claim(kind, settings.lease).await {
        Ok(Some(item)) => {
            claimed(&item);
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
