//! The settings of what the service talks to: its database, Telegram, FAL, the photo store and
//! its own HTTP server.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::{parse_secs, DEFAULT_DATABASE_CONNECTIONS};
use crate::secret::{Secret, SecretUrl};

/// The event store and read models.
// URL settings hide their values in `--help` too: they may carry passwords.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Database")]
pub struct DatabaseSettings {
    /// Database: `sqlite://PATH` (created on first run) or `postgres://…`.
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://aisha.db"
    )]
    pub url: SecretUrl,

    /// Connections each process keeps to PostgreSQL at most. Every instance sharing a database
    /// brings its own pool: their sum must stay under the server's `max_connections`.
    #[arg(id = "database_max_connections",
        long = "database-max-connections", env = "DATABASE_MAX_CONNECTIONS",
          default_value_t = DEFAULT_DATABASE_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub max_connections: u32,
}

/// The bot's side of Telegram: who it is, where the Bot API is, how updates are shared out.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Telegram")]
pub struct TelegramSettings {
    /// Telegram bot token (required for `serve`).
    #[arg(
        long = "teloxide-token",
        env = "TELOXIDE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<Secret>,

    /// Telegram Bot API base URL.
    #[arg(
        long = "telegram-api-url",
        env = "TELEGRAM_API_URL",
        hide_env_values = true,
        default_value = "https://api.telegram.org"
    )]
    pub api_url: SecretUrl,

    /// Seconds between two edits of a training's progress bar (the "training started" message,
    /// edited while FAL works); the bar moves when the status poller reads it, so also see
    /// STATUS_POLL_EVERY_SECS.
    #[arg(long = "progress-edit-every-secs", env = "PROGRESS_EDIT_EVERY_SECS",
          default_value = "20", value_parser = parse_secs)]
    pub progress_edit_every: Duration,

    /// Chats whose Telegram updates this instance handles at once.
    #[arg(
        long = "telegram-workers",
        env = "TELEGRAM_WORKERS",
        default_value_t = 32,
        global = true
    )]
    pub workers: usize,

    /// Seconds a chat's updates stay with an instance that stopped renewing its hold (it
    /// died, or is paused); then another instance handles them, the interrupted one again.
    #[arg(long = "telegram-chat-lease-secs", env = "TELEGRAM_CHAT_LEASE_SECS",
          default_value = "30", value_parser = parse_secs, global = true)]
    pub chat_lease: Duration,

    /// Telegram send limits: `production` (Telegram's flood limits) or `relaxed` (for a local
    /// Bot API server or a fake without flood control, e.g. load tests).
    #[arg(
        long = "telegram-rate-limits",
        env = "TELEGRAM_RATE_LIMITS",
        value_enum,
        default_value = "production",
        global = true
    )]
    pub rate_limits: RateLimits,
}

/// Which send limits the bot keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RateLimits {
    #[default]
    Production,
    Relaxed,
}

/// FAL: the real one or the built-in simulator, and how its webhooks reach us.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "FAL")]
pub struct FalSettings {
    /// FAL API key; never logged.
    #[arg(long = "fal-key", env = "FAL_KEY", hide_env_values = true)]
    pub key: Option<Secret>,

    /// `live` or `simulated`; defaults to `live` when FAL_KEY is set, else `simulated`.
    #[arg(id = "fal_mode", long = "fal-mode", env = "FAL_MODE")]
    pub mode: Option<FalMode>,

    /// FAL queue base URL.
    #[arg(
        long = "fal-queue-url",
        env = "FAL_QUEUE_URL",
        default_value = "https://queue.fal.run"
    )]
    pub queue_url: SecretUrl,

    /// FAL REST base URL (storage uploads).
    #[arg(
        long = "fal-rest-url",
        env = "FAL_REST_URL",
        default_value = "https://rest.fal.ai"
    )]
    pub rest_url: SecretUrl,

    /// Where FAL publishes the keys that sign its webhooks.
    #[arg(
        long = "fal-jwks-url",
        env = "FAL_JWKS_URL",
        default_value = "https://rest.fal.ai/.well-known/jwks.json"
    )]
    pub jwks_url: SecretUrl,

    /// FAL's Platform API, version included; a finished request's payloads and output files
    /// are deleted there (which takes a FAL_KEY of FAL's ADMIN scope).
    #[arg(
        long = "fal-platform-url",
        env = "FAL_PLATFORM_URL",
        default_value = "https://api.fal.ai/v1"
    )]
    pub platform_url: SecretUrl,

    /// Our FAL account's user id, as FAL's webhooks carry it (`X-Fal-Webhook-User-Id`); when
    /// set, validly signed webhooks for any other FAL user are ignored (answered 200).
    #[arg(long = "fal-user-id", env = "FAL_USER_ID")]
    pub user_id: Option<String>,

    /// Hosts result files (generated images) may be fetched from, comma-separated, each with
    /// its subdomains; empty: FAL's media hosts (`fal.media`).
    #[arg(
        long = "fal-media-hosts",
        env = "FAL_MEDIA_HOSTS",
        value_delimiter = ','
    )]
    pub media_hosts: Vec<String>,

    /// Our URL as FAL reaches it, when it differs from PUBLIC_BASE_URL (or when Telegram
    /// updates are long-polled but FAL's webhooks should still come); defaults to
    /// PUBLIC_BASE_URL.
    #[arg(
        long = "fal-webhook-base-url",
        env = "FAL_WEBHOOK_BASE_URL",
        hide_env_values = true
    )]
    pub webhook_base_url: Option<SecretUrl>,
}

