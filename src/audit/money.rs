//! The money read model's audit: each balance row is the sum of its account's movements, and a
//! replay of the ledger's events gives exactly the rows the live read model holds.
//!
//! The replay fills temporary tables of the same names, which both backends look up before the
//! live ones, inside one transaction that is rolled back; it replays only as far as the live
//! checkpoint, which cannot move meanwhile (PostgreSQL: the audit holds the read model's lock;
//! SQLite: its write lock), so events committed while it runs are never reported as drift.

use std::collections::BTreeMap;
use std::sync::Arc;

use db::{Backend, Tx};
use projections::money::{self, Balance};
use projections::{Cursor, LedgerEvent, Projection};

use super::AuditError;
use crate::store::checkpoints::load_checkpoint;
use crate::store::feed::{read_stream_after, Feed, FeedStream};
use crate::store::locks::lock_key;
use crate::store::runner::ProjectionRunner;
use crate::store::StoreError;

/// Events read per round trip while replaying.
const PAGE: i64 = 5_000;

/// What the money check compared and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MoneyReport {
    /// Ledger events replayed (up to each read model's checkpoint).
    pub events: u64,
    pub balances: usize,
    pub problems: Vec<MoneyProblem>,
}

/// One disagreement between the money read model and the ledger.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MoneyProblem {
    /// The account concerned; `None` when the replay could not get as far as naming one.
    pub telegram_id: Option<i64>,
    /// Which check: `balance` (a balance row is not the sum of its movements), `rebuild` (the
    /// rows differ from a replay of the events) or `readable` (an event could not be replayed).
    pub check: &'static str,
    pub detail: String,
}

impl std::fmt::Display for MoneyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.telegram_id {
            Some(id) => write!(f, "account {id} ({}): {}", self.check, self.detail),
            None => write!(f, "({}): {}", self.check, self.detail),
        }
    }
}

/// Brings the ledger's read models up to date, then checks each of them; every disagreement is
/// a problem of the account it concerns.
pub async fn verify_money(feed: &Feed) -> Result<MoneyReport, AuditError> {
    let mut check = MoneyReport::default();
    for projection in projections::ledger() {
        let runner = ProjectionRunner::ledger(feed.clone(), projection.clone());
        let progress = runner.catch_up().await?;
        if progress.lock_busy {
            tracing::info!(
                projection = runner.name(),
                "another instance is applying this read model; comparing at its checkpoint"
            );
        }
        let db = feed.database();
        // On SQLite, the write lock (`BEGIN IMMEDIATE`) keeps the live runner's batches out
        // meanwhile; on PostgreSQL the projection's lock does.
        let mut tx = db.begin_write().await?;
        let live = match db.backend() {
            Backend::Postgres => {
                // Waits for the live runner's batch in flight; then the checkpoint stays put.
                tx.tx()
                    .execute(
                        "SELECT pg_advisory_xact_lock($1)",
                        vec![lock_key(runner.consumer()).into()],
                    )
                    .await?;
                let live: String = tx
                    .tx()
                    .fetch_optional("SELECT current_schema() AS live", vec![])
                    .await?
                    .ok_or_else(|| AuditError::Corrupt("no current schema".into()))?
                    .get("live")?;
                Some(format!("\"{}\"", live.replace('"', "\"\"")))
            }
            Backend::Sqlite => None,
        };
        let scratch = match &live {
            Some(live) => Scratch::Postgres { live },
            None => Scratch::Sqlite,
        };
        let found = compare(&mut tx.tx(), &projection, runner.consumer(), scratch).await;
        tx.rollback().await?;
        let found = found?;
        check.events += found.events;
        check.balances = check.balances.max(found.balances);
        check.problems.extend(found.problems);
    }
    for problem in &check.problems {
        tracing::warn!(
            telegram_id = problem.telegram_id,
            check = problem.check,
            detail = %problem.detail,
            "money read model problem"
        );
    }
    Ok(check)
}

/// How the scratch copies of the tables are made and named on each backend.
#[derive(Clone, Copy)]
enum Scratch<'a> {
    /// `live` is the quoted schema of the live tables.
    Postgres {
        live: &'a str,
    },
    Sqlite,
}

