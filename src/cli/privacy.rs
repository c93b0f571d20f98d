//! `aisha keys …` and `aisha erase-user`: the master keys that seal personal data, and erasing
//! a person on request.

use std::process::ExitCode;

use clap::Subcommand;

use super::{open_database, operator_name, CliError};
use crate::config::Config;
use crate::store::AvatarStore;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random master key for DATA_KEY.
    Generate,
    /// Rewrap every user key under DATA_KEY that DATA_KEY_PREVIOUS wrapped; afterwards the
    /// previous key can be dropped.
    Rotate,
    /// Seal the personal data of events written before data keys existed (safe to run twice,
    /// and while the service runs).
    SealExisting,
}

/// `erase-user`: every avatar deleted, the data key destroyed, the rows removed; says what went.
pub async fn erase_user(
    config: &Config,
    telegram_id: i64,
    reason: String,
    by: Option<String>,
) -> Result<ExitCode, CliError> {
    let store = AvatarStore::new(open_database(config).await?);
    let by = operator_name(by);
    let report = crate::erasure::erase_user(
        &store,
        telegram_id,
        crate::erasure::Requester::Operator(by),
        &reason,
    )
    .await
    .map_err(|e| CliError::Io(format!("erasure did not finish (run it again): {e}")))?;
    println!(
        "erased {}: {} avatar(s) deleted, {} key(s) destroyed, {} row(s) removed",
        report.subject, report.avatars_deleted, report.keys_destroyed, report.rows_removed
    );
    Ok(ExitCode::SUCCESS)
}

/// `aisha keys …`.
pub async fn keys_command(config: &Config, command: KeysCommand) -> Result<ExitCode, CliError> {
    match command {
        KeysCommand::Generate => {
            println!("{}", crate::store::keys::MasterKey::generate());
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rotate => {
            if config.keys.data_key_previous.is_none() {
                eprintln!("set DATA_KEY to the new key and DATA_KEY_PREVIOUS to the old one");
                return Ok(ExitCode::FAILURE);
            }
            let db = open_database(config).await?;
            let rewrapped = crate::store::keys::DataKeys::new(db).rotate().await?;
            println!("{rewrapped} key(s) rewrapped under the new DATA_KEY; DATA_KEY_PREVIOUS may now be removed");
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::SealExisting => {
            let db = open_database(config).await?;
            let sealed = crate::store::seal_existing(&db).await?;
            println!(
                "{} event(s) and {} snapshot(s) sealed",
                sealed.events, sealed.snapshots
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
