//! One event repository type over both backends, so the rest of Aisha is backend-agnostic. It
//! seals what is personal in an Avatar's events and snapshots on the way in and opens it on the
//! way out (see [`super::seal`]): the tables only ever hold the sealed form.

use std::sync::Arc;

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;

use super::commit::GroupCommit;
use super::keys::{avatar_key_id, DataKeys, SecretKey};
use super::seal;

/// The postgres-es or sqlite-es repository, chosen from `DATABASE_URL` at start-up.
pub enum Backend {
    Sqlite(SqliteEventRepository),
    /// postgres-es for reads and snapshot commits; the appends we write ourselves, grouped.
    Postgres(PostgresEventRepository, GroupCommit),
}

/// The repository the stores run on: a backend, and the keys that seal what is personal.
pub struct AnyRepository {
    backend: Backend,
    keys: DataKeys,
}

// Plain delegation: both crates implement the same cqrs-es trait.
macro_rules! delegate {
    ($self:ident, $repo:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($repo) => $call.await,
            Backend::Postgres($repo, _) => $call.await,
        }
    };
}

/// The aggregate type whose events carry personal data sealed per avatar.
const AVATAR: &str = "Avatar";

fn key_error(e: super::StoreError) -> PersistenceError {
    PersistenceError::UnknownError(Box::new(e))
}

impl AnyRepository {
    pub fn new(backend: Backend, keys: DataKeys) -> Self {
        Self { backend, keys }
    }

    /// The key `events` of one avatar are sealed with. A new avatar's key is created with its
    /// first event; an avatar whose key was destroyed gets a key nobody keeps, so whatever it
    /// still records is born erased.
    async fn sealing_key(
        &self,
        events: &[SerializedEvent],
    ) -> Result<Arc<SecretKey>, PersistenceError> {
        let first = &events[0];
        let key_id = avatar_key_id(&first.aggregate_id);
        if first.sequence == 1 && first.event_type == "AvatarCreated" {
            let owner = first
                .payload
                .get("AvatarCreated")
                .and_then(|e| e.get("owner"))
                .and_then(Value::as_i64)
                .unwrap_or_default();
            return self
                .keys
                .create_avatar_key(&first.aggregate_id, owner)
                .await
                .map_err(key_error);
        }
        if let Some(key) = self.keys.open_one(&key_id).await.map_err(key_error)? {
            return Ok(key);
        }
        // No key: either it was destroyed (the avatar is erased, its first event sealed), or
        // the avatar predates data keys (its first event in plain text, until `aisha keys
        // seal-existing` runs): that one gets its key now, so what it records stays readable.
        match self.legacy_owner(&first.aggregate_id).await? {
            Some(owner) => self
                .keys
                .create_avatar_key(&first.aggregate_id, owner)
                .await
                .map_err(key_error),
            None => Ok(Arc::new(SecretKey::random())),
        }
    }

    /// The owner named in plain text by the avatar's `AvatarCreated`, if that event was written
    /// before data keys existed; `None` if it is sealed (or missing).
    async fn legacy_owner(&self, aggregate_id: &str) -> Result<Option<i64>, PersistenceError> {
        let db = self.keys.database();
        let mut conn = db.acquire().await.map_err(|e| key_error(e.into()))?;
        let row = conn
            .tx()
            .fetch_optional(
                "SELECT CAST(payload AS TEXT) AS payload FROM events
                  WHERE aggregate_type = 'Avatar' AND aggregate_id = $1 AND sequence = 1",
                vec![aggregate_id.into()],
            )
            .await
            .map_err(|e| key_error(e.into()))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let payload: String = row.get("payload").map_err(|e| key_error(e.into()))?;
        if seal::mentions_sealed(&payload) {
            return Ok(None);
        }
        Ok(serde_json::from_str::<Value>(&payload)
            .ok()
            .and_then(|v| v["AvatarCreated"]["owner"].as_i64()))
    }

