//! Tools for auditors and operators: an avatar's state as it was after any event, a check that
//! the read models agree with a replay of every avatar's events, a check of every credits
//! ledger and of its money read model ([`money`]), and projection rebuilds.
//!
//! The avatar check compares inside one read snapshot and only with the events the gallery's
//! checkpoint covers, so events committed while it runs are never reported as drift; the ledger
//! check replays each account only as far as the state it loaded, for the same reason. A deleted
//! avatar must have left no row in any avatar read model (the read models forget it).

use std::collections::HashMap;
use std::fmt;

use aggregates::{Avatar, AvatarEvent, AvatarStatus};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use db::{Backend, Tx};
use projections::gallery::{self, AvatarCard};
use projections::Cursor;
use serde::Serialize;
use uuid::Uuid;

mod ledger;
mod money;
mod rebuild;
pub mod render;

pub use ledger::{verify_accounts, LedgerProblem, LedgerReport};
pub use money::{MoneyProblem, MoneyReport};
pub use rebuild::{rebuild, rebuild_all, select, Rebuilt, Selected};

use crate::store::accounts::AccountStoreError;
use crate::store::checkpoints::load_checkpoint;
use crate::store::feed::{cursor_args, cursor_side, Feed};
use crate::store::runner::ProjectionRunner;
use crate::store::{keys, seal, AvatarStore, StoreError};

/// Why an audit tool could not run.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Accounts(#[from] AccountStoreError),
    #[error("no projection is called `{name}`; known: {known}")]
    UnknownProjection { name: String, known: String },
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<projections::ProjectionError> for AuditError {
    fn from(e: projections::ProjectionError) -> Self {
        Self::Store(e.into())
    }
}

/// An avatar as it was right after one of its events.
#[derive(Debug, Clone, Serialize)]
pub struct StateAt {
    pub avatar_id: Uuid,
    /// The event the state is taken after.
    pub sequence: u64,
    /// The avatar's last sequence today, for "event 5 of 12".
    pub latest_sequence: u64,
    pub event_type: String,
    /// When that event happened, who caused it, and when it was recorded.
    pub at: DateTime<Utc>,
    pub actor: Option<String>,
    pub recorded_at: Option<DateTime<Utc>>,
    pub state: Avatar,
}

/// The avatar's state after event `at` (its latest state when `None`); `None` when the avatar
/// has no events or no event `at`.
pub async fn state_at(
    store: &AvatarStore,
    avatar_id: Uuid,
    at: Option<u64>,
) -> Result<Option<StateAt>, StoreError> {
    let history = store.history(avatar_id).await?;
    let Some(latest) = history.last().map(|h| h.sequence) else {
        return Ok(None);
    };
    let target = at.unwrap_or(latest);
    if target == 0 || target > latest {
        return Ok(None);
    }
    let mut state = Avatar::default();
    let mut last = None;
    for entry in history.into_iter().take_while(|h| h.sequence <= target) {
        state.apply(entry.event.clone());
        last = Some(entry);
    }
    Ok(last.map(|entry| StateAt {
        avatar_id,
        sequence: entry.sequence,
        latest_sequence: latest,
        event_type: entry.event_type,
        at: entry.event.at(),
        actor: entry.actor,
        recorded_at: entry.recorded_at,
        state,
    }))
}

/// One disagreement between the replayed events and a read model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub avatar_id: String,
    /// The column (or `row` when a whole row is missing or extra).
    pub field: &'static str,
    /// What the events say.
    pub expected: String,
    /// What the read model holds.
    pub found: String,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "avatar {}: {} expected {}, found {}",
            self.avatar_id, self.field, self.expected, self.found
        )
    }
}

/// What `audit verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub avatars: usize,
    pub events: u64,
    /// The gallery checkpoint the comparison was made at.
    pub checkpoint_txid: i64,
    pub checkpoint_position: i64,
    pub drifts: Vec<Drift>,
    pub ledger: LedgerReport,
    /// The money read model against the ledger.
    pub money: MoneyReport,
}

impl VerifyReport {
    /// No drift in the read models and no broken rule in any ledger.
    pub fn is_clean(&self) -> bool {
        self.drifts.is_empty() && self.ledger.problems.is_empty() && self.money.problems.is_empty()
    }
}

/// Brings every projection up to date, replays every avatar from its events and compares the
/// result with the gallery (which also serves the cards), then checks every credits ledger and
/// the money read model built from them.
pub async fn verify(feed: &Feed) -> Result<VerifyReport, AuditError> {
    let mut report = verify_avatars(feed).await?;
    report.ledger = verify_accounts(feed.database()).await?;
    report.money = money::verify_money(feed).await?;
    Ok(report)
}

