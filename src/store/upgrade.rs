//! `aisha keys seal-existing`: seals, in place, the personal data of events and snapshots written
//! before data keys existed. A deleted avatar's old events are sealed with a key nobody keeps, so
//! nothing readable remains of them; a live avatar's get its key (under its owner's) as new ones do.

use std::sync::Arc;

use db::Arg;
use serde_json::Value;

use super::keys::{avatar_key_id, DataKeys, SecretKey};
use super::{seal, Database, StoreError};

/// What one run sealed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SealedCounts {
    pub events: u64,
    pub snapshots: u64,
}

struct Row {
    sequence: i64,
    event_type: String,
    payload: String,
    metadata: String,
}

/// Seals every Avatar event and snapshot that is not sealed yet. Idempotent; safe beside a
/// running service (it only rewrites rows that still hold their unsealed text).
pub async fn seal_existing(db: &Database) -> Result<SealedCounts, StoreError> {
    let keys = DataKeys::new(db.clone());
    let mut counts = SealedCounts::default();
    let ids: Vec<String> = {
        let mut conn = db.acquire().await?;
        let rows = conn
            .tx()
            .fetch_all(
                "SELECT DISTINCT aggregate_id FROM events
                  WHERE aggregate_type = 'Avatar'
                    AND CAST(payload AS TEXT) NOT LIKE '%\"_sealed\"%'",
                vec![],
            )
            .await?;
        rows.iter()
            .map(|r| r.get::<String>("aggregate_id"))
            .collect::<Result<_, _>>()?
    };
    for id in ids {
        let done = seal_avatar(db, &keys, &id).await?;
        counts.events += done.events;
        counts.snapshots += done.snapshots;
    }
    tracing::info!(
        events = counts.events,
        snapshots = counts.snapshots,
        "old events sealed"
    );
    Ok(counts)
}

async fn seal_avatar(db: &Database, keys: &DataKeys, id: &str) -> Result<SealedCounts, StoreError> {
    let mut conn = db.acquire().await?;
    let rows: Vec<Row> = conn
        .tx()
        .fetch_all(
            &format!(
                "SELECT sequence, event_type, CAST(payload AS TEXT) AS payload,
                        CAST(metadata AS TEXT) AS metadata FROM events
                  WHERE aggregate_type = 'Avatar' AND aggregate_id = $1 ORDER BY sequence"
            ),
            vec![id.into()],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Row {
                sequence: r.get("sequence")?,
                event_type: r.get("event_type")?,
                payload: r.get("payload")?,
                metadata: r.get("metadata")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    drop(conn);
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("avatar {id}: {e}"));
    let deleted = rows.iter().any(|r| r.event_type == "AvatarDeleted");
    let key: Arc<SecretKey> = if deleted {
        // Its data should be gone already: seal it with a key that is never stored.
        Arc::new(SecretKey::random())
    } else if let Some(key) = keys.open_one(&avatar_key_id(id)).await? {
        key
    } else {
        let owner = rows
            .iter()
            .find(|r| r.event_type == "AvatarCreated")
            .map(|r| serde_json::from_str::<Value>(&r.payload))
            .transpose()
            .map_err(corrupt)?
            .and_then(|v| v["AvatarCreated"]["owner"].as_i64())
            .unwrap_or_default();
        keys.create_avatar_key(id, owner).await?
    };
    let mut counts = SealedCounts::default();
    let mut conn = db.acquire().await?;
    for row in rows {
        if seal::mentions_sealed(&row.payload) || seal::mentions_sealed(&row.metadata) {
            continue;
        }
        let sequence = row.sequence as usize;
        let mut payload: Value = serde_json::from_str(&row.payload).map_err(corrupt)?;
        let mut metadata: Value = serde_json::from_str(&row.metadata).map_err(corrupt)?;
        seal::seal_avatar_payload(
            &row.event_type,
            &mut payload,
            &key,
            &seal::context("Avatar", id, sequence, "payload"),
        );
        seal::seal_metadata(
            &mut metadata,
            &key,
            &seal::context("Avatar", id, sequence, "metadata"),
        );
        let (payload, metadata) = (payload.to_string(), metadata.to_string());
        if payload == row.payload && metadata == row.metadata {
            continue;
        }
        counts.events += conn
            .tx()
            .execute(
                "UPDATE events SET payload = $1, metadata = $2
                  WHERE aggregate_type = 'Avatar' AND aggregate_id = $3 AND sequence = $4
                    AND CAST(payload AS TEXT) = $5",
                vec![
                    Arg::JsonText(payload),
                    Arg::JsonText(metadata),
                    id.into(),
                    row.sequence.into(),
                    row.payload.into(),
                ],
            )
            .await?;
    }
    if deleted {
        conn.tx()
            .execute(
                "DELETE FROM snapshots WHERE aggregate_type = 'Avatar' AND aggregate_id = $1",
                vec![id.into()],
            )
            .await?;
        return Ok(counts);
    }
    let snapshots = conn
        .tx()
        .fetch_all(
            "SELECT last_sequence, CAST(payload AS TEXT) AS payload FROM snapshots
              WHERE aggregate_type = 'Avatar' AND aggregate_id = $1",
            vec![id.into()],
        )
        .await?;
    for snapshot in snapshots {
        let text: String = snapshot.get("payload")?;
        let last: i64 = snapshot.get("last_sequence")?;
        if seal::mentions_sealed(&text) {
            continue;
        }
        let value: Value = serde_json::from_str(&text).map_err(corrupt)?;
        let sealed = seal::seal_whole(&value, &key, &seal::context("Avatar", id, 0, "snapshot"));
        counts.snapshots += conn
            .tx()
            .execute(
                "UPDATE snapshots SET payload = $1
                  WHERE aggregate_type = 'Avatar' AND aggregate_id = $2 AND last_sequence = $3
                    AND CAST(payload AS TEXT) = $4",
                vec![
                    Arg::JsonText(sealed.to_string()),
                    id.into(),
                    last.into(),
                    text.into(),
                ],
            )
            .await?;
    }
    Ok(counts)
}
