//! Tools for auditors and operators: an avatar's state as it was after any event, a check that
//! the read models agree with a replay of every avatar's events, a check of every credits
//! ledger and of its money read model ([`money`]), and projection rebuilds.
//!
//! The avatar check compares inside one read snapshot and only with the events the gallery's
//! checkpoint covers, so events committed while it runs are never reported as drift; the ledger
//! check replays each account only as far as the state it loaded, for the same reason. A deleted
//! avatar must have left no row in any avatar read model (the read models forget it).

use std::collections::{HashMap, HashSet};
use std::fmt;

use aggregates::{balance_from_events, Account, AccountEvent, Avatar, AvatarEvent, AvatarStatus};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use projections::gallery::{self, AvatarCard};
use projections::{Cursor, Tx};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

mod money;
mod rebuild;
pub mod render;

pub use money::{MoneyProblem, MoneyReport};
pub use rebuild::{rebuild, rebuild_all, select, Rebuilt, Selected};

use crate::store::accounts::{AccountHistoryEntry, AccountStore, AccountStoreError, LoadedAccount};
use crate::store::feed::{load_checkpoint, Feed};
use crate::store::runner::ProjectionRunner;
use crate::store::{keys, seal, AvatarStore, Database, StoreError};

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
    match feed.database() {
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
            let report = compare(&mut Tx::Postgres(&mut tx)).await;
            tx.rollback().await?;
            report
        }
        Database::Sqlite(pool) => {
            // A read transaction in WAL mode sees one snapshot from its first read on.
            let mut tx = pool.begin().await?;
            let report = compare(&mut Tx::Sqlite(&mut tx)).await;
            tx.rollback().await?;
            report
        }
    }
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
    let raw: Vec<(String, i64, String)> = match tx {
        Tx::Postgres(conn) => sqlx::query(
            "SELECT aggregate_id, sequence, payload::text AS payload FROM events
              WHERE aggregate_type = $1
                AND (txid, position) <= ($2::text::xid8, $3)
                AND (aggregate_id, sequence) > ($4, $5)
              ORDER BY aggregate_id, sequence
              LIMIT $6",
        )
        .bind(Avatar::TYPE)
        .bind(checkpoint.txid.to_string())
        .bind(checkpoint.position)
        .bind(&after.0)
        .bind(after.1)
        .bind(PAGE)
        .fetch_all(&mut **conn)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect(),
        Tx::Sqlite(conn) => sqlx::query(
            "SELECT aggregate_id, sequence, payload FROM events
              WHERE aggregate_type = ?1 AND position <= ?2
                AND (aggregate_id, sequence) > (?3, ?4)
              ORDER BY aggregate_id, sequence
              LIMIT ?5",
        )
        .bind(Avatar::TYPE)
        .bind(checkpoint.position)
        .bind(&after.0)
        .bind(after.1)
        .bind(PAGE)
        .fetch_all(&mut **conn)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect(),
    };
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
    let ids: Vec<projections::Arg> = deleted.iter().map(|id| id.as_str().into()).collect();
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

/// One broken rule in an account's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerProblem {
    pub telegram_id: i64,
    /// Which rule: `readable`, `balance`, `reserved`, `state`, `never_negative`, `reservation`,
    /// `payment`.
    pub check: &'static str,
    pub detail: String,
}

impl fmt::Display for LedgerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "account {} ({}): {}",
            self.telegram_id, self.check, self.detail
        )
    }
}

/// What the ledger check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LedgerReport {
    pub accounts: usize,
    /// Events replayed (up to each account's loaded state).
    pub events: u64,
    pub problems: Vec<LedgerProblem>,
}

