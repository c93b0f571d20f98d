//! The `aisha` command line: one binary for serving, migrating and auditing. This module parses
//! the command and its [`Config`], and hands each command group to its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::config::Config;
use crate::store::accounts::AccountStoreError;
use crate::store::{Database, StoreError};

mod credits;
mod fal_sim;
mod inspect;
mod privacy;

pub use credits::{CreditsCommand, PromoCommand, SHOWN_MOVEMENTS};
pub use fal_sim::FalSimArgs;
pub use inspect::{AuditCommand, ProjectionsCommand};
pub use privacy::KeysCommand;

/// Aisha trains personal AI avatars on FAL.ai from a user's photos and generates images of them,
/// through a Telegram bot. Every change to an avatar is a stored event.
#[derive(Debug, Parser)]
#[command(name = "aisha", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,

    #[command(subcommand)]
    pub command: CliCommand,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run the whole story offline: a scripted user talks to the real bot on a fake Telegram,
    /// with FAL simulated and a temporary SQLite database; prints the chat and an avatar's history.
    #[cfg(feature = "demo")]
    Demo,
    /// Run the bot, the HTTP server (FAL webhooks, health, metrics) and the actors; applies
    /// pending migrations first. Its own settings (workers, HTTP limits, quotas, Telegram's
    /// share-out) may follow it on the command line as well.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print an avatar's events in order: when, who, what.
    History {
        /// The avatar's id (a UUID).
        avatar_id: Uuid,
        /// Print JSON (one array of events with their metadata) instead of a table.
        #[arg(long)]
        json: bool,
        /// Show the avatar's state as it was right after this event (its sequence number).
        #[arg(long, value_name = "SEQUENCE")]
        at: Option<u64>,
    },
    /// Run the FAL simulator as a standalone server (queue at /queue, REST at /rest, JWKS at
    /// /rest/.well-known/jwks.json, the Platform API at /platform/v1), for tests and offline
    /// runs against a separate process.
    FalSim(FalSimArgs),
    /// Check the read models against a replay of every avatar's events, and every credits ledger.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Rebuild read models or see how far behind they are.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Users' credits: grant some, show an account, refund a purchase, manage promo codes.
    Credits {
        #[command(subcommand)]
        command: CreditsCommand,
    },
    /// Erase a person on request (GDPR art. 17): every avatar deleted, their data key destroyed,
    /// their rows removed; recorded in the operator log under a pseudonym, with the reason.
    EraseUser {
        /// The person's Telegram id.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        telegram_id: i64,
        /// Why (e.g. the request's reference); recorded, so it must not hold personal data.
        #[arg(long, value_name = "WHY", value_parser = not_blank)]
        reason: String,
        /// Who erases, for the record; the login name ($USER) if omitted.
        #[arg(long, value_name = "OPERATOR", value_parser = not_blank)]
        by: Option<String>,
    },
    /// The data keys that seal personal data: make a master key, rotate it, seal old events.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

impl CliCommand {
    /// The demo's output is the conversation, and a credits command's is its answer: logs
    /// would drown them.
    fn prints_its_own_output(&self) -> bool {
        #[cfg(feature = "demo")]
        if matches!(self, Self::Demo) {
            return true;
        }
        matches!(
            self,
            Self::Credits { .. } | Self::EraseUser { .. } | Self::Keys { .. }
        )
    }
}

/// Refuses an empty or all-blank value, so a grant always says why and by whom.
fn not_blank(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        Err("must not be blank".into())
    } else {
        Ok(value.to_owned())
    }
}

/// Parses the command line and runs it; the exit code says whether it worked.
pub async fn run() -> ExitCode {
    // A missing .env is normal; a malformed one is worth a word.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("warning: .env was not read: {e}");
        }
    }
    let cli = Cli::parse();
    init_tracing(if cli.command.prints_its_own_output() {
        "warn"
    } else {
        "info"
    });
    let config = cli.config.resolved();
    match config.master_keys() {
        Ok(keys) => {
            crate::store::keys::install_master_keys(keys);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    match execute(cli.command, config).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::telemetry::chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn execute(command: CliCommand, config: Config) -> Result<ExitCode, CliError> {
    match command {
        #[cfg(feature = "demo")]
        CliCommand::Demo => Ok(crate::demo::run_and_print().await),
        CliCommand::FalSim(args) => fal_sim::run(args).await,
        CliCommand::Migrate => {
            let db = Database::connect(config.database.url.expose()).await?;
            db.migrate().await?;
            println!("migrations applied ({})", db.backend_name());
            Ok(ExitCode::SUCCESS)
        }
        CliCommand::Serve => {
            tracing::info!(config = ?config, "starting");
            crate::serve::run(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        CliCommand::History {
            avatar_id,
            json,
            at,
        } => inspect::history(&config, avatar_id, json, at).await,
        CliCommand::Audit {
            command: AuditCommand::Verify { json },
        } => inspect::audit_verify(&config, json).await,
        CliCommand::Projections { command } => inspect::projections_command(&config, command).await,
        CliCommand::Credits { command } => credits::credits_command(&config, command).await,
        CliCommand::EraseUser {
            telegram_id,
            reason,
            by,
        } => privacy::erase_user(&config, telegram_id, reason, by).await,
        CliCommand::Keys { command } => privacy::keys_command(&config, command).await,
    }
}

/// Why a command failed, as the operator reads it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Accounts(#[from] AccountStoreError),
    #[error(transparent)]
    Promo(#[from] crate::store::promo::PromoError),
}

impl From<db::DbError> for CliError {
    fn from(e: db::DbError) -> Self {
        Self::Store(e.into())
    }
}

/// The database for a command that reads (or rebuilds read models, or records an operator's
/// grant): it must exist and be migrated already; these commands never change the schema.
async fn open_database(config: &Config) -> Result<Database, CliError> {
    let db = Database::connect_existing(config.database.url.expose()).await?;
    db.require_current_schema().await?;
    Ok(db)
}

/// The operator named on the command line, else the login name.
fn operator_name(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "cli".into())
}

#[cfg(test)]
mod tests;
