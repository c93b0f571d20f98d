//! The credits ledger's storage: Account events in the same `events` table as avatars (aggregate
//! type `Account`, id `account-<telegram id>`), executed with the same retry on concurrent writes.
//!
//! The avatar feed, the projections and the avatar audit select `aggregate_type = 'Avatar'`, so
//! account events never reach them; the ledger is read through [`AccountStore`] only.

use std::collections::HashMap;
use std::time::Duration;

use aggregates::account::{account_id, ensure_own_account, telegram_id_of};
use aggregates::{Account, AccountCommand, AccountError, AccountEvent};
use chrono::{DateTime, Utc};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use rand::Rng;
use serde::Serialize;
use uuid::Uuid;

use super::{
    AnyRepository, Database, RawHistoryRow, MAX_ATTEMPTS, META_ACTOR, META_COMMAND,
    META_CORRELATION, SNAPSHOT_EVERY,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the ledger could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AccountStoreError {
    /// The account refused the command; nothing was written.
    #[error("refused: {0}")]
    Rejected(#[from] AccountError),
    #[error("the account kept changing under concurrent commands; gave up after {0} attempts")]
    Conflict(u32),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event store error: {0}")]
    EventStore(#[source] BoxError),
    #[error("event {sequence} of {aggregate_id} could not be read: {source}")]
    CorruptEvent {
        aggregate_id: String,
        sequence: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error("stored account events could not be read: {0}")]
    CorruptStore(#[source] BoxError),
    #[error("aggregate id `{0}` of an Account is not `account-<telegram id>`")]
    ForeignAccountId(String),
}

/// The outcome of an account command that was accepted.
#[derive(Debug)]
pub struct ExecutedAccount {
    /// The events it appended (empty when the command changed nothing, e.g. a duplicate payment).
    pub events: Vec<EventEnvelope<Account>>,
    /// The account as it is after those events.
    pub state: Account,
}

/// An account as loaded (latest snapshot plus the events after it), with the sequence of the
/// last event it includes, so an auditor can replay exactly as far.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedAccount {
    pub state: Account,
    pub sequence: u64,
}

/// One movement of an account, as an auditor or operator reads it.
#[derive(Debug, Clone, Serialize)]
pub struct AccountHistoryEntry {
    pub sequence: u64,
    pub position: Option<i64>,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: Option<DateTime<Utc>>,
    pub actor: Option<String>,
    pub correlation_id: Option<String>,
    pub command: Option<String>,
    pub event: AccountEvent,
}

impl AccountHistoryEntry {
    /// When the movement happened (the command's time, not the row's).
    pub fn at(&self) -> DateTime<Utc> {
        self.event.at()
    }
}

/// Executes Account commands against the event store and reads accounts back.
pub struct AccountStore {
    db: Database,
    events: PersistedEventStore<AnyRepository, Account>,
    feed: Option<super::feed::Feed>,
    /// Wakes other instances' readers after our commits (PostgreSQL only).
    notifier: Option<super::feed::CommitNotifier>,
}

impl AccountStore {
    pub fn new(db: Database) -> Self {
        let repo = super::repository(&db, super::keys::DataKeys::new(db.clone()));
        let notifier = super::feed::CommitNotifier::new(&db);
        Self {
            db,
            events: PersistedEventStore::new_snapshot_store(repo, SNAPSHOT_EVERY),
            feed: None,
            notifier,
        }
    }

    /// Wakes this feed's local readers (the money read model) after every commit, so a
    /// movement shows without waiting for a poll.
    pub fn notifying(mut self, feed: super::feed::Feed) -> Self {
        if let Some(notifier) = &self.notifier {
            feed.wakes_locally(notifier);
        }
        self.feed = Some(feed);
        self
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Runs a command on `telegram_id`'s account: load, decide, append. A concurrent append to
    /// the same account fails as a whole and the command is decided again on the fresh state, so
    /// two reservations racing for the last credits cannot both pass and a payment delivered
    /// twice at once is credited once.
    #[tracing::instrument(
        name = "account_command",
        skip_all,
        fields(telegram_id = telegram_id, command = command.name(), actor = %command.by)
    )]
    pub async fn execute(
        &self,
        telegram_id: i64,
        command: AccountCommand,
        correlation_id: Uuid,
    ) -> Result<ExecutedAccount, AccountStoreError> {
        let id = account_id(telegram_id);
        // The aggregate never sees its own id, so the owner check happens here, before any load.
        if let Err(refusal) = ensure_own_account(&id, &command.by) {
            tracing::warn!(reason = %refusal, "account command for someone else's account");
            return Err(refusal.into());
        }
        let metadata = HashMap::from([
            (META_ACTOR.to_owned(), command.by.to_string()),
            (META_CORRELATION.to_owned(), correlation_id.to_string()),
            (META_COMMAND.to_owned(), command.name().to_owned()),
        ]);
        self.execute_with_retries(&id, &command, metadata).await
    }

    async fn execute_with_retries(
        &self,
        id: &str,
        command: &AccountCommand,
        metadata: HashMap<String, String>,
    ) -> Result<ExecutedAccount, AccountStoreError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let context = self
                .events
                .load_aggregate(id)
                .await
                .map_err(from_aggregate)?;
            // Decide on a copy: the context must keep the state *before* the new events, since
            // the snapshot writer applies them to it once more.
            let mut state = context.aggregate.clone();
            let sink = cqrs_es::event_sink::EventSink::default();
            let result = state.handle(command.clone(), &(), &sink).await;
            let new_events = sink.collect().await;
            if let Err(refusal) = result {
                tracing::info!(reason = %refusal, "account command refused");
                return Err(AccountStoreError::Rejected(refusal));
            }
            if new_events.is_empty() {
                return Ok(ExecutedAccount {
                    events: vec![],
                    state,
                });
            }
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
                    tracing::info!(
                        events = events.len(),
                        available = state.available(),
                        reserved = state.reserved(),
                        "account command accepted"
                    );
                    return Ok(ExecutedAccount { events, state });
                }
                Err(AggregateError::AggregateConflict) => {
                    tracing::debug!(attempt, "concurrent write on the same account; retrying");
                    let pause = rand::thread_rng().gen_range(0..=2u64 * u64::from(attempt));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(other) => return Err(from_aggregate(other)),
            }
        }
        Err(AccountStoreError::Conflict(MAX_ATTEMPTS))
    }

    /// The account's current state; an account with no events is the empty one.
    pub async fn load(&self, telegram_id: i64) -> Result<Account, AccountStoreError> {
        Ok(self.load_with_sequence(telegram_id).await?.state)
    }

    /// The account's current state and the sequence of the last event it includes (0: none).
    pub async fn load_with_sequence(
        &self,
        telegram_id: i64,
    ) -> Result<LoadedAccount, AccountStoreError> {
        let context = self
            .events
            .load_aggregate(&account_id(telegram_id))
            .await
            .map_err(from_aggregate)?;
        Ok(LoadedAccount {
            state: context.aggregate,
            sequence: context.current_sequence as u64,
        })
    }

    /// Every telegram id that has an account (at least one event), in ascending order.
    pub async fn accounts(&self) -> Result<Vec<i64>, AccountStoreError> {
        let mut conn = self.db.acquire().await?;
        let ids: Vec<String> = conn
            .tx()
            .fetch_all(
                "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $1",
                vec![Account::TYPE.into()],
            )
            .await?
            .iter()
            .map(|r| r.get("aggregate_id"))
            .collect::<Result<_, _>>()?;
        drop(conn);
        let mut telegram_ids = ids
            .into_iter()
            .map(|id| telegram_id_of(&id).ok_or(AccountStoreError::ForeignAccountId(id)))
            .collect::<Result<Vec<_>, _>>()?;
        telegram_ids.sort_unstable();
        Ok(telegram_ids)
    }

    /// Every event of one account in order, with who caused it and when it was recorded.
    pub async fn history(
        &self,
        telegram_id: i64,
    ) -> Result<Vec<AccountHistoryEntry>, AccountStoreError> {
        let id = account_id(telegram_id);
        let rows = super::raw_history(&self.db, Account::TYPE, &id).await?;
        rows.into_iter().map(|row| entry(row, &id)).collect()
    }
}

