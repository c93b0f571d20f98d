//! Projection rebuilds for operators: one read model by name, the avatar feed's, or every one
//! including the credits ledger's, while the service keeps running.

use std::sync::Arc;
use std::time::{Duration, Instant};

use projections::{LedgerEvent, Projection};
use serde::Serialize;

use super::AuditError;
use crate::store::feed::{Feed, FeedStream};
use crate::store::runner::{ProjectionRunner, Replay};
use crate::store::{Database, StoreError};

/// One projection rebuilt.
#[derive(Debug, Clone, Serialize)]
pub struct Rebuilt {
    pub projection: &'static str,
    pub events: usize,
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Read models chosen for a rebuild: the avatar feed's and the credits ledger's.
pub type Selected = (
    Vec<Arc<dyn Projection>>,
    Vec<Arc<dyn Projection<LedgerEvent>>>,
);

/// The projections `name` selects: the one called so, or all of them (the avatar read models
/// and the ledger's).
pub fn select(name: Option<&str>) -> Result<Selected, AuditError> {
    let Some(name) = name else {
        return Ok((projections::all(), projections::ledger()));
    };
    if let Some(p) = projections::by_name(name) {
        return Ok((vec![p], vec![]));
    }
    if let Some(p) = projections::ledger().into_iter().find(|p| p.name() == name) {
        return Ok((vec![], vec![p]));
    }
    let known: Vec<&str> = projections::names()
        .into_iter()
        .chain(projections::ledger().iter().map(|p| p.name()))
        .collect();
    Err(AuditError::UnknownProjection {
        name: name.to_owned(),
        known: known.join(", "),
    })
}

/// Rebuilds the selected avatar read models (all of them when `name` is `None`; the ledger's are
/// then left alone, see [`rebuild_all`]) from the start of the feed while the service keeps
/// running; on PostgreSQL they rebuild side by side, on SQLite (one writer) one after another.
pub async fn rebuild(feed: &Feed, name: Option<&str>) -> Result<Vec<Rebuilt>, AuditError> {
    let (avatar, ledger) = match name {
        None => (projections::all(), vec![]),
        Some(_) => select(name)?,
    };
    rebuild_selected(feed, avatar, ledger).await
}

/// Rebuilds every read model: the avatar feed's and the credits ledger's.
pub async fn rebuild_all(feed: &Feed) -> Result<Vec<Rebuilt>, AuditError> {
    let (avatar, ledger) = select(None)?;
    rebuild_selected(feed, avatar, ledger).await
}

async fn rebuild_selected(
    feed: &Feed,
    avatar: Vec<Arc<dyn Projection>>,
    ledger: Vec<Arc<dyn Projection<LedgerEvent>>>,
) -> Result<Vec<Rebuilt>, AuditError> {
    let run = |runner: Box<dyn Rebuild>| async move {
        let started = Instant::now();
        let events = runner.rebuild_now().await?;
        Ok::<_, AuditError>(Rebuilt {
            projection: runner.projection_name(),
            events,
            elapsed: started.elapsed(),
        })
    };
    match feed.database() {
        Database::Postgres(pool) => {
            // Side by side, the avatar read models sharing one read of the feed.
            let mut replays = Replay::split(pool, avatar.len())
                .await?
                .map(|r| r.into_iter().map(Some).collect::<Vec<_>>())
                .unwrap_or_default();
            replays.resize_with(avatar.len(), || None);
            let runners = avatar
                .into_iter()
                .zip(replays)
                .map(|(p, replay)| {
                    Box::new(Replaying {
                        runner: ProjectionRunner::new(feed.clone(), p),
                        replay: std::sync::Mutex::new(replay),
                    }) as Box<dyn Rebuild>
                })
                .chain(ledger.into_iter().map(|p| {
                    Box::new(ProjectionRunner::ledger(feed.clone(), p)) as Box<dyn Rebuild>
                }));
            futures::future::join_all(runners.map(run))
                .await
                .into_iter()
                .collect()
        }
        Database::Sqlite(_) => {
            let runners = avatar
                .into_iter()
                .map(|p| Box::new(ProjectionRunner::new(feed.clone(), p)) as Box<dyn Rebuild>)
                .chain(ledger.into_iter().map(|p| {
                    Box::new(ProjectionRunner::ledger(feed.clone(), p)) as Box<dyn Rebuild>
                }));
            let mut done = Vec::new();
            for runner in runners {
                done.push(run(runner).await?);
            }
            Ok(done)
        }
    }
}

/// A rebuild that takes its first batches from a shared [`Replay`].
struct Replaying<E: FeedStream> {
    runner: ProjectionRunner<E>,
    replay: std::sync::Mutex<Option<Replay<E>>>,
}

impl<E: FeedStream> Rebuild for Replaying<E> {
    fn projection_name(&self) -> &'static str {
        self.runner.name()
    }

    fn rebuild_now(&self) -> futures::future::BoxFuture<'_, Result<usize, StoreError>> {
        let replay = self.replay.lock().ok().and_then(|mut r| r.take());
        Box::pin(self.runner.rebuild_replaying(replay))
    }
}

/// A runner of either feed, as a rebuild sees it.
trait Rebuild: Send + Sync {
    fn projection_name(&self) -> &'static str;
    fn rebuild_now(&self) -> futures::future::BoxFuture<'_, Result<usize, StoreError>>;
}

impl<E: FeedStream> Rebuild for ProjectionRunner<E> {
    fn projection_name(&self) -> &'static str {
        self.name()
    }

    fn rebuild_now(&self) -> futures::future::BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(self.rebuild())
    }
}