    async fn reading_key(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<Arc<SecretKey>>, PersistenceError> {
        self.keys
            .open_one(&avatar_key_id(aggregate_id))
            .await
            .map_err(key_error)
    }
}

/// Seals one event in place.
pub fn seal_event(event: &mut SerializedEvent, key: &SecretKey) {
    let cx = seal::context(
        &event.aggregate_type,
        &event.aggregate_id,
        event.sequence,
        "payload",
    );
    seal::seal_avatar_payload(&event.event_type, &mut event.payload, key, &cx);
    let cx = seal::context(
        &event.aggregate_type,
        &event.aggregate_id,
        event.sequence,
        "metadata",
    );
    seal::seal_metadata(&mut event.metadata, key, &cx);
}

/// Opens one event in place (placeholders remain if `key` is `None`).
pub fn open_event(event: &mut SerializedEvent, key: Option<&SecretKey>) -> seal::Opened {
    let cx = seal::context(
        &event.aggregate_type,
        &event.aggregate_id,
        event.sequence,
        "payload",
    );
    let opened = seal::open(&mut event.payload, true, key, &cx);
    let cx = seal::context(
        &event.aggregate_type,
        &event.aggregate_id,
        event.sequence,
        "metadata",
    );
    seal::open(&mut event.metadata, false, key, &cx);
    opened
}

fn snapshot_context(aggregate_id: &str) -> Vec<u8> {
    seal::context(AVATAR, aggregate_id, 0, "snapshot")
}

impl AnyRepository {
    async fn opened<A: Aggregate>(
        &self,
        aggregate_id: &str,
        mut events: Vec<SerializedEvent>,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        if A::TYPE != AVATAR || events.is_empty() {
            return Ok(events);
        }
        let key = self.reading_key(aggregate_id).await?;
        for event in &mut events {
            open_event(event, key.as_deref());
        }
        Ok(events)
    }
}

impl PersistedEventRepository for AnyRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = delegate!(self, r => r.get_events::<A>(aggregate_id))?;
        self.opened::<A>(aggregate_id, events).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = delegate!(self, r => r.get_last_events::<A>(aggregate_id, last_sequence))?;
        self.opened::<A>(aggregate_id, events).await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let Some(mut snapshot) = delegate!(self, r => r.get_snapshot::<A>(aggregate_id))? else {
            return Ok(None);
        };
        if A::TYPE != AVATAR {
            return Ok(Some(snapshot));
        }
        let key = self.reading_key(aggregate_id).await?;
        let value = std::mem::take(&mut snapshot.aggregate);
        // A snapshot that no longer opens is as if never taken: the events rebuild the state
        // (erasing an avatar removes its snapshot row with its key, so a later one can be written).
        Ok(
            seal::open_whole(value, key.as_deref(), &snapshot_context(aggregate_id)).map(|value| {
                snapshot.aggregate = value;
                snapshot
            }),
        )
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let sealed_events;
        let mut snapshot_update = snapshot_update;
        let events = if A::TYPE == AVATAR && !events.is_empty() {
            let key = self.sealing_key(events).await?;
            let mut copies = events.to_vec();
            for event in &mut copies {
                seal_event(event, &key);
            }
            if let Some((id, value, n)) = snapshot_update.take() {
                let sealed = seal::seal_whole(&value, &key, &snapshot_context(&id));
                snapshot_update = Some((id, sealed, n));
            }
            sealed_events = copies;
            &sealed_events[..]
        } else {
            events
        };
        match (&self.backend, snapshot_update) {
            // Most commits write no snapshot: then one statement is the whole transaction.
            (Backend::Postgres(_, appends), None) => appends.append(A::TYPE, events).await,
            (Backend::Postgres(r, _), snapshot) => r.persist::<A>(events, snapshot).await,
            (Backend::Sqlite(r), snapshot) => r.persist::<A>(events, snapshot).await,
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        // Opened events need the key, which a raw stream does not carry: read them whole.
        let events = self.get_events::<A>(aggregate_id).await?;
        let (mut feed, stream) = ReplayStream::new(events.len().max(1));
        for event in events {
            feed.push(Ok(event)).await?;
        }
        Ok(stream)
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        if A::TYPE == AVATAR {
            return Err(PersistenceError::UnknownError(
                "streaming every avatar's events is not offered: read the feed".into(),
            ));
        }
        delegate!(self, r => r.stream_all_events::<A>())
    }
}