/// Whether FAL calls go to the real FAL or to the built-in simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FalMode {
    Live,
    Simulated,
}

impl FalSettings {
    /// FAL_MODE, or what FAL_KEY implies when it is unset: a key means the real FAL.
    pub fn mode(&self) -> FalMode {
        self.mode.unwrap_or(if self.key.is_some() {
            FalMode::Live
        } else {
            FalMode::Simulated
        })
    }
}

/// Where users' photos are kept, and for how long.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Photo storage")]
pub struct StorageSettings {
    /// Photo storage: `file://DIR` or `s3://BUCKET/PREFIX`.
    #[arg(
        id = "storage_url",
        long = "storage-url",
        env = "STORAGE_URL",
        hide_env_values = true,
        default_value = "file://./data/photos"
    )]
    pub url: SecretUrl,

    /// The S3-compatible server an `s3://` URL is reached with; `None` (production): the
    /// `AWS_*` environment decides. Not an operator setting: tests name their server.
    #[arg(skip)]
    pub s3: Option<crate::photos::S3Connection>,

    /// Days the photos of a trained avatar are kept after its training succeeded; then they
    /// are deleted (the model stays). `0`: at once; `off`: kept until the avatar is deleted.
    #[arg(long = "training-photo-retention-days", env = "TRAINING_PHOTO_RETENTION_DAYS",
          default_value = "30", value_parser = parse_photo_retention)]
    pub training_photo_retention: PhotoRetention,
}

pub use crate::actors::retention::DEFAULT_PHOTO_RETENTION;

/// `TRAINING_PHOTO_RETENTION_DAYS` read: how long, or `None` to keep the photos.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhotoRetention(pub Option<Duration>);

pub(super) fn parse_photo_retention(s: &str) -> Result<PhotoRetention, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(PhotoRetention(None));
    }
    let days: u64 = s.parse().ok().filter(|d| *d <= 36_500).ok_or_else(|| {
        format!("TRAINING_PHOTO_RETENTION_DAYS: `{s}` is not a number of days (0–36500) or `off`")
    })?;
    Ok(PhotoRetention(Some(Duration::from_secs(
        days * 24 * 60 * 60,
    ))))
}

/// Our HTTP server: where it listens, how it is reached from outside, what it tolerates.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpSettings {
    /// Listen address of the HTTP server.
    #[arg(
        long = "http-addr",
        env = "HTTP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub addr: SocketAddr,

    /// Our URL as FAL and Telegram reach it; without it FAL results are polled and Telegram
    /// updates are long-polled.
    #[arg(
        long = "public-base-url",
        env = "PUBLIC_BASE_URL",
        hide_env_values = true
    )]
    pub public_base_url: Option<SecretUrl>,

    /// Bearer token for the audit and analytics API (the API is off without it).
    #[arg(long = "admin-token", env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// Seconds a client has to send a request's headers (after connecting, or after the
    /// previous response on a kept-alive connection) before the connection is closed.
    #[arg(long = "http-header-timeout-secs", env = "HTTP_HEADER_TIMEOUT_SECS",
          default_value = "10", value_parser = parse_secs, global = true)]
    pub header_timeout: Duration,

    /// Seconds a request may take, reading its body included, before it is answered 408.
    #[arg(long = "http-body-timeout-secs", env = "HTTP_BODY_TIMEOUT_SECS",
          default_value = "30", value_parser = parse_secs, global = true)]
    pub body_timeout: Duration,

    /// Connections open at once, per listener; more are closed as soon as accepted.
    #[arg(
        id = "http_max_connections",
        long = "http-max-connections",
        env = "HTTP_MAX_CONNECTIONS",
        default_value_t = 10_000,
        global = true
    )]
    pub max_connections: usize,

    /// When set (e.g. `127.0.0.1:9090`), `/healthz` and `/metrics` are served only on this
    /// address, not on `HTTP_ADDR`.
    #[arg(long = "ops-addr", env = "OPS_ADDR", global = true)]
    pub ops_addr: Option<SocketAddr>,
}

impl HttpSettings {
    /// The server's limits; none may be zero, which would refuse every request.
    pub fn limits(&self) -> crate::http::server::ServerLimits {
        let second = Duration::from_secs(1);
        crate::http::server::ServerLimits {
            header_timeout: self.header_timeout.max(second),
            body_timeout: self.body_timeout.max(second),
            max_connections: self.max_connections.max(1),
        }
    }
}
