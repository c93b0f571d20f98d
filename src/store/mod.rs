//! The event store: SQLite or PostgreSQL behind cqrs-es, and command execution with retries.
//!
//! [`Database`] owns the connection pool and the migrations; [`AvatarStore`] executes Avatar
//! commands (load → decide → append, retried on a concurrent-write conflict) and reads an
//! avatar's history for auditors.

pub mod accounts;
pub mod checkpoints;
mod commit;
pub mod feed;
pub mod keys;
pub mod locks;
pub mod money;
pub mod promo;
mod repo;
pub mod runner;
pub mod seal;
mod upgrade;

use std::collections::HashMap;
use std::time::Duration;

use aggregates::{Avatar, AvatarError, AvatarEvent, Command};
use chrono::{DateTime, Utc};
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use rand::Rng;
use serde::Serialize;
use uuid::Uuid;

pub use db::Database;
pub use repo::AnyRepository;
pub use upgrade::{seal_existing, SealedCounts};

use crate::telemetry::{self, outcome};

/// How many events an avatar may gain between snapshots; loading replays at most this many.
pub const SNAPSHOT_EVERY: usize = 100;
/// Attempts for a command that keeps meeting concurrent writers on the same avatar.
const MAX_ATTEMPTS: u32 = 16;
pub use db::IDLE_IN_TRANSACTION_TIMEOUT;

