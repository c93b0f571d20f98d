//! The actor system: one supervised worker actor per kind of work on a dedicated actix thread,
//! the reactor that queues their work, and the sweepers, started and stopped together.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::worker::{Stop, Stopped, Wake, Worker};
use super::{
    cancel, cleanup, deadlines, forget, generation, notify, reactors, refund, retention, settle,
    starter, training, watch, Services, WorkHandler,
};
use crate::store::feed::Feed;

/// The running actors; dropping it does not stop them, [`ActorSystem::stop`] does.
pub struct ActorSystem {
    system: actix::System,
    thread: Option<std::thread::JoinHandle<()>>,
    stops: Vec<Recipient<Stop>>,
    reactor: tokio::task::JoinHandle<()>,
    sweeper: tokio::task::JoinHandle<()>,
    retention: tokio::task::JoinHandle<()>,
}

/// The addresses the system keeps of one worker: to wake it and to stop it.
type Started = (Recipient<Wake>, Recipient<Stop>);

fn supervise<H: WorkHandler>(
    handler: H,
    services: &Services,
    runtime: &tokio::runtime::Handle,
) -> Started {
    let worker = Worker::new(handler, services, runtime.clone());
    let addr = Supervisor::start(move |_| worker);
    (addr.clone().recipient(), addr.recipient())
}

impl ActorSystem {
    /// Starts the reactor on the tokio runtime and one supervised worker actor per kind of
    /// work on a dedicated actix system thread.
    pub fn start(services: Services, feed: Feed) -> Self {
        let runtime = tokio::runtime::Handle::current();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let on_thread = services.clone();
        let thread = std::thread::Builder::new()
            .name("actors".into())
            .spawn(move || {
                let system = actix::System::new();
                system.block_on(async move {
                    let s = &on_thread;
                    let rt = &runtime;
                    let workers: Vec<Started> = vec![
                        supervise(training::TrainingHandler { services: s.clone() }, s, rt),
                        supervise(watch::StatusPoller { services: s.clone() }, s, rt),
                        supervise(generation::GenerationHandler { services: s.clone() }, s, rt),
                        supervise(
                            notify::NotifyHandler {
                                notifier: s.notifier.clone(),
                                queue: s.queue.clone(),
                            },
                            s,
                            rt,
                        ),
                        supervise(cleanup::CleanupHandler { services: s.clone() }, s, rt),
                        supervise(cancel::CancelHandler { services: s.clone() }, s, rt),
                        supervise(forget::ForgetHandler { services: s.clone() }, s, rt),
                        supervise(starter::StarterHandler { services: s.clone() }, s, rt),
                        supervise(settle::SettleHandler { services: s.clone() }, s, rt),
                        supervise(refund::RefundHandler::new(s), s, rt),
                    ];
                    let _ = ready_tx.send((actix::System::current(), workers));
                });
                if let Err(e) = system.run() {
                    tracing::error!(error = %crate::telemetry::chain(&e), "actor system stopped with an error");
                }
            })
            .expect("spawn the actor thread");
        let (system, workers) = ready_rx.recv().expect("actor system started");
        let (wakes, stops): (Vec<_>, Vec<_>) = workers.into_iter().unzip();
        let reactor = reactors::ActorReactor {
            status_poll_after: services.settings.status_poll_after,
            charging: services.charging,
        };
        let runner = crate::store::runner::ProjectionRunner::new(feed, Arc::new(reactor))
            .on_commit(move || {
                for worker in &wakes {
                    worker.do_send(Wake);
                }
            });
        let reactor = tokio::spawn(runner.run());
        let retention = tokio::spawn(retention::run(services.clone()));
        let sweeper = tokio::spawn(deadlines::run(services));
        Self {
            system,
            thread: Some(thread),
            stops,
            reactor,
            sweeper,
            retention,
        }
    }

    /// Stops the reactor and the actors: nothing new is claimed, the work in flight gets
    /// `finish_within` to end, and what is still running then is aborted and its claims
    /// released, to be taken up again at once by another instance or after a restart.
    pub async fn stop(mut self, finish_within: Duration) -> Stopped {
        self.reactor.abort();
        self.sweeper.abort();
        self.retention.abort();
        let answers = futures::future::join_all(
            self.stops
                .iter()
                .map(|worker| worker.send(Stop { finish_within })),
        )
        .await;
        let mut total = Stopped::default();
        for stopped in answers.into_iter().flatten() {
            total.aborted += stopped.aborted;
            total.released += stopped.released;
        }
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        total
    }
}
