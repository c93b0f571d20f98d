//! One read of the feed for every projection runner of this process that stands at the same
//! place: live runners usually sit at the same checkpoint, and each would otherwise read, open
//! and decode the same events (watermark, events and keys, three round trips) for itself.
//!
//! Sharing is sound because a read after cursor `C` returns a prefix of the feed after `C`
//! (nothing below its watermark can appear later), and that stays true for whoever comes next:
//! it may find fewer events than a fresh read would, never different ones, and reads again after
//! the batch. An empty read is not shared, so a runner woken by a commit never takes an older
//! "nothing new" for an answer; and a read is offered only briefly, since it was opened with keys
//! that may be destroyed a moment later.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use db::Tx;
use projections::Cursor;
use tokio::sync::OnceCell;

use super::{read_stream_after, FeedStream};
use crate::store::StoreError;

/// How long a read is offered to the other runners.
const SHARE_FOR: Duration = Duration::from_millis(200);
/// The most reads offered at once (each is one batch at one place).
const MOST_OFFERED: usize = 16;

struct Offered {
    stream: &'static str,
    after: Cursor,
    limit: i64,
    at: Instant,
    /// An `Arc<OnceCell<Arc<Vec<E>>>>` for the stream's event type.
    batch: Arc<dyn Any + Send + Sync>,
}

/// The reads on offer, shared by every clone of a [`super::Feed`].
#[derive(Default)]
pub(super) struct SharedReads {
    offered: Mutex<Vec<Offered>>,
}

type Batch<E> = OnceCell<Arc<Vec<E>>>;

impl SharedReads {
    /// Up to `limit` events of `E` after `after`: a read another runner made here moments ago
    /// (or is making), else one on `tx`.
    pub async fn read<E: FeedStream>(
        &self,
        tx: &mut Tx<'_>,
        after: Cursor,
        limit: i64,
    ) -> Result<Arc<Vec<E>>, StoreError> {
        let cell = self.offer::<E>(after, limit);
        let events = cell
            .get_or_try_init(|| async {
                read_stream_after::<E>(tx, after, limit).await.map(Arc::new)
            })
            .await?
            .clone();
        if events.is_empty() {
            self.withdraw(&cell);
        }
        Ok(events)
    }

    /// The cell of the read at this place, offered anew if there is none.
    fn offer<E: FeedStream>(&self, after: Cursor, limit: i64) -> Arc<Batch<E>> {
        let mut offered = self.offered.lock().expect("shared reads poisoned");
        offered.retain(|o| o.at.elapsed() < SHARE_FOR);
        let found = offered
            .iter()
            .filter(|o| o.stream == E::AGGREGATE_TYPE && o.after == after && o.limit == limit)
            .find_map(|o| o.batch.clone().downcast::<Batch<E>>().ok());
        if let Some(cell) = found {
            return cell;
        }
        let cell: Arc<Batch<E>> = Arc::new(OnceCell::new());
        if offered.len() >= MOST_OFFERED {
            offered.remove(0);
        }
        offered.push(Offered {
            stream: E::AGGREGATE_TYPE,
            after,
            limit,
            at: Instant::now(),
            batch: cell.clone(),
        });
        cell
    }

    fn withdraw<E: FeedStream>(&self, cell: &Arc<Batch<E>>) {
        let mut offered = self.offered.lock().expect("shared reads poisoned");
        offered.retain(|o| {
            o.batch
                .clone()
                .downcast::<Batch<E>>()
                .map_or(true, |c| !Arc::ptr_eq(&c, cell))
        });
    }
}