fn entry(row: RawHistoryRow, aggregate_id: &str) -> Result<AccountHistoryEntry, AccountStoreError> {
    let event: AccountEvent =
        serde_json::from_str(&row.payload).map_err(|source| AccountStoreError::CorruptEvent {
            aggregate_id: aggregate_id.to_owned(),
            sequence: row.sequence,
            source,
        })?;
    // Metadata only explains an event; an unreadable one must not hide the movement.
    let metadata: HashMap<String, String> = serde_json::from_str(&row.metadata).unwrap_or_default();
    Ok(AccountHistoryEntry {
        sequence: row.sequence as u64,
        position: row.position,
        event_type: row.event_type,
        event_version: row.event_version,
        recorded_at: row.recorded_at,
        actor: metadata.get(META_ACTOR).cloned(),
        correlation_id: metadata.get(META_CORRELATION).cloned(),
        command: metadata.get(META_COMMAND).cloned(),
        event,
    })
}

fn from_aggregate(e: AggregateError<AccountError>) -> AccountStoreError {
    match e {
        AggregateError::UserError(refusal) => AccountStoreError::Rejected(refusal),
        AggregateError::AggregateConflict => AccountStoreError::Conflict(1),
        AggregateError::DatabaseConnectionError(e) | AggregateError::UnexpectedError(e) => {
            AccountStoreError::EventStore(e)
        }
        AggregateError::DeserializationError(e) => AccountStoreError::CorruptStore(e),
    }
}

