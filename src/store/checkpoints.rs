//! Where each feed consumer (a read model, a reactor, a rebuild's replay) has got to in
//! `feed_checkpoints`: read and moved inside the transaction that applies its events.

use chrono::Utc;
use db::Tx;
use projections::Cursor;

use super::feed::FeedStream;
use super::StoreError;

/// The checkpoint name of read model `name` on stream `E` (`gallery`, `ledger:money`).
pub fn consumer_name<E: FeedStream>(name: &str) -> String {
    format!("{}{name}", E::CONSUMER_PREFIX)
}

/// The checkpoint of `consumer` (the start of the feed when it has none).
pub async fn load_checkpoint(tx: &mut Tx<'_>, consumer: &str) -> Result<Cursor, StoreError> {
    let row = tx
        .fetch_optional(
            "SELECT txid, position FROM feed_checkpoints WHERE consumer = $1",
            vec![consumer.into()],
        )
        .await?;
    let row = row
        .map(|r| Ok::<_, sqlx::Error>((r.get("txid")?, r.get("position")?)))
        .transpose()?;
    Ok(row.map_or(Cursor::START, |(txid, position)| Cursor { txid, position }))
}

/// Moves `consumer`'s checkpoint to `cursor`, inside the caller's transaction.
pub async fn save_checkpoint(
    tx: &mut Tx<'_>,
    consumer: &str,
    cursor: Cursor,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO feed_checkpoints (consumer, txid, position, updated_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (consumer) DO UPDATE
            SET txid = excluded.txid, position = excluded.position,
                updated_at = excluded.updated_at",
        vec![
            consumer.into(),
            cursor.txid.into(),
            cursor.position.into(),
            Utc::now().into(),
        ],
    )
    .await?;
    Ok(())
}
