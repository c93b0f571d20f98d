//! `aisha history`, `aisha audit` and `aisha projections`: what auditors and operators read
//! from the event store and the read models, never changing them (a rebuild aside).

use std::process::ExitCode;

use clap::Subcommand;
use uuid::Uuid;

use super::{open_database, CliError};
use crate::audit::render::{escape_for_terminal, render_history, render_state};
use crate::config::Config;
use crate::store::AvatarStore;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Replay every avatar and compare with the projections; exits non-zero on any drift.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Rebuild one projection (or all) from the start of the feed; the service may keep running.
    Rebuild {
        /// The projection's name (gallery, training_jobs, generations, analytics, money); all if
        /// omitted.
        name: Option<String>,
    },
    /// Each feed consumer's checkpoint and lag.
    Status,
}

/// `history`: every event of the avatar, or with `--at N` the events up to N and the state then.
pub async fn history(
    config: &Config,
    avatar_id: Uuid,
    json: bool,
    at: Option<u64>,
) -> Result<ExitCode, CliError> {
    if let Some(sequence) = at {
        return history_at(config, avatar_id, sequence, json).await;
    }
    let db = open_database(config).await?;
    let history = AvatarStore::new(db).history(avatar_id).await?;
    if history.is_empty() {
        eprintln!("no events for avatar {avatar_id}");
        return Ok(ExitCode::FAILURE);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&history).unwrap_or_default()
        );
    } else {
        print!("{}", render_history(&history));
    }
    Ok(ExitCode::SUCCESS)
}

/// `history --at N`: the events up to N, then the avatar's state right after N.
async fn history_at(
    config: &Config,
    avatar_id: Uuid,
    sequence: u64,
    json: bool,
) -> Result<ExitCode, CliError> {
    let store = AvatarStore::new(open_database(config).await?);
    let Some(state) = crate::audit::state_at(&store, avatar_id, Some(sequence)).await? else {
        eprintln!("avatar {avatar_id} has no event {sequence}");
        return Ok(ExitCode::FAILURE);
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&state).unwrap_or_default()
        );
    } else {
        let history = store.history(avatar_id).await?;
        let upto: Vec<_> = history
            .into_iter()
            .filter(|h| h.sequence <= sequence)
            .collect();
        print!("{}", render_history(&upto));
        println!();
        print!("{}", render_state(&state));
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit verify`: prints every drift; the exit code is non-zero when there is any.
pub async fn audit_verify(config: &Config, json: bool) -> Result<ExitCode, CliError> {
    let feed = crate::store::feed::Feed::new(open_database(config).await?);
    let report = crate::audit::verify(&feed).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        for drift in &report.drifts {
            println!("drift: {drift}");
        }
        for problem in &report.ledger.problems {
            println!("ledger: {}", escape_for_terminal(&problem.to_string()));
        }
        for problem in &report.money.problems {
            println!("money: {}", escape_for_terminal(&problem.to_string()));
        }
        println!(
            "{} avatars, {} events checked: {}",
            report.avatars,
            report.events,
            if report.drifts.is_empty() {
                "no drift".to_owned()
            } else {
                format!("{} drift(s)", report.drifts.len())
            }
        );
        println!(
            "{} accounts, {} account events checked: {}",
            report.ledger.accounts,
            report.ledger.events,
            if report.ledger.problems.is_empty() {
                "ledgers consistent".to_owned()
            } else {
                format!("{} ledger problem(s)", report.ledger.problems.len())
            }
        );
        println!(
            "{} money balances, {} ledger events replayed: {}",
            report.money.balances,
            report.money.events,
            if report.money.problems.is_empty() {
                "money read model consistent".to_owned()
            } else {
                format!("{} money problem(s)", report.money.problems.len())
            }
        );
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn projections_command(
    config: &Config,
    command: ProjectionsCommand,
) -> Result<ExitCode, CliError> {
    let feed = crate::store::feed::Feed::new(open_database(config).await?);
    match command {
        ProjectionsCommand::Rebuild { name } => {
            let rebuilt = match name.as_deref() {
                None => crate::audit::rebuild_all(&feed).await?,
                Some(name) => crate::audit::rebuild(&feed, Some(name)).await?,
            };
            for done in rebuilt {
                println!(
                    "{}: {} events replayed in {:.1} s",
                    done.projection,
                    done.events,
                    done.elapsed.as_secs_f64()
                );
            }
        }
        ProjectionsCommand::Status => {
            println!(
                "consumer                 position        txid  behind  oldest unread  updated"
            );
            let ledger: Vec<String> = projections::ledger()
                .iter()
                .map(|p| {
                    crate::store::checkpoints::consumer_name::<projections::LedgerEvent>(p.name())
                })
                .collect();
            let expected: Vec<&str> = projections::names()
                .into_iter()
                .chain(ledger.iter().map(String::as_str))
                .collect();
            for c in feed.consumers(&expected).await? {
                println!(
                    "{:<24} {:>8} {:>11} {:>7}  {:>13}  {}",
                    c.consumer,
                    c.position,
                    c.txid,
                    c.lag.events_behind,
                    c.lag
                        .oldest_unread_age
                        .map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64())),
                    c.updated_at.map_or("never".into(), |t| t
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