async fn verify_avatars(feed: &Feed) -> Result<VerifyReport, AuditError> {
    for projection in projections::all() {
        let progress = ProjectionRunner::new(feed.clone(), projection.clone())
            .catch_up()
            .await?;
        if progress.lock_busy {
            tracing::info!(
                projection = projection.name(),
                "another instance is applying this projection; comparing at its checkpoint"
            );
        }
    }
    let db = feed.database();
    let mut tx = db.begin().await?;
    // One snapshot for the whole comparison. SQLite's read transaction in WAL mode sees one
    // from its first read on; PostgreSQL's must be asked for.
    if db.backend() == Backend::Postgres {
        tx.tx()
            .execute(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                vec![],
            )
            .await?;
    }
    let report = compare(&mut tx.tx()).await;
    tx.rollback().await?;
    report
}

/// Events read per round trip while replaying.
const PAGE: i64 = 5_000;

/// The values a gallery row must hold, derived from the aggregate.
#[derive(Debug)]
struct Expected {
    sequence: u64,
    state: Avatar,
}

async fn compare(tx: &mut Tx<'_>) -> Result<VerifyReport, AuditError> {
    let checkpoint = load_checkpoint(tx, gallery::NAME).await?;
    let mut rows: HashMap<String, AvatarCard> = gallery::all_cards(tx)
        .await?
        .into_iter()
        .map(|card| (card.avatar_id.to_string(), card))
        .collect();

    let mut drifts = Vec::new();
    let mut deleted = Vec::new();
    let mut avatars = 0;
    let mut events = 0u64;
    let mut current: Option<(String, Expected)> = None;
    let mut after = (String::new(), 0i64);
    loop {
        let page = read_events(tx, checkpoint, &after).await?;
        let Some(last) = page.last() else { break };
        after = (last.0.clone(), last.1);
        for (avatar_id, sequence, event) in page {
            events += 1;
            if current.as_ref().map(|(id, _)| id) != Some(&avatar_id) {
                if let Some((id, expected)) = current.take() {
                    avatars += 1;
                    check(&id, &expected, rows.remove(&id), &mut drifts);
                    if expected.state.status == AvatarStatus::Deleted {
                        deleted.push(id);
                    }
                }
                current = Some((
                    avatar_id,
                    Expected {
                        sequence: 0,
                        state: Avatar::default(),
                    },
                ));
            }
            if let Some((_, expected)) = current.as_mut() {
                expected.state.apply(event);
                expected.sequence = sequence as u64;
            }
        }
    }
    if let Some((id, expected)) = current.take() {
        avatars += 1;
        check(&id, &expected, rows.remove(&id), &mut drifts);
        if expected.state.status == AvatarStatus::Deleted {
            deleted.push(id);
        }
    }
    forgotten(tx, &deleted, &mut drifts).await?;
    let mut extra: Vec<_> = rows.into_keys().collect();
    extra.sort();
    for id in extra {
        drifts.push(Drift {
            avatar_id: id,
            field: "row",
            expected: "absent (no events)".into(),
            found: "present".into(),
        });
    }
    Ok(VerifyReport {
        avatars,
        events,
        checkpoint_txid: checkpoint.txid,
        checkpoint_position: checkpoint.position,
        drifts,
        ledger: LedgerReport::default(),
        money: MoneyReport::default(),
    })
}

/// The next page of Avatar events covered by `checkpoint`, in (avatar, sequence) order.
async fn read_events(
    tx: &mut Tx<'_>,
    checkpoint: Cursor,
    after: &(String, i64),
) -> Result<Vec<(String, i64, AvatarEvent)>, AuditError> {
    let mut args = cursor_args(Avatar::TYPE, checkpoint);
    args.extend([after.0.clone().into(), after.1.into(), PAGE.into()]);
    let raw: Vec<(String, i64, String)> = tx
        .fetch_all(
            &format!(
                "SELECT aggregate_id, sequence, CAST(payload AS TEXT) AS payload FROM events
                  WHERE aggregate_type = $1 AND {}
                    AND (aggregate_id, sequence) > ($4, $5)
                  ORDER BY aggregate_id, sequence
                  LIMIT $6",
                cursor_side(tx.backend(), "<=")
            ),
            args,
        )
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.get("aggregate_id")?,
                r.get("sequence")?,
                r.get("payload")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    // Sealed fields are opened as the feed opens them, in this same snapshot: the read models
    // were built from the opened events, and a destroyed key leaves the placeholders.
    let mut key_ids: Vec<String> = raw
        .iter()
        .filter(|(_, _, payload)| seal::mentions_sealed(payload))
        .map(|(id, _, _)| keys::avatar_key_id(id))
        .collect();
    key_ids.sort_unstable();
    key_ids.dedup();
    let opened = if key_ids.is_empty() {
        HashMap::new()
    } else {
        keys::open_on(tx, &key_ids).await?
    };
    raw.into_iter()
        .map(|(id, sequence, payload)| {
            let corrupt = |e: serde_json::Error| {
                AuditError::Corrupt(format!("event {sequence} of avatar {id}: {e}"))
            };
            let event = if seal::mentions_sealed(&payload) {
                let mut value: serde_json::Value =
                    serde_json::from_str(&payload).map_err(corrupt)?;
                let key = opened.get(&keys::avatar_key_id(&id)).cloned().flatten();
                let cx = seal::context(Avatar::TYPE, &id, sequence as usize, "payload");
                seal::open(&mut value, true, key.as_deref(), &cx);
                serde_json::from_value(value).map_err(corrupt)?
            } else {
                serde_json::from_str(&payload).map_err(corrupt)?
            };
            Ok((id, sequence, event))
        })
        .collect()
}

