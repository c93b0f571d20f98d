//! Commit notifications between instances on PostgreSQL: writers `NOTIFY` after they commit,
//! and every feed `LISTEN`s, so other instances' readers need not wait for their next poll.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;
use uuid::Uuid;

use super::super::Database;
use super::{CHANNEL, NOTIFY_EVERY};

/// Keeps a LISTEN connection open (reconnecting as needed) and turns notifications into wakes.
pub(super) async fn listen(
    pool: sqlx::PgPool,
    wake: watch::Sender<u64>,
    local: Arc<std::sync::RwLock<HashSet<String>>>,
    alive: std::sync::Weak<()>,
) {
    let mut look = tokio::time::interval(Duration::from_secs(1));
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %crate::telemetry::chain(&e), "feed: LISTEN failed");
                } else {
                    loop {
                        let received = tokio::select! {
                            received = listener.recv() => received,
                            _ = look.tick() => {
                                if alive.strong_count() == 0 {
                                    return;
                                }
                                continue;
                            }
                        };
                        match received {
                            Ok(n) => {
                                let ours =
                                    local.read().is_ok_and(|local| local.contains(n.payload()));
                                if !ours {
                                    wake.send_modify(|n| *n = n.wrapping_add(1));
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %crate::telemetry::chain(&e), "feed: notification stream broke");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::chain(&e), "feed: cannot open LISTEN connection")
            }
        }
        if pool.is_closed() || alive.strong_count() == 0 {
            return;
        }
        // Readers fall back to polling meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Tells the feed readers of other instances that this process has committed events.
///
/// Commits do not notify from inside their own transaction: a transaction that has called NOTIFY
/// holds PostgreSQL's notification-queue lock from its pre-commit until its commit is flushed,
/// so every such commit would wait for the one before it and no two could share a WAL flush.
/// Instead the writer, once its commit is done, asks this notifier, which sends one
/// `pg_notify` in a transaction of its own, and at most one every [`NOTIFY_EVERY`]: requests
/// arriving meanwhile are folded into the next one. Local readers are woken in-process by the
/// writer ([`Feed::notify`]); readers that miss a notification still poll.
#[derive(Clone)]
pub struct CommitNotifier {
    /// The payload of our notifications, so a feed woken in-process can ignore them.
    pub(super) source: String,
    requests: tokio::sync::mpsc::Sender<()>,
}

impl CommitNotifier {
    /// A notifier for writers to `db`, or `None` where no other process could listen (SQLite)
    /// or outside a runtime. Its task ends when the last clone is dropped.
    pub fn new(db: &Database) -> Option<Self> {
        let Database::Postgres(pool) = db else {
            return None;
        };
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        // One request pending is all the coalescing needs: a full channel already means "send
        // one more".
        let (requests, pending) = tokio::sync::mpsc::channel(1);
        let source = Uuid::new_v4().to_string();
        runtime.spawn(send_notifications(pool.clone(), source.clone(), pending));
        Some(Self { source, requests })
    }

    /// Asks for a notification soon; never waits.
    pub fn committed(&self) {
        let _ = self.requests.try_send(());
    }
}

async fn send_notifications(
    pool: sqlx::PgPool,
    source: String,
    mut pending: tokio::sync::mpsc::Receiver<()>,
) {
    while pending.recv().await.is_some() {
        // Its own autocommit transaction; the notification is delivered at commit whether or not
        // that commit is flushed, so it need not wait for the disk.
        let sent =
            sqlx::query("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&source)
                .execute(&pool)
                .await;
        if let Err(e) = sent {
            tracing::debug!(error = %crate::telemetry::chain(&e), "feed: NOTIFY failed; other instances will poll");
        }
        tokio::time::sleep(NOTIFY_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use aggregates::{Action, Actor, AvatarType, Command, Gender};
    use sqlx::PgPool;

    use chrono::Utc;

    use super::*;
    use crate::store::feed::Feed;
    use crate::store::AvatarStore;

    fn create(id: Uuid) -> Command {
        Command::new(
            Actor::User(1),
            Utc::now(),
            Action::Create {
                avatar_id: id,
                name: "wake".into(),
                gender: Gender::Other,
                avatar_type: AvatarType::Portrait,
            },
        )
    }

    /// Commits no longer notify from a trigger: another instance's feed hears of them only
    /// through the writer's own notification (polling would never change `subscribe`).
    #[sqlx::test(migrations = false)]
    async fn a_commit_wakes_the_feed_of_another_instance(pool: PgPool) {
        let db = Database::Postgres(pool);
        db.migrate().await.unwrap();
        let elsewhere = Feed::new(db.clone());
        let mut woken = elsewhere.subscribe();
        // The listener connects in the background; keep committing until one is heard.
        let store = AvatarStore::new(db.clone());
        let heard = async {
            loop {
                let id = Uuid::new_v4();
                store.execute(id, create(id), Uuid::new_v4()).await.unwrap();
                if tokio::time::timeout(Duration::from_millis(200), woken.changed())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), heard)
            .await
            .expect("the other instance's feed was never woken");
    }
}
