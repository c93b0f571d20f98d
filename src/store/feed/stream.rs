//! The two streams of the feed: a stored `events` row, opened where sealed, becomes a
//! [`FeedEvent`] (Avatar events) or a [`LedgerEvent`] (Account events).

use std::collections::HashMap;
use std::sync::Arc;

use aggregates::{Account, AccountEvent, Avatar, AvatarEvent};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use db::SqlRow;
use projections::{Cursor, FeedEvent, LedgerEvent};
use uuid::Uuid;

use crate::store::keys::SecretKey;
use crate::store::{seal, StoreError};

/// One row of the `events` table as the feed reads it, before it is decoded.
pub struct StoredEvent {
    pub txid: i64,
    pub position: i64,
    pub aggregate_id: String,
    pub sequence: i64,
    pub payload: String,
    pub metadata: String,
    pub recorded_at: DateTime<Utc>,
    /// The key its sealed fields open with; `None` if nothing is sealed or the key is gone.
    pub key: Option<Arc<SecretKey>>,
}

impl StoredEvent {
    pub(super) fn from_row(r: &SqlRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            txid: r.get("tx")?,
            position: r.get("position")?,
            aggregate_id: r.get("aggregate_id")?,
            sequence: r.get("sequence")?,
            payload: r.get("payload")?,
            metadata: r.get("metadata")?,
            // As ever on SQLite, a time it cannot read is taken as now: the feed must go on.
            recorded_at: r.get("recorded_at").unwrap_or_else(|_| Utc::now()),
            key: None,
        })
    }

    pub fn cursor(&self) -> Cursor {
        Cursor {
            txid: self.txid,
            position: self.position,
        }
    }

    fn corrupt(&self, e: serde_json::Error) -> StoreError {
        StoreError::Corrupt(format!("event at position {}: {e}", self.position))
    }

    /// The payload, opened where sealed (placeholders where its key is gone).
    fn payload<T: serde::de::DeserializeOwned>(
        &self,
        aggregate_type: &str,
    ) -> Result<T, StoreError> {
        if !seal::mentions_sealed(&self.payload) {
            return serde_json::from_str(&self.payload).map_err(|e| self.corrupt(e));
        }
        let mut value: serde_json::Value =
            serde_json::from_str(&self.payload).map_err(|e| self.corrupt(e))?;
        let cx = seal::context(
            aggregate_type,
            &self.aggregate_id,
            self.sequence as usize,
            "payload",
        );
        seal::open(&mut value, true, self.key.as_deref(), &cx);
        serde_json::from_value(value).map_err(|e| self.corrupt(e))
    }

    /// The metadata with its sealed entry withheld, not opened ([`seal::withhold_sealed_metadata`]).
    fn metadata(&self) -> HashMap<String, String> {
        let mut metadata = serde_json::from_str(&self.metadata).unwrap_or_default();
        seal::withhold_sealed_metadata(&mut metadata);
        metadata
    }
}

/// The events of one aggregate type as the feed delivers them: which rows, how a row decodes,
/// and how its consumers' checkpoints are named.
pub trait FeedStream: Send + Sync + Sized + 'static {
    /// The `aggregate_type` of its rows.
    const AGGREGATE_TYPE: &'static str;
    /// Put in front of a read model's name to name its checkpoint (and its lock), so that a
    /// consumer's name says which stream it follows.
    const CONSUMER_PREFIX: &'static str;

    fn decode(row: StoredEvent) -> Result<Self, StoreError>;
    fn cursor(&self) -> Cursor;
    fn recorded_at(&self) -> DateTime<Utc>;
}

impl FeedStream for FeedEvent {
    const AGGREGATE_TYPE: &'static str = Avatar::TYPE;
    const CONSUMER_PREFIX: &'static str = "";

    fn decode(row: StoredEvent) -> Result<Self, StoreError> {
        let event: AvatarEvent = row.payload(Self::AGGREGATE_TYPE)?;
        let avatar_id = Uuid::parse_str(&row.aggregate_id).map_err(|e| {
            StoreError::Corrupt(format!("aggregate id `{}`: {e}", row.aggregate_id))
        })?;
        Ok(FeedEvent {
            cursor: row.cursor(),
            avatar_id,
            sequence: row.sequence as u64,
            event,
            metadata: row.metadata(),
            recorded_at: row.recorded_at,
        })
    }

    fn cursor(&self) -> Cursor {
        self.cursor
    }

    fn recorded_at(&self) -> DateTime<Utc> {
        self.recorded_at
    }
}

impl FeedStream for LedgerEvent {
    const AGGREGATE_TYPE: &'static str = Account::TYPE;
    const CONSUMER_PREFIX: &'static str = "ledger:";

    fn decode(row: StoredEvent) -> Result<Self, StoreError> {
        let event: AccountEvent = row.payload(Self::AGGREGATE_TYPE)?;
        let telegram_id =
            aggregates::account::telegram_id_of(&row.aggregate_id).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "aggregate id `{}` of an Account is not `account-<telegram id>`",
                    row.aggregate_id
                ))
            })?;
        Ok(LedgerEvent {
            cursor: row.cursor(),
            telegram_id,
            sequence: row.sequence as u64,
            event,
            metadata: row.metadata(),
            recorded_at: row.recorded_at,
        })
    }

    fn cursor(&self) -> Cursor {
        self.cursor
    }

    fn recorded_at(&self) -> DateTime<Utc> {
        self.recorded_at
    }
}