impl Scratch<'_> {
    fn live(&self, table: &str) -> String {
        match self {
            Self::Postgres { live } => format!("{live}.{table}"),
            Self::Sqlite => format!("main.{table}"),
        }
    }

    fn scratch(&self, table: &str) -> String {
        match self {
            Self::Postgres { .. } => format!("pg_temp.{table}"),
            Self::Sqlite => format!("temp.{table}"),
        }
    }

    /// Creates an empty temporary copy of `table` (with its keys, which the upserts need).
    async fn create(&self, tx: &mut Tx<'_>, table: &str) -> Result<(), AuditError> {
        match self {
            Self::Postgres { live } => {
                tx.execute(
                    &format!("CREATE TEMP TABLE {table} (LIKE {live}.{table} INCLUDING ALL)"),
                    vec![],
                )
                .await?;
            }
            Self::Sqlite => {
                let row = tx
                    .fetch_optional(
                        "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = $1",
                        vec![table.into()],
                    )
                    .await?
                    .ok_or_else(|| AuditError::Corrupt(format!("no table {table}")))?;
                let sql: String = row.get("sql")?;
                let body = sql
                    .strip_prefix("CREATE TABLE")
                    .ok_or_else(|| AuditError::Corrupt(format!("unexpected schema of {table}")))?;
                tx.execute(&format!("CREATE TEMP TABLE{body}"), vec![])
                    .await?;
            }
        }
        Ok(())
    }
}

struct Found {
    events: u64,
    balances: usize,
    problems: Vec<MoneyProblem>,
}

async fn compare(
    tx: &mut Tx<'_>,
    projection: &Arc<dyn Projection<LedgerEvent>>,
    consumer: &str,
    scratch: Scratch<'_>,
) -> Result<Found, AuditError> {
    let mut problems = Vec::new();

    // Each balance is the sum of its movements (the live rows, before any scratch table
    // shadows them).
    let stored = by_account(money::balances(tx, false).await?);
    let summed = by_account(money::balances(tx, true).await?);
    let balances = stored.len();
    for telegram_id in stored
        .keys()
        .chain(summed.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (row, sum) = (stored.get(telegram_id), summed.get(telegram_id));
        if row != sum {
            problems.push(MoneyProblem {
                telegram_id: Some(*telegram_id),
                check: "balance",
                detail: format!(
                    "{} holds {}, its movements sum to {}",
                    money::BALANCES,
                    describe(row),
                    describe(sum)
                ),
            });
        }
    }

    // A replay up to the live checkpoint gives the same rows.
    let checkpoint = load_checkpoint(tx, consumer).await?;
    for table in projection.tables() {
        scratch.create(tx, table).await?;
    }
    let mut events = 0u64;
    let mut cursor = Cursor::START;
    loop {
        let batch: Vec<LedgerEvent> = match read_stream_after(tx, cursor, PAGE).await {
            Ok(batch) => batch,
            // The ledger check names the account; here it only means no replay to compare.
            Err(StoreError::Corrupt(e)) => {
                problems.push(MoneyProblem {
                    telegram_id: None,
                    check: "readable",
                    detail: format!("the replay stopped at an unreadable event: {e}"),
                });
                return Ok(Found {
                    events,
                    balances,
                    problems,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let covered: Vec<LedgerEvent> = batch
            .into_iter()
            .take_while(|e| e.cursor() <= checkpoint)
            .collect();
        let Some(last) = covered.last() else { break };
        cursor = last.cursor();
        events += covered.len() as u64;
        projection.apply_batch(tx, &covered).await?;
    }
    for table in projection.tables() {
        let (live, replayed) = (scratch.live(table), scratch.scratch(table));
        let rows = tx
            .fetch_all(
                &format!(
                    "SELECT telegram_id FROM (SELECT * FROM {replayed} EXCEPT
                                              SELECT * FROM {live}) extra
                     UNION
                     SELECT telegram_id FROM (SELECT * FROM {live} EXCEPT
                                              SELECT * FROM {replayed}) missing
                     ORDER BY telegram_id"
                ),
                vec![],
            )
            .await?;
        for row in rows {
            problems.push(MoneyProblem {
                telegram_id: Some(row.get("telegram_id")?),
                check: "rebuild",
                detail: format!("{table}: the rows differ from a replay of the account's events"),
            });
        }
    }
    Ok(Found {
        events,
        balances,
        problems,
    })
}

fn by_account(rows: Vec<Balance>) -> BTreeMap<i64, Balance> {
    rows.into_iter().map(|b| (b.telegram_id, b)).collect()
}

fn describe(balance: Option<&Balance>) -> String {
    match balance {
        None => "nothing".into(),
        Some(b) => format!(
            "available {}, reserved {}, granted {}, purchased {}, spent {}, refunded {} \
             ({} movements, last {})",
            b.available,
            b.reserved,
            b.granted,
            b.purchased,
            b.spent,
            b.refunded,
            b.movements,
            b.last_sequence
        ),
    }
}