/// Metadata keys recorded with every event.
pub const META_ACTOR: &str = "actor";
pub const META_CORRELATION: &str = "correlation_id";
pub const META_COMMAND: &str = "command";

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The domain refused the command; nothing was written.
    #[error(transparent)]
    Rejected(#[from] AvatarError),
    #[error("the avatar kept changing under concurrent commands; gave up after {0} attempts")]
    Conflict(u32),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The event-sourcing framework failed below the domain (its own connection handling).
    #[error("event store")]
    EventStore(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A task doing store work on another thread died (a panic) before answering.
    #[error("{0}")]
    Task(&'static str, #[source] tokio::task::JoinError),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("the database schema is not up to date ({pending} migrations pending): run `aisha migrate` first")]
    SchemaBehind { pending: usize },
    /// A work item's claim passed to another worker; the old claimant must change nothing.
    #[error("the work item was claimed by another worker")]
    ClaimLost,
    #[error("unsupported DATABASE_URL scheme `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// A data key could not be used (DATA_KEY missing or wrong, or the key table damaged).
    #[error("data keys: {0}")]
    Keys(#[source] keys::KeyError),
    /// The credits ledger failed where an avatar step needed it.
    #[error("credits ledger: {0}")]
    Ledger(#[source] Box<accounts::AccountStoreError>),
}

impl From<db::DbError> for StoreError {
    fn from(error: db::DbError) -> Self {
        match error {
            db::DbError::Driver(e) => Self::Database(e),
            db::DbError::Migrate(e) => Self::Migrate(e),
            db::DbError::SchemaBehind { pending } => Self::SchemaBehind { pending },
            db::DbError::UnsupportedUrl(scheme) => Self::UnsupportedUrl(scheme),
        }
    }
}

/// The outcome of a command that was accepted.
#[derive(Debug)]
pub struct Executed {
    /// The events it appended (empty when the command changed nothing, e.g. a duplicate).
    pub events: Vec<EventEnvelope<Avatar>>,
    /// The avatar as it is after those events.
    pub state: Avatar,
}

/// One event of an avatar's history, as an auditor reads it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub sequence: u64,
    pub position: Option<i64>,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    pub correlation_id: Option<String>,
    pub command: Option<String>,
    /// Its personal fields were sealed with a key since destroyed: they read `[erased]`.
    pub erased: bool,
    pub event: AvatarEvent,
}

/// Executes Avatar commands against the event store and reads avatars back.
pub struct AvatarStore {
    db: Database,
    events: PersistedEventStore<AnyRepository, Avatar>,
    feed: Option<feed::Feed>,
    /// Wakes other instances' readers after our commits (PostgreSQL only).
    notifier: Option<feed::CommitNotifier>,
    cache: AggregateCache,
    /// The keys its repository seals with; one cache, so a key this process destroys is
    /// forgotten by its reads at once.
    keys: keys::DataKeys,
}

/// The event repository over `db`, shared by the avatar and account stores, sealing with `keys`.
pub(crate) fn repository(db: &Database, keys: keys::DataKeys) -> AnyRepository {
    let backend = match db {
        Database::Sqlite(pool) => {
            repo::Backend::Sqlite(sqlite_es::SqliteEventRepository::new(pool.clone()))
        }
        Database::Postgres(pool) => repo::Backend::Postgres(
            postgres_es::PostgresEventRepository::new(pool.clone()),
            commit::GroupCommit::new(pool.clone()),
        ),
    };
    AnyRepository::new(backend, keys)
}

impl AvatarStore {
    pub fn new(db: Database) -> Self {
        let keys = keys::DataKeys::new(db.clone());
        let repo = repository(&db, keys.clone());
        let notifier = feed::CommitNotifier::new(&db);
        Self {
            db,
            events: PersistedEventStore::new_snapshot_store(repo, SNAPSHOT_EVERY),
            feed: None,
            notifier,
            cache: AggregateCache::default(),
            keys,
        }
    }

    /// Wakes this feed's local readers after every commit, so they need not wait for a poll.
    pub fn notifying(mut self, feed: feed::Feed) -> Self {
        if let Some(notifier) = &self.notifier {
            feed.wakes_locally(notifier);
        }
        self.feed = Some(feed);
        self
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Runs a command: load the avatar, let the domain decide, append the events. A concurrent
    /// append to the same avatar makes the append fail as a whole; the command is then decided
    /// again on the fresh state, so nothing is lost and nothing is written twice.
    #[tracing::instrument(
        name = "command",
        skip_all,
        fields(avatar_id = %avatar_id, command = command.name(), actor = %command.by)
    )]
    pub async fn execute(
        &self,
        avatar_id: Uuid,
        command: Command,
        correlation_id: Uuid,
    ) -> Result<Executed, StoreError> {
        let id = avatar_id.to_string();
        let metadata = HashMap::from([
            (META_ACTOR.to_owned(), command.by.to_string()),
            (META_CORRELATION.to_owned(), correlation_id.to_string()),
            (META_COMMAND.to_owned(), command.name().to_owned()),
        ]);
        let result = self.execute_with_retries(&id, &command, metadata).await;
        let outcome = match &result {
            Ok(done) if done.events.is_empty() => outcome::UNCHANGED,
            Ok(_) => outcome::ACCEPTED,
            Err(StoreError::Rejected(_)) => outcome::REJECTED,
            Err(StoreError::Conflict(_)) => outcome::CONFLICT,
            Err(_) => outcome::ERROR,
        };
        telemetry::command(command.name(), outcome);
        result
    }

    async fn execute_with_retries(
        &self,
        id: &str,
        command: &Command,
        metadata: HashMap<String, String>,
    ) -> Result<Executed, StoreError> {
        let mut fresh = false;
        for attempt in 1..=MAX_ATTEMPTS {
            let cached = if fresh { None } else { self.cache.take(id) };
            let from_cache = cached.is_some();
            let context = match cached {
                Some(context) => context,
                None => self
                    .events
                    .load_aggregate(id)
                    .await
                    .map_err(from_aggregate)?,
            };
            // Decide on a copy: the context must keep the state *before* the new events, since
            // the snapshot writer applies them to it once more.
            let mut state = context.aggregate.clone();
            let sink = cqrs_es::event_sink::EventSink::default();
            let result = state.handle(command.clone(), &(), &sink).await;
            let new_events = sink.collect().await;
            if from_cache && (result.is_err() || new_events.is_empty()) {
                // Only an append proves the cached state was current; a refusal or a no-op
                // decided on it is checked again against the database.
                fresh = true;
                continue;
            }
            if let Err(refusal) = result {
                tracing::info!(reason = %refusal, "command refused");
                self.cache.put(context);
                return Err(StoreError::Rejected(refusal));
            }
            if new_events.is_empty() {
                self.cache.put(context);
                return Ok(Executed {
                    events: vec![],
                    state,
                });
            }
            let (before, snapshot) = (context.current_sequence, context.current_snapshot);
            let added = new_events.len();
            match self
                .events
                .commit(new_events, context, metadata.clone())
                .await
            {
                Ok(events) => {
                    if let Some(feed) = &self.feed {
                        feed.notify();
                    }
                    if let Some(notifier) = &self.notifier {
                        notifier.committed();
                    }
                    let after = before + added;
                    let wrote_snapshot = after / SNAPSHOT_EVERY > before / SNAPSHOT_EVERY;
                    self.cache.put(EventStoreAggregateContext {
                        aggregate_id: id.to_owned(),
                        aggregate: state.clone(),
                        current_sequence: after,
                        current_snapshot: if wrote_snapshot {
                            Some(snapshot.map_or(1, |n| n + 1))
                        } else {
                            snapshot
                        },
                    });
                    return Ok(Executed { events, state });
                }
                Err(AggregateError::AggregateConflict) => {
                    tracing::debug!(attempt, "concurrent write on the same avatar; retrying");
                    fresh = true;
                    let pause = rand::thread_rng().gen_range(0..=2u64 * u64::from(attempt));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(other) => return Err(from_aggregate(other)),
            }
        }
        Err(StoreError::Conflict(MAX_ATTEMPTS))
    }

    /// The avatar's current state (from its latest snapshot plus the events after it).
    pub async fn load(&self, avatar_id: Uuid) -> Result<Avatar, StoreError> {
        let context = self
            .events
            .load_aggregate(&avatar_id.to_string())
            .await
            .map_err(from_aggregate)?;
        Ok(context.aggregate)
    }

    /// The avatar as this process last wrote or read it, if it is still cached; without a round
    /// trip, but possibly behind what another instance wrote since. For a hint that a fresh
    /// [`Self::load`] or a command then confirms (a command decided on it conflicts if stale).
    pub fn recent(&self, avatar_id: Uuid) -> Option<Avatar> {
        self.cache.peek(&avatar_id.to_string())
    }

    /// Every event of one avatar in order, with who caused it and when it was recorded.
    pub async fn history(&self, avatar_id: Uuid) -> Result<Vec<HistoryEntry>, StoreError> {
        let id = avatar_id.to_string();
        let rows = raw_history(&self.db, Avatar::TYPE, &id).await?;
        // Read from the table, not the cache: an auditor must see a destroyed key as gone.
        let key = {
            let mut conn = self.db.acquire().await?;
            let key_id = keys::avatar_key_id(&id);
            keys::open_on(&mut conn.tx(), std::slice::from_ref(&key_id))
                .await?
                .remove(&key_id)
                .flatten()
        };
        rows.into_iter()
            .map(|row| row.into_entry(&id, key.as_deref()))
            .collect()
    }

    /// The data keys this store seals avatars' personal data with.
    pub fn keys(&self) -> &keys::DataKeys {
        &self.keys
    }
}

/// One stored event as read back, before its payload is decoded for its aggregate.
pub(crate) struct RawHistoryRow {
    pub(crate) sequence: i64,
    pub(crate) position: Option<i64>,
    pub(crate) event_type: String,
    pub(crate) event_version: String,
    pub(crate) payload: String,
    pub(crate) metadata: String,
    pub(crate) recorded_at: Option<DateTime<Utc>>,
}

/// Every stored event of one aggregate in order, on either backend (avatars and accounts share
/// the events table).
pub(crate) async fn raw_history(
    db: &Database,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<RawHistoryRow>, sqlx::Error> {
    let mut conn = db.acquire().await?;
    conn.tx()
        .fetch_all(
            "SELECT sequence, position, event_type, event_version,
                    CAST(payload AS TEXT) AS payload, CAST(metadata AS TEXT) AS metadata,
                    recorded_at
               FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
              ORDER BY sequence",
            vec![aggregate_type.into(), aggregate_id.into()],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(RawHistoryRow {
                sequence: r.get("sequence")?,
                position: r.get("position")?,
                event_type: r.get("event_type")?,
                event_version: r.get("event_version")?,
                payload: r.get("payload")?,
                metadata: r.get("metadata")?,
                // An auditor still sees an event whose time SQLite cannot read, without one.
                recorded_at: r.get("recorded_at").ok().flatten(),
            })
        })
        .collect()
}

impl RawHistoryRow {
    fn into_entry(
        self,
        aggregate_id: &str,
        key: Option<&keys::SecretKey>,
    ) -> Result<HistoryEntry, StoreError> {
        let corrupt = |e: serde_json::Error| {
            StoreError::Corrupt(format!(
                "event {} of type {}: {e}",
                self.sequence, self.event_type
            ))
        };
        let mut payload: serde_json::Value =
            serde_json::from_str(&self.payload).map_err(corrupt)?;
        let sequence = self.sequence as usize;
        let cx = seal::context(Avatar::TYPE, aggregate_id, sequence, "payload");
        let opened = seal::open(&mut payload, true, key, &cx);
        let event: AvatarEvent = serde_json::from_value(payload).map_err(corrupt)?;
        let mut metadata: serde_json::Value =
            serde_json::from_str(&self.metadata).unwrap_or_default();
        let cx = seal::context(Avatar::TYPE, aggregate_id, sequence, "metadata");
        seal::open(&mut metadata, false, key, &cx);
        let metadata: HashMap<String, String> =
            serde_json::from_value(metadata).unwrap_or_default();
        Ok(HistoryEntry {
            sequence: self.sequence as u64,
            position: self.position,
            event_type: self.event_type,
            event_version: self.event_version,
            recorded_at: self.recorded_at,
            actor: metadata.get(META_ACTOR).cloned(),
            correlation_id: metadata.get(META_CORRELATION).cloned(),
            command: metadata.get(META_COMMAND).cloned(),
            erased: opened == seal::Opened::Erased,
            event,
        })
    }
}

/// Recently used avatars with the sequence (and snapshot number) they were current at, so a
/// command usually skips the two reads of a load. A stale entry (another instance wrote since)
/// cannot do harm: its append conflicts on the sequence and the avatar is loaded afresh.
#[derive(Default)]
struct AggregateCache {
    entries: std::sync::Mutex<HashMap<String, EventStoreAggregateContext<Avatar>>>,
}

/// Avatars kept in [`AggregateCache`]; a small state each.
const CACHED_AVATARS: usize = 10_000;

impl AggregateCache {
    /// Takes the entry out, so two concurrent commands never decide on the same copy.
    fn take(&self, id: &str) -> Option<EventStoreAggregateContext<Avatar>> {
        self.entries.lock().ok()?.remove(id)
    }

    /// A copy of the entry's state, leaving it in place.
    fn peek(&self, id: &str) -> Option<Avatar> {
        self.entries
            .lock()
            .ok()?
            .get(id)
            .map(|c| c.aggregate.clone())
    }

    fn put(&self, context: EventStoreAggregateContext<Avatar>) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CACHED_AVATARS {
            // Any victim will do: a miss costs one load.
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(context.aggregate_id.clone(), context);
    }
}

fn from_aggregate(e: AggregateError<AvatarError>) -> StoreError {
    match e {
        AggregateError::UserError(refusal) => StoreError::Rejected(refusal),
        AggregateError::AggregateConflict => StoreError::Conflict(1),
        AggregateError::DatabaseConnectionError(e) => StoreError::EventStore(e),
        AggregateError::DeserializationError(e) => StoreError::Corrupt(e.to_string()),
        AggregateError::UnexpectedError(e) => StoreError::EventStore(e),
    }
}
