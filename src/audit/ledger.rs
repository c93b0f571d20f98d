//! The ledger check of `audit verify`: every account's events against its loaded state, its
//! movements and the rules a ledger must keep.

use std::collections::{HashMap, HashSet};
use std::fmt;

use aggregates::{balance_from_events, Account, AccountEvent};
use cqrs_es::Aggregate;
use serde::Serialize;

use super::AuditError;
use crate::store::accounts::{AccountHistoryEntry, AccountStore, AccountStoreError, LoadedAccount};
use crate::store::Database;

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
