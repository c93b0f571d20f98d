//! One event repository type over both backends, so the rest of Aisha is backend-agnostic.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;

use super::commit::GroupCommit;

/// The postgres-es or sqlite-es repository, chosen from `DATABASE_URL` at start-up.
pub enum AnyRepository {
    Sqlite(SqliteEventRepository),
    /// postgres-es for reads and snapshot commits; the appends we write ourselves, grouped.
    Postgres(PostgresEventRepository, GroupCommit),
}

// Plain delegation: both crates implement the same cqrs-es trait.
macro_rules! delegate {
    ($self:ident, $repo:ident => $call:expr) => {
        match $self {
            AnyRepository::Sqlite($repo) => $call.await,
            AnyRepository::Postgres($repo, _) => $call.await,
        }
    };
}

impl PersistedEventRepository for AnyRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        delegate!(self, r => r.get_events::<A>(aggregate_id))
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        delegate!(self, r => r.get_last_events::<A>(aggregate_id, last_sequence))
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        delegate!(self, r => r.get_snapshot::<A>(aggregate_id))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        match (self, snapshot_update) {
            // Most commits write no snapshot: then one statement is the whole transaction.
            (Self::Postgres(_, appends), None) => appends.append(A::TYPE, events).await,
            (Self::Postgres(r, _), snapshot) => r.persist::<A>(events, snapshot).await,
            (Self::Sqlite(r), snapshot) => r.persist::<A>(events, snapshot).await,
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        delegate!(self, r => r.stream_events::<A>(aggregate_id))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        delegate!(self, r => r.stream_all_events::<A>())
    }
}