#[cfg(test)]
mod tests {
    use aggregates::{AccountAction, Actor};

    use super::*;

    async fn sqlite() -> (Database, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        let db = Database::connect(&url).await.expect("open sqlite");
        db.migrate().await.expect("migrate");
        (db, dir)
    }

    fn grant(credits: u32, reason: &str) -> AccountCommand {
        AccountCommand::new(
            Actor::Operator("ops".into()),
            Utc::now(),
            AccountAction::GrantCredits {
                credits,
                reason: reason.into(),
            },
        )
    }

    #[tokio::test]
    async fn a_grant_is_stored_under_the_users_account_with_its_metadata() {
        let (db, _dir) = sqlite().await;
        let store = AccountStore::new(db);
        let correlation = Uuid::new_v4();
        let done = store
            .execute(77, grant(30, "goodwill"), correlation)
            .await
            .unwrap();
        assert_eq!(done.state.available(), 30);
        assert_eq!(done.events.len(), 1);
        assert_eq!(done.events[0].aggregate_id, "account-77");

        assert_eq!(store.accounts().await.unwrap(), vec![77]);
        assert_eq!(store.load(77).await.unwrap(), done.state);
        let history = store.history(77).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].event_type, "CreditsGranted");
        assert_eq!(history[0].actor.as_deref(), Some("operator:ops"));
        assert_eq!(history[0].command.as_deref(), Some("grant_credits"));
        assert_eq!(
            history[0].correlation_id.as_deref(),
            Some(correlation.to_string().as_str())
        );
        assert!(history[0].recorded_at.is_some());
    }

    #[tokio::test]
    async fn a_refusal_keeps_the_domain_error_and_writes_nothing() {
        let (db, _dir) = sqlite().await;
        let store = AccountStore::new(db);
        let err = store
            .execute(77, grant(30, "   "), Uuid::new_v4())
            .await
            .unwrap_err();
        assert!(
            matches!(err, AccountStoreError::Rejected(AccountError::EmptyReason)),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_some());
        assert!(store.accounts().await.unwrap().is_empty());
        assert_eq!(store.load_with_sequence(77).await.unwrap().sequence, 0);
    }

    #[tokio::test]
    async fn an_account_id_that_names_no_telegram_user_is_reported() {
        let (db, _dir) = sqlite().await;
        let Database::Sqlite(pool) = &db else {
            unreachable!()
        };
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata)
             VALUES ('Account', 'account-x', 1, 'CreditsGranted', '1', '{}', '{}')",
        )
        .execute(pool)
        .await
        .unwrap();
        let err = AccountStore::new(db.clone()).accounts().await.unwrap_err();
        assert!(
            matches!(&err, AccountStoreError::ForeignAccountId(id) if id == "account-x"),
            "{err}"
        );
    }
}