/// The avatar read models other than the gallery, with the column naming the avatar: none may
/// keep a row of a deleted avatar.
const FORGETTING: &[&str] = &[
    "training_jobs",
    "generations",
    "analytics_avatars",
    "analytics_open_generations",
    "daily_active_avatars",
];

/// A drift for every read-model row that still names a deleted avatar, and for every image
/// left without its generation (the images of a deleted avatar's generations).
async fn forgotten(
    tx: &mut Tx<'_>,
    deleted: &[String],
    drifts: &mut Vec<Drift>,
) -> Result<(), AuditError> {
    let ids: Vec<db::Arg> = deleted.iter().map(|id| id.as_str().into()).collect();
    for table in FORGETTING {
        let rows = tx
            .fetch_in(
                &format!(
                    "SELECT avatar_id, count(*) AS n FROM {table}
                      WHERE avatar_id IN ({{keys}}) GROUP BY avatar_id"
                ),
                ids.clone(),
            )
            .await?;
        let mut left: Vec<(String, i64)> = rows
            .iter()
            .map(|r| Ok((r.get("avatar_id")?, r.get("n")?)))
            .collect::<Result<_, sqlx::Error>>()?;
        left.sort();
        drifts.extend(left.into_iter().map(|(avatar_id, n)| Drift {
            avatar_id,
            field: table,
            expected: "no rows (avatar deleted)".into(),
            found: format!("{n} row(s)"),
        }));
    }
    let orphans = tx
        .fetch_i64(
            "SELECT count(*) FROM generation_images i
              WHERE NOT EXISTS (SELECT 1 FROM generations g WHERE g.generation_id = i.generation_id)",
            vec![],
        )
        .await?
        .unwrap_or(0);
    if orphans > 0 {
        drifts.push(Drift {
            avatar_id: "(none)".into(),
            field: "generation_images",
            expected: "no images without their generation".into(),
            found: format!("{orphans} image(s)"),
        });
    }
    Ok(())
}

fn check(id: &str, expected: &Expected, row: Option<AvatarCard>, drifts: &mut Vec<Drift>) {
    if expected.state.status == AvatarStatus::Deleted {
        if row.is_some() {
            drifts.push(Drift {
                avatar_id: id.to_owned(),
                field: "row",
                expected: "absent (avatar deleted)".into(),
                found: "present".into(),
            });
        }
        return;
    }
    let Some(row) = row else {
        drifts.push(Drift {
            avatar_id: id.to_owned(),
            field: "row",
            expected: "present".into(),
            found: "missing".into(),
        });
        return;
    };
    let state = &expected.state;
    let mut differ = |field: &'static str, want: String, got: String| {
        if want != got {
            drifts.push(Drift {
                avatar_id: id.to_owned(),
                field,
                expected: want,
                found: got,
            });
        }
    };
    differ("status", state.status.as_str().into(), row.status);
    differ(
        "name",
        state
            .name
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_default(),
        row.name,
    );
    differ(
        "avatar_type",
        state
            .avatar_type
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        row.avatar_type,
    );
    differ("owner", state.owner.to_string(), row.owner.to_string());
    differ(
        "photo_count",
        state.photos.len().to_string(),
        row.photo_count.to_string(),
    );
    differ(
        "has_model",
        state.model.is_some().to_string(),
        row.has_model.to_string(),
    );
    differ(
        "model_ref",
        state
            .model
            .as_ref()
            .map(|m| gallery::model_ref(m).to_owned())
            .unwrap_or_default(),
        row.model_ref.unwrap_or_default(),
    );
    differ(
        "generations_completed",
        state.generations_completed.to_string(),
        row.generations_completed.to_string(),
    );
    differ(
        "generations_failed",
        state.generations_failed.to_string(),
        row.generations_failed.to_string(),
    );
    differ(
        "last_sequence",
        expected.sequence.to_string(),
        row.last_sequence.to_string(),
    );
}
