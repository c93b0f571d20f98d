//! The `aisha` command line: one binary for serving, migrating and auditing.

use std::process::ExitCode;

use aggregates::{AccountAction, AccountCommand, Actor};
use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::audit::render::{
    escape_for_terminal, render_account_history, render_history, render_state,
};
use crate::config::{Config, ConfigArgs};
use crate::store::accounts::{AccountStore, AccountStoreError};
use crate::store::{AvatarStore, Database, StoreError};

mod credits;

/// Aisha trains personal AI avatars on FAL.ai from a user's photos and generates images of them,
/// through a Telegram bot. Every change to an avatar is a stored event.
#[derive(Debug, Parser)]
#[command(name = "aisha", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,

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
    /// pending migrations first.
    Serve {
        /// Seconds after a training's submission before the status poller first asks FAL
        /// (the webhook usually brings the result; the polls move the user's progress bar).
        #[arg(long, env = "STATUS_POLL_AFTER_SECS", default_value_t = 20)]
        status_poll_after_secs: u64,
        /// Seconds between two status polls of one training.
        #[arg(long, env = "STATUS_POLL_EVERY_SECS", default_value_t = 30)]
        status_poll_every_secs: u64,
        /// Seconds after which a training without a result is failed and cancelled.
        #[arg(long, env = "TRAINING_DEADLINE_SECS", default_value_t = 10_800)]
        training_deadline_secs: u64,
        /// Seconds after which a generation without a result is failed and cancelled.
        #[arg(long, env = "GENERATION_DEADLINE_SECS", default_value_t = 600)]
        generation_deadline_secs: u64,
        /// Seconds a worker's claim on a work item lasts without a heartbeat; after that another
        /// worker (or instance) may take the item over.
        #[arg(long, env = "WORK_LEASE_SECS", default_value_t = 45)]
        work_lease_secs: u64,
        /// Seconds after which credits reserved for work the avatar never accepted (the process
        /// died in between) are given back.
        #[arg(long, env = "ORPHAN_RESERVATION_SECS", default_value_t = 120)]
        orphan_reservation_secs: u64,
        /// Hours finished work items are kept before they are pruned.
        #[arg(long, env = "WORK_RETENTION_HOURS", default_value_t = 168)]
        work_retention_hours: u64,
        /// Seconds a feed consumer (read model or reactor) may leave an event unread before
        /// `/healthz` reports degraded.
        #[arg(long, env = "FEED_LAG_ALERT_SECS", default_value_t = 60)]
        feed_lag_alert_secs: u64,
        /// Chats whose Telegram updates this instance handles at once.
        #[arg(long, env = "TELEGRAM_WORKERS", default_value_t = 32)]
        telegram_workers: usize,
        /// Seconds a chat's updates stay with an instance that stopped renewing its hold (it
        /// died, or is paused); then another instance handles them, the interrupted one again.
        #[arg(long, env = "TELEGRAM_CHAT_LEASE_SECS", default_value_t = 30)]
        telegram_chat_lease_secs: u64,
        /// Seconds from SIGTERM to exit: requests and updates in hand are finished within it.
        #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 20)]
        shutdown_grace_secs: u64,
        /// Telegram send limits: `production` (Telegram's flood limits) or `relaxed` (for a local
        /// Bot API server or a fake without flood control, e.g. load tests).
        #[arg(
            long,
            env = "TELEGRAM_RATE_LIMITS",
            value_enum,
            default_value = "production"
        )]
        telegram_rate_limits: crate::serve::RateLimits,
        /// Seconds a client has to send a request's headers (after connecting, or after the
        /// previous response on a kept-alive connection) before the connection is closed.
        #[arg(long, env = "HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10)]
        http_header_timeout_secs: u64,
        /// Seconds a request may take, reading its body included, before it is answered 408.
        #[arg(long, env = "HTTP_BODY_TIMEOUT_SECS", default_value_t = 30)]
        http_body_timeout_secs: u64,
        /// Connections open at once, per listener; more are closed as soon as accepted.
        #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 10_000)]
        http_max_connections: usize,
        /// When set (e.g. `127.0.0.1:9090`), `/healthz` and `/metrics` are served only on this
        /// address, not on `HTTP_ADDR`.
        #[arg(long, env = "OPS_ADDR")]
        ops_addr: Option<std::net::SocketAddr>,
        /// Avatars one user may have (deleted ones do not count).
        #[arg(long, env = "QUOTA_AVATARS_PER_USER", default_value_t = 10)]
        quota_avatars_per_user: i64,
        /// Trainings one user may start in 24 hours.
        #[arg(long, env = "QUOTA_TRAININGS_PER_DAY", default_value_t = 3)]
        quota_trainings_per_day: i64,
        /// Generations one user may have waiting for FAL at once.
        #[arg(long, env = "QUOTA_PENDING_GENERATIONS", default_value_t = 4)]
        quota_pending_generations: i64,
        /// Generations one user may ask for in a minute.
        #[arg(long, env = "QUOTA_GENERATIONS_PER_MINUTE", default_value_t = 10)]
        quota_generations_per_minute: i64,
        /// Paid FAL jobs (trainings and generations) all users together may start per UTC day;
        /// unset: no cap. Today's count is the `paid_jobs_today` gauge.
        #[arg(long, env = "PAID_JOBS_PER_DAY")]
        paid_jobs_per_day: Option<i64>,
    },
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
    FalSim {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8090")]
        addr: std::net::SocketAddr,
        /// Seconds a training takes.
        #[arg(long, default_value_t = 20.0)]
        training_seconds: f64,
        /// Seconds a generation takes.
        #[arg(long, default_value_t = 5.0)]
        generation_seconds: f64,
        /// Fraction of jobs that fail (0–1).
        #[arg(long, default_value_t = 0.0)]
        failure_rate: f64,
        /// Fraction of webhooks delivered twice (0–1).
        #[arg(long, default_value_t = 0.0)]
        duplicate_webhooks: f64,
        /// Fraction of webhooks never delivered (0–1).
        #[arg(long, default_value_t = 0.0)]
        drop_webhooks: f64,
        /// Fraction of HTTP calls answered 429 (0–1).
        #[arg(long, default_value_t = 0.0)]
        rate_limit_rate: f64,
        /// Fraction of HTTP calls answered 500 (0–1).
        #[arg(long, default_value_t = 0.0)]
        server_error_rate: f64,
        /// Fraction of HTTP calls that stall for 30 s (0–1).
        #[arg(long, default_value_t = 0.0)]
        stall_rate: f64,
        /// Serve the deprecated `fal-ai/flux-pro-trainer` (refused as deprecated otherwise).
        #[arg(long)]
        pro_trainer: bool,
    },
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

