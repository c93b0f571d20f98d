//! Group commit of appends on PostgreSQL: commands decided at the same moment, on any
//! aggregates, are appended by one `INSERT` — one round trip and one WAL flush for all of them —
//! instead of each committing alone and queueing for the disk behind the others.
//!
//! Nothing waits for a batch to fill: a command whose append finds a free slot (one of
//! [`LEADERS`]) inserts at once, with whatever else is queued; the ones arriving meanwhile queue,
//! and the leader that finishes takes them all next. A lone command is one statement, as before.
//! A batch is all or nothing, so when it fails (one command lost the race for its sequence, the
//! connection broke) each of its commands is appended again on its own and gets its own answer:
//! a conflict stays that command's optimistic-lock conflict, and the others land.

use std::sync::Mutex;

use cqrs_es::persist::{PersistenceError, SerializedEvent};
use sqlx::PgPool;
use tokio::sync::oneshot;

/// Appends in flight at once; each holds one pooled connection while it runs.
pub const LEADERS: usize = 4;

/// One command's events, waiting for its batch.
struct Pending {
    aggregate_type: &'static str,
    events: Vec<SerializedEvent>,
    done: oneshot::Sender<Result<(), PersistenceError>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Pending>,
    leaders: usize,
}

/// The appends of one pool, grouped.
pub struct GroupCommit {
    pool: PgPool,
    queue: Mutex<Queue>,
}

impl GroupCommit {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            queue: Mutex::default(),
        }
    }

    /// Appends one command's events (in sequence order) and returns once they are durable, or
    /// with the reason they are not.
    pub async fn append(
        &self,
        aggregate_type: &'static str,
        events: &[SerializedEvent],
    ) -> Result<(), PersistenceError> {
        if events.is_empty() {
            return Ok(());
        }
        let (done, result) = oneshot::channel();
        let lead = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.waiting.push(Pending {
                aggregate_type,
                events: events.to_vec(),
                done,
            });
            (queue.leaders < LEADERS).then(|| {
                queue.leaders += 1;
                std::mem::take(&mut queue.waiting)
            })
        };
        if let Some(batch) = lead {
            self.lead(batch).await;
        }
        result.await.unwrap_or_else(|_| {
            Err(PersistenceError::UnknownError(
                "the append was dropped before it finished".into(),
            ))
        })
    }

    /// Appends batches until the queue is empty; the check for more and giving up the slot
    /// happen under one lock, so a command that queued behind this leader is never stranded.
    async fn lead(&self, mut batch: Vec<Pending>) {
        // If this future is dropped mid-batch, the slot must still be given back.
        let _slot = Slot(&self.queue);
        loop {
            self.write(batch).await;
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if queue.waiting.is_empty() {
                return;
            }
            batch = std::mem::take(&mut queue.waiting);
        }
    }

    async fn write(&self, batch: Vec<Pending>) {
        if batch.len() == 1 {
            let one = batch.into_iter().next().expect("one");
            let result = insert(&self.pool, &[(one.aggregate_type, &one.events)]).await;
            let _ = one.done.send(result);
            return;
        }
        let commands: Vec<(&'static str, &Vec<SerializedEvent>)> = batch
            .iter()
            .map(|p| (p.aggregate_type, &p.events))
            .collect();
        match insert(&self.pool, &commands).await {
            Ok(()) => {
                metrics::histogram!("event_append_batch_commands").record(batch.len() as f64);
                for p in batch {
                    let _ = p.done.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::debug!(commands = batch.len(), error = %crate::telemetry::chain(&e),
                    "grouped append failed; appending its commands one by one");
                for p in batch {
                    let result = insert(&self.pool, &[(p.aggregate_type, &p.events)]).await;
                    let _ = p.done.send(result);
                }
            }
        }
    }
}

/// Gives a leader's slot back when it stops, however it stops.
struct Slot<'a>(&'a Mutex<Queue>);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.lock().unwrap_or_else(|e| e.into_inner());
        queue.leaders -= 1;
    }
}

/// One autocommit `INSERT` of every command's events, each command's in sequence order: one
/// round trip where postgres-es spends BEGIN, an INSERT per event and COMMIT. A statement is
/// atomic, so a command's events land together or not at all, and a clash on the primary key
/// (another writer took the sequence) is the optimistic-lock conflict. Being a single INSERT, it
/// also meets what the feed's watermark needs of writers: the lock on `events` is taken when the
/// statement is planned, before the transaction has an id (see src/store/feed.rs).
async fn insert(
    pool: &PgPool,
    commands: &[(&'static str, &Vec<SerializedEvent>)],
) -> Result<(), PersistenceError> {
    let rows = commands.iter().map(|(_, events)| events.len()).sum();
    let mut types = Vec::with_capacity(rows);
    let mut ids = Vec::with_capacity(rows);
    let mut sequences = Vec::with_capacity(rows);
    let mut event_types = Vec::with_capacity(rows);
    let mut versions = Vec::with_capacity(rows);
    let mut payloads = Vec::with_capacity(rows);
    let mut metadata = Vec::with_capacity(rows);
    for (aggregate_type, events) in commands {
        for e in events.iter() {
            types.push(*aggregate_type);
            ids.push(e.aggregate_id.as_str());
            sequences.push(e.sequence as i64);
            event_types.push(e.event_type.as_str());
            versions.push(e.event_version.as_str());
            payloads.push(&e.payload);
            metadata.push(&e.metadata);
        }
    }
    let result = if rows == 1 {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(types[0])
        .bind(ids[0])
        .bind(sequences[0])
        .bind(event_types[0])
        .bind(versions[0])
        .bind(payloads[0])
        .bind(metadata[0])
        .execute(pool)
        .await
    } else {
        // ORDER BY keeps positions in row order, as one INSERT per event would.
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata)
             SELECT u.t, u.id, u.seq, u.et, u.ev, u.p::json, u.m::json
               FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                           $6::jsonb[], $7::jsonb[])
                    WITH ORDINALITY AS u(t, id, seq, et, ev, p, m, ord)
              ORDER BY u.ord",
        )
        .bind(types)
        .bind(ids)
        .bind(sequences)
        .bind(event_types)
        .bind(versions)
        .bind(payloads)
        .bind(metadata)
        .execute(pool)
        .await
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
