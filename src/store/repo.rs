//! One event repository type over both backends, so the rest of Aisha is backend-agnostic.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;
use sqlx::PgPool;

/// The postgres-es or sqlite-es repository, chosen from `DATABASE_URL` at start-up.
pub enum AnyRepository {
    Sqlite(SqliteEventRepository),
    /// postgres-es for reads and snapshot commits; the pool for the appends we write ourselves.
    Postgres(PostgresEventRepository, PgPool),
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
            (Self::Postgres(_, pool), None) => append_postgres::<A>(pool, events).await,
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

/// Appends a command's events in one autocommit statement: one round trip where postgres-es
/// spends BEGIN, an INSERT per event and COMMIT. A statement is atomic, so the events of a
/// command still land together or not at all, and a clash on the primary key (another writer
/// took the sequence) is the same optimistic-lock conflict. Being a single INSERT, it also meets
/// what the feed's watermark needs of writers: the lock on `events` is taken when the statement
/// is planned, before the transaction has an id (see src/store/feed.rs).
async fn append_postgres<A: Aggregate>(
    pool: &PgPool,
    events: &[SerializedEvent],
) -> Result<(), PersistenceError> {
    let result = match events {
        [] => return Ok(()),
        [event] => {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                     event_version, payload, metadata)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(A::TYPE)
            .bind(&event.aggregate_id)
            .bind(event.sequence as i64)
            .bind(&event.event_type)
            .bind(&event.event_version)
            .bind(&event.payload)
            .bind(&event.metadata)
            .execute(pool)
            .await
        }
        many => {
            // ORDER BY keeps positions in sequence order, as one INSERT per event would.
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                     event_version, payload, metadata)
                 SELECT $1, u.id, u.seq, u.et, u.ev, u.p::json, u.m::json
                   FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[],
                               $7::jsonb[]) WITH ORDINALITY AS u(id, seq, et, ev, p, m, ord)
                  ORDER BY u.ord",
            )
            .bind(A::TYPE)
            .bind(
                many.iter()
                    .map(|e| e.aggregate_id.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(many.iter().map(|e| e.sequence as i64).collect::<Vec<_>>())
            .bind(
                many.iter()
                    .map(|e| e.event_type.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                many.iter()
                    .map(|e| e.event_version.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(many.iter().map(|e| e.payload.clone()).collect::<Vec<_>>())
            .bind(many.iter().map(|e| e.metadata.clone()).collect::<Vec<_>>())
            .execute(pool)
            .await
        }
    };
    match result {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
            Err(PersistenceError::OptimisticLockError)
        }
        Err(e @ (sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut)) => {
            Err(PersistenceError::ConnectionError(Box::new(e)))
        }
        Err(e) => Err(PersistenceError::UnknownError(Box::new(e))),
    }
}