/// How many movements `credits show` prints.
pub const SHOWN_MOVEMENTS: usize = 20;

#[derive(Debug, Subcommand)]
pub enum CreditsCommand {
    /// Give a Telegram user credits (goodwill, compensation) and say why; prints the new balance.
    /// A user without an account gets one.
    Grant {
        /// The user's Telegram id.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        telegram_id: i64,
        /// How many credits (a whole number, at least 1).
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        credits: u32,
        /// Why the credits are given; recorded with the grant.
        #[arg(long, value_name = "WHY", value_parser = not_blank)]
        reason: String,
        /// Who grants them, for the record; the login name ($USER) if omitted.
        #[arg(long, value_name = "OPERATOR", value_parser = not_blank)]
        by: Option<String>,
    },
    /// A Telegram user's balance (available and reserved) and their last 20 movements.
    Show {
        /// The user's Telegram id.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        telegram_id: i64,
    },
    /// Refund a purchase and say why: the ledger takes its credits back now, and the running
    /// server's workers return its Stars through Telegram (retried until Telegram confirms).
    Refund {
        /// The user's Telegram id.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        telegram_id: i64,
        /// The purchase's Telegram payment charge id (`credits show` lists it).
        #[arg(value_parser = not_blank)]
        charge_id: String,
        /// Why the purchase is refunded; recorded with the refund.
        #[arg(long, value_name = "WHY", value_parser = not_blank)]
        reason: String,
        /// Who refunds, for the record; the login name ($USER) if omitted.
        #[arg(long, value_name = "OPERATOR", value_parser = not_blank)]
        by: Option<String>,
        /// The refund window to apply, in days from the purchase; REFUND_WINDOW_DAYS if omitted.
        #[arg(long, value_name = "DAYS")]
        window_days: Option<u64>,
    },
    /// Promo codes users redeem with `/promo CODE`: create one, or list them.
    Promo {
        #[command(subcommand)]
        command: PromoCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PromoCommand {
    /// Create a promo code (compared without case and surrounding spaces; once per user).
    Add {
        code: String,
        /// The credits one use grants.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000_000))]
        credits: u32,
        /// The last day (UTC) the code works; no end if omitted.
        #[arg(long, value_name = "YYYY-MM-DD", value_parser = credits::parse_day)]
        until: Option<chrono::NaiveDate>,
        /// How many users may redeem it; no limit if omitted.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000_000))]
        max_uses: Option<u32>,
        /// Who creates it, for the record; the login name ($USER) if omitted.
        #[arg(long, value_name = "OPERATOR", value_parser = not_blank)]
        by: Option<String>,
    },
    /// Every promo code with its uses.
    List,
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
    let config = Config::from(cli.config);
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
        CliCommand::FalSim {
            addr,
            training_seconds,
            generation_seconds,
            failure_rate,
            duplicate_webhooks,
            drop_webhooks,
            rate_limit_rate,
            server_error_rate,
            stall_rate,
            pro_trainer,
        } => {
            use crate::fal::sim::{FaultRates, WebhookBehaviour};
            let secs = |s: f64| std::time::Duration::from_secs_f64(s.max(0.0));
            let sim = crate::fal::SimConfig::demo()
                .with_times(secs(1.0), secs(training_seconds), secs(generation_seconds))
                .with_failure_rate(failure_rate)
                .with_pro_trainer(pro_trainer)
                .with_webhook(WebhookBehaviour {
                    duplicate_rate: duplicate_webhooks,
                    drop_rate: drop_webhooks,
                    ..WebhookBehaviour::default()
                })
                .with_faults(FaultRates {
                    too_many_requests: rate_limit_rate,
                    server_error: server_error_rate,
                    stall: stall_rate,
                    stall_for: secs(30.0),
                });
            crate::fal::sim::run_standalone(addr, sim)
                .await
                .map_err(|e| CliError::Io(format!("FAL simulator on {addr}: {e}")))?;
            Ok(ExitCode::SUCCESS)
        }
        CliCommand::Migrate => {
            let db = Database::connect(config.database_url.expose()).await?;
            db.migrate().await?;
            println!("migrations applied ({})", db.backend_name());
            Ok(ExitCode::SUCCESS)
        }
        CliCommand::Serve {
            status_poll_after_secs,
            status_poll_every_secs,
            training_deadline_secs,
            generation_deadline_secs,
            work_lease_secs,
            orphan_reservation_secs,
            work_retention_hours,
            feed_lag_alert_secs,
            telegram_rate_limits,
            telegram_workers,
            telegram_chat_lease_secs,
            shutdown_grace_secs,
            http_header_timeout_secs,
            http_body_timeout_secs,
            http_max_connections,
            ops_addr,
            quota_avatars_per_user,
            quota_trainings_per_day,
            quota_pending_generations,
            quota_generations_per_minute,
            paid_jobs_per_day,
        } => {
            tracing::info!(config = ?config, "starting");
            let secs = std::time::Duration::from_secs;
            let settings = crate::actors::ActorSettings {
                status_poll_after: secs(status_poll_after_secs),
                status_poll_every: secs(status_poll_every_secs.max(1)),
                training_deadline: secs(training_deadline_secs),
                generation_deadline: secs(generation_deadline_secs.max(1)),
                lease: secs(work_lease_secs.max(1)),
                orphan_reservation_after: secs(orphan_reservation_secs.max(1)),
                work_retention: secs(work_retention_hours.saturating_mul(3600)),
                ..Default::default()
            };
            let feed_lag_alert = secs(feed_lag_alert_secs.max(1));
            let http = crate::serve::HttpSettings {
                limits: crate::http::server::ServerLimits {
                    header_timeout: secs(http_header_timeout_secs.max(1)),
                    body_timeout: secs(http_body_timeout_secs.max(1)),
                    max_connections: http_max_connections.max(1),
                },
                ops_addr,
            };
            let inbox = crate::bot::InboxOptions {
                workers: telegram_workers.max(1),
                lease: secs(telegram_chat_lease_secs.max(1)),
                grace: secs(shutdown_grace_secs),
            };
            let quotas = crate::bot::quotas::Quotas {
                avatars_per_user: quota_avatars_per_user,
                trainings_per_user_per_day: quota_trainings_per_day,
                pending_generations_per_user: quota_pending_generations,
                generations_per_user_per_minute: quota_generations_per_minute,
                paid_jobs_per_day,
            };
            crate::serve::run(
                config,
                settings,
                feed_lag_alert,
                telegram_rate_limits,
                http,
                inbox,
                quotas,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        CliCommand::History {
            avatar_id,
            json,
            at: Some(sequence),
        } => history_at(&config, avatar_id, sequence, json).await,
        CliCommand::Audit {
            command: AuditCommand::Verify { json },
        } => audit_verify(&config, json).await,
        CliCommand::Projections { command } => projections_command(&config, command).await,
        CliCommand::Credits { command } => credits_command(&config, command).await,
        CliCommand::EraseUser {
            telegram_id,
            reason,
            by,
        } => {
            let store = AvatarStore::new(open_database(&config).await?);
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
        CliCommand::Keys { command } => keys_command(&config, command).await,
        CliCommand::History {
            avatar_id,
            json,
            at: None,
        } => {
            let db = open_database(&config).await?;
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

/// The database for a command that reads (or rebuilds read models, or records an operator's
/// grant): it must exist and be migrated already; these commands never change the schema.
async fn open_database(config: &Config) -> Result<Database, CliError> {
    let db = Database::connect_existing(config.database_url.expose()).await?;
    db.require_current_schema().await?;
    Ok(db)
}

/// `aisha keys …`.
async fn keys_command(config: &Config, command: KeysCommand) -> Result<ExitCode, CliError> {
    match command {
        KeysCommand::Generate => {
            println!("{}", crate::store::keys::MasterKey::generate());
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rotate => {
            if config.data_key_previous.is_none() {
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
async fn audit_verify(config: &Config, json: bool) -> Result<ExitCode, CliError> {
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

async fn projections_command(
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
                .map(|p| crate::store::feed::consumer_name::<projections::LedgerEvent>(p.name()))
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

/// The operator named on the command line, else the login name.
fn operator_name(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "cli".into())
}

async fn credits_command(config: &Config, command: CreditsCommand) -> Result<ExitCode, CliError> {
    let store = AccountStore::new(open_database(config).await?);
    match command {
        CreditsCommand::Grant {
            telegram_id,
            credits,
            reason,
            by,
        } => {
            let operator = operator_name(by);
            let command = AccountCommand::new(
                Actor::Operator(operator),
                chrono::Utc::now(),
                AccountAction::GrantCredits { credits, reason },
            );
            let by = command.by.to_string();
            let done = store.execute(telegram_id, command, Uuid::new_v4()).await?;
            println!(
                "granted {credits} credits to {telegram_id} (by {}): {} available, {} reserved",
                escape_for_terminal(&by),
                done.state.available(),
                done.state.reserved()
            );
        }
        CreditsCommand::Refund {
            telegram_id,
            charge_id,
            reason,
            by,
            window_days,
        } => {
            let window = window_days
                .map(|days| std::time::Duration::from_secs(days.saturating_mul(24 * 60 * 60)))
                .unwrap_or(config.payments.refund_window);
            let operator = operator_name(by);
            credits::refund(&store, telegram_id, charge_id, reason, operator, window).await?;
        }
        CreditsCommand::Promo { command } => credits::promo(store.database(), command).await?,
        CreditsCommand::Show { telegram_id } => {
            let account = store.load(telegram_id).await?;
            let history = store.history(telegram_id).await?;
            println!(
                "account {telegram_id}: {} available, {} reserved",
                account.available(),
                account.reserved()
            );
            if history.is_empty() {
                println!("no movements yet");
            } else {
                println!(
                    "lifetime: {} granted, {} purchased, {} spent, {} refunded",
                    account.granted, account.purchased, account.spent, account.refunded
                );
                let shown = &history[history.len().saturating_sub(SHOWN_MOVEMENTS)..];
                println!("last {} of {} movements:", shown.len(), history.len());
                print!("{}", render_account_history(shown));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use crate::audit::render::escape_for_terminal;

    // Operators configure from `.env.sample`: a setting missing there is one nobody finds.
    #[test]
    fn every_environment_variable_is_described_in_the_env_sample() {
        use clap::CommandFactory;
        let sample = include_str!("../.env.sample");
        fn walk(command: &clap::Command, out: &mut Vec<String>) {
            for arg in command.get_arguments() {
                if let Some(env) = arg.get_env() {
                    out.push(env.to_string_lossy().into_owned());
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, out);
            }
        }
        let mut names = Vec::new();
        walk(&super::Cli::command(), &mut names);
        assert!(names.len() > 20, "{names:?}");
        let missing: Vec<&String> = names
            .iter()
            .filter(|name| {
                !sample
                    .lines()
                    .any(|l| l.trim_start_matches("# ").starts_with(&format!("{name}=")))
            })
            .collect();
        assert!(missing.is_empty(), "not in .env.sample: {missing:?}");
    }

    // An operator who mistypes a price must learn which setting is wrong before anything starts.
    #[test]
    fn payment_settings_parse_and_their_errors_name_the_variable() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from([
            "aisha",
            "--payments",
            "stars",
            "--credit-packs",
            "5:25,40:150",
            "--price-image",
            "ultra:3,default:1",
            "migrate",
        ])
        .expect("valid settings");
        let config = crate::config::Config::from(cli.config);
        assert!(config.payments.enabled());
        assert_eq!(config.payments.packs.iter().count(), 2);
        assert_eq!(
            config
                .payments
                .prices
                .generation(Some(aggregates::GenerationPreset::Ultra), 2),
            6
        );
        assert_eq!(
            config.payments.refund_window,
            std::time::Duration::from_secs(14 * 24 * 3600)
        );

        for (flag, value, variable) in [
            ("--payments", "card", "PAYMENTS"),
            ("--credit-packs", "10:x", "CREDIT_PACKS"),
            ("--price-training", "fast:20", "PRICE_TRAINING"),
            ("--price-image", "turbo:2", "PRICE_IMAGE"),
            ("--refund-window-days", "soon", "REFUND_WINDOW_DAYS"),
        ] {
            let error = super::Cli::try_parse_from(["aisha", flag, value, "migrate"])
                .expect_err("a wrong setting")
                .to_string();
            assert!(error.contains(&format!("{variable}: ")), "{error}");
        }
    }

    #[test]
    fn user_text_cannot_drive_the_terminal() {
        let prompt = "\u{1b}]0;title\u{7}\u{1b}[2Jaudit verify OK\u{202e}txt.exe";
        let shown = escape_for_terminal(prompt);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
        assert_eq!(
            shown,
            "\\u{1b}]0;title\\u{7}\\u{1b}[2Jaudit verify OK\\u{202e}txt.exe"
        );
        assert_eq!(escape_for_terminal("Маша 👩‍💻"), "Маша 👩\\u{200d}💻");
    }
}