/// Checks every account: the loaded state (snapshot plus later events) agrees with a replay and
/// with the plain sum of its movements, the available balance never went below zero, every
/// reservation ended at most once, and every Telegram charge was credited (and refunded) at most
/// once. An account whose events cannot be read is a problem of that account, not the end of the
/// audit. One load and one read per account: the audit is an operator's tool, not a hot path.
pub async fn verify_accounts(db: &Database) -> Result<LedgerReport, AuditError> {
    let store = AccountStore::new(db.clone());
    let mut report = LedgerReport::default();
    for telegram_id in store.accounts().await? {
        report.accounts += 1;
        let read = async {
            let loaded = store.load_with_sequence(telegram_id).await?;
            // Read after the load, so the history holds at least the events the state includes.
            let history = store.history(telegram_id).await?;
            Ok::<_, AccountStoreError>((loaded, history))
        };
        let (loaded, history) = match read.await {
            Ok(read) => read,
            Err(
                e @ (AccountStoreError::CorruptEvent { .. } | AccountStoreError::CorruptStore(_)),
            ) => {
                report.problems.push(LedgerProblem {
                    telegram_id,
                    check: "readable",
                    detail: e.to_string(),
                });
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let covered: Vec<AccountHistoryEntry> = history
            .into_iter()
            .take_while(|h| h.sequence <= loaded.sequence)
            .collect();
        report.events += covered.len() as u64;
        let before = report.problems.len();
        check_ledger(telegram_id, &loaded, &covered, &mut report.problems);
        for problem in &report.problems[before..] {
            tracing::warn!(
                telegram_id,
                check = problem.check,
                detail = %problem.detail,
                "ledger problem"
            );
        }
    }
    Ok(report)
}

fn check_ledger(
    telegram_id: i64,
    loaded: &LoadedAccount,
    history: &[AccountHistoryEntry],
    problems: &mut Vec<LedgerProblem>,
) {
    let mut problem = |check: &'static str, detail: String| {
        problems.push(LedgerProblem {
            telegram_id,
            check,
            detail,
        })
    };

    let mut replayed = Account::default();
    let mut running = 0i64;
    let mut dipped = false;
    // Reservation id → (credits reserved, sequence of its first end).
    let mut reservations: HashMap<uuid::Uuid, (u32, Option<u64>)> = HashMap::new();
    let mut credited: HashMap<&str, u64> = HashMap::new();
    let mut refunded: HashSet<&str> = HashSet::new();
    for entry in history {
        let seq = entry.sequence;
        running += entry.event.available_delta();
        if running < 0 && !dipped {
            // The first dip is the one to look at; the later ones follow from it.
            dipped = true;
            problem(
                "never_negative",
                format!(
                    "the available balance went to {running} at event {seq} ({})",
                    entry.event_type
                ),
            );
        }
        match &entry.event {
            AccountEvent::CreditsReserved {
                reservation_id,
                credits,
                ..
            } => {
                if reservations
                    .insert(*reservation_id, (*credits, None))
                    .is_some()
                {
                    problem(
                        "reservation",
                        format!("reservation {reservation_id} was made again at event {seq}"),
                    );
                }
            }
            AccountEvent::ReservationCaptured {
                reservation_id,
                credits,
                ..
            }
            | AccountEvent::ReservationReleased {
                reservation_id,
                credits,
                ..
            } => match reservations.get_mut(reservation_id) {
                None => problem(
                    "reservation",
                    format!("reservation {reservation_id} ended at event {seq} without being made"),
                ),
                Some((_, Some(first))) => problem(
                    "reservation",
                    format!(
                        "reservation {reservation_id} ended twice: at events {first} and {seq}"
                    ),
                ),
                Some((reserved, end)) => {
                    *end = Some(seq);
                    if reserved != credits {
                        problem(
                            "reservation",
                            format!(
                                "reservation {reservation_id} held {reserved} credits but \
                                 event {seq} ended it with {credits}"
                            ),
                        );
                    }
                }
            },
            AccountEvent::CreditsPurchased {
                telegram_payment_charge_id,
                ..
            } => {
                if let Some(first) = credited.insert(telegram_payment_charge_id, seq) {
                    problem(
                        "payment",
                        format!(
                            "charge {telegram_payment_charge_id} was credited twice: at events \
                             {first} and {seq}"
                        ),
                    );
                }
            }
            AccountEvent::PurchaseRefunded {
                telegram_payment_charge_id,
                ..
            } => {
                if !refunded.insert(telegram_payment_charge_id) {
                    problem(
                        "payment",
                        format!(
                            "charge {telegram_payment_charge_id} was refunded again at event {seq}"
                        ),
                    );
                }
            }
            AccountEvent::CreditsGranted { .. } => {}
        }
        replayed.apply(entry.event.clone());
    }

    let events: Vec<AccountEvent> = history.iter().map(|h| h.event.clone()).collect();
    let summed = balance_from_events(&events);
    let state = &loaded.state;
    let mut agrees = true;
    if summed != state.available() as i64 {
        agrees = false;
        problem(
            "balance",
            format!(
                "its movements sum to {summed} available credits, the loaded account has {}",
                state.available()
            ),
        );
    }
    if replayed.reserved() != state.reserved() {
        agrees = false;
        problem(
            "reserved",
            format!(
                "a replay holds {} reserved credits, the loaded account {}",
                replayed.reserved(),
                state.reserved()
            ),
        );
    }
    // Whatever else differs (a stale or edited snapshot), once: the details are in `history`.
    if agrees && replayed != *state {
        problem(
            "state",
            format!(
                "the loaded account differs from a replay of its {} events",
                history.len()
            ),
        );
    }
}
