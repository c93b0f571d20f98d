//! Settings from the environment (and `.env`), under the fixed variable names of DESIGN.md.
//!
//! The CLI reads them through clap (so `--help` lists every variable); tests build [`Config`]
//! directly and never touch the process environment.

use std::net::SocketAddr;

use clap::Args;

/// Every setting the `aisha` binary reads.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Database: `sqlite://PATH` (created on first run) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://aisha.db")]
    pub database_url: String,

    /// Telegram bot token (required for `serve`).
    #[arg(long, env = "TELOXIDE_TOKEN", hide_env_values = true)]
    pub teloxide_token: Option<String>,

    /// Telegram Bot API base URL.
    #[arg(
        long,
        env = "TELEGRAM_API_URL",
        default_value = "https://api.telegram.org"
    )]
    pub telegram_api_url: String,

    /// FAL API key; never logged.
    #[arg(long, env = "FAL_KEY", hide_env_values = true)]
    pub fal_key: Option<String>,

    /// `live` or `simulated`; defaults to `live` when FAL_KEY is set, else `simulated`.
    #[arg(long, env = "FAL_MODE")]
    pub fal_mode: Option<FalMode>,

    /// FAL queue base URL.
    #[arg(long, env = "FAL_QUEUE_URL", default_value = "https://queue.fal.run")]
    pub fal_queue_url: String,

    /// FAL REST base URL (storage uploads).
    #[arg(long, env = "FAL_REST_URL", default_value = "https://rest.fal.ai")]
    pub fal_rest_url: String,

    /// Where FAL publishes the keys that sign its webhooks.
    #[arg(
        long,
        env = "FAL_JWKS_URL",
        default_value = "https://rest.fal.ai/.well-known/jwks.json"
    )]
    pub fal_jwks_url: String,

    /// Our FAL account's user id, as FAL's webhooks carry it (`X-Fal-Webhook-User-Id`); when
    /// set, validly signed webhooks for any other FAL user are ignored (answered 200).
    #[arg(long, env = "FAL_USER_ID")]
    pub fal_user_id: Option<String>,

    /// Hosts result files (generated images) may be fetched from, comma-separated, each with
    /// its subdomains; empty: FAL's media hosts (`fal.media`).
    #[arg(long, env = "FAL_MEDIA_HOSTS", value_delimiter = ',')]
    pub fal_media_hosts: Vec<String>,

    /// Our URL as FAL and Telegram reach it; without it FAL results are polled and Telegram
    /// updates are long-polled.
    #[arg(long, env = "PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,

    /// Our URL as FAL reaches it, when it differs from PUBLIC_BASE_URL (or when Telegram
    /// updates are long-polled but FAL's webhooks should still come); defaults to
    /// PUBLIC_BASE_URL.
    #[arg(long, env = "FAL_WEBHOOK_BASE_URL")]
    pub fal_webhook_base_url: Option<String>,

    /// The trainer new style avatars train on: `lora` (FAL's LoRA trainer in style mode) or
    /// `pro_finetune` (the deprecated pro trainer, for accounts where FAL still serves it).
    #[arg(long, env = "STYLE_TRAINER", default_value = "lora", value_parser = parse_style_trainer)]
    pub style_trainer: aggregates::StyleTrainer,

    /// Listen address of the HTTP server.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Photo storage: `file://DIR` or `s3://BUCKET/PREFIX`.
    #[arg(long, env = "STORAGE_URL", default_value = "file://./data/photos")]
    pub storage_url: String,

    /// Bearer token for the audit and analytics API (the API is off without it).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// Whether FAL calls go to the real FAL or to the built-in simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FalMode {
    Live,
    Simulated,
}

/// Settings after defaults have been resolved.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub teloxide_token: Option<String>,
    pub telegram_api_url: String,
    pub fal_key: Option<String>,
    pub fal_mode: FalMode,
    pub fal_queue_url: String,
    pub fal_rest_url: String,
    pub fal_jwks_url: String,
    /// Our FAL account's user id; `None`: webhooks of any FAL user are read (live mode).
    pub fal_user_id: Option<String>,
    /// Where result files may be fetched from (host suffixes); empty: FAL's media hosts.
    pub fal_media_hosts: Vec<String>,
    pub public_base_url: Option<String>,
    /// Where FAL's webhooks reach us; `None`: under `public_base_url`.
    pub fal_webhook_base_url: Option<String>,
    pub style_trainer: aggregates::StyleTrainer,
    pub http_addr: SocketAddr,
    pub storage_url: String,
    pub admin_token: Option<String>,
}

impl Config {
    /// Settings for running without the outside world: the given database and photo folder,
    /// FAL simulated, no bot token, no public URL, a free port. Tests and the demo start from it
    /// and change what they need.
    pub fn offline(database_url: impl Into<String>, photos_dir: &std::path::Path) -> Self {
        Self {
            database_url: database_url.into(),
            teloxide_token: None,
            telegram_api_url: "http://127.0.0.1:9".into(),
            fal_key: None,
            fal_mode: FalMode::Simulated,
            fal_queue_url: String::new(),
            fal_rest_url: String::new(),
            fal_jwks_url: String::new(),
            fal_user_id: None,
            fal_media_hosts: Vec::new(),
            public_base_url: None,
            fal_webhook_base_url: None,
            style_trainer: Default::default(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            storage_url: format!("file://{}", photos_dir.display()),
            admin_token: None,
        }
    }
}

// Hand-written so that secrets can never reach a log line through `{:?}`.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |s: &Option<String>| if s.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("teloxide_token", &secret(&self.teloxide_token))
            .field("telegram_api_url", &redact_url(&self.telegram_api_url))
            .field("fal_key", &secret(&self.fal_key))
            .field("fal_mode", &self.fal_mode)
            .field("fal_queue_url", &redact_url(&self.fal_queue_url))
            .field("fal_rest_url", &redact_url(&self.fal_rest_url))
            .field("fal_jwks_url", &redact_url(&self.fal_jwks_url))
            .field("fal_user_id", &self.fal_user_id)
            .field("fal_media_hosts", &self.fal_media_hosts)
            .field(
                "public_base_url",
                &self.public_base_url.as_deref().map(redact_url),
            )
            .field(
                "fal_webhook_base_url",
                &self.fal_webhook_base_url.as_deref().map(redact_url),
            )
            .field("style_trainer", &self.style_trainer)
            .field("http_addr", &self.http_addr)
            .field("storage_url", &redact_url(&self.storage_url))
            .field("admin_token", &secret(&self.admin_token))
            .finish()
    }
}

impl From<ConfigArgs> for Config {
    fn from(a: ConfigArgs) -> Self {
        let fal_key = a.fal_key.filter(|k| !k.trim().is_empty());
        let fal_mode = a.fal_mode.unwrap_or(if fal_key.is_some() {
            FalMode::Live
        } else {
            FalMode::Simulated
        });
        Self {
            database_url: a.database_url,
            teloxide_token: a.teloxide_token.filter(|t| !t.trim().is_empty()),
            telegram_api_url: a.telegram_api_url,
            fal_key,
            fal_mode,
            fal_queue_url: a.fal_queue_url,
            fal_rest_url: a.fal_rest_url,
            fal_jwks_url: a.fal_jwks_url,
            fal_user_id: a
                .fal_user_id
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty()),
            fal_media_hosts: a
                .fal_media_hosts
                .into_iter()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .collect(),
            public_base_url: a.public_base_url.filter(|u| !u.trim().is_empty()),
            fal_webhook_base_url: a.fal_webhook_base_url.filter(|u| !u.trim().is_empty()),
            style_trainer: a.style_trainer,
            http_addr: a.http_addr,
            storage_url: a.storage_url,
            admin_token: a.admin_token.filter(|t| !t.trim().is_empty()),
        }
    }
}

fn parse_style_trainer(s: &str) -> Result<aggregates::StyleTrainer, String> {
    aggregates::StyleTrainer::parse(s)
        .ok_or_else(|| format!("`{s}`: expected `lora` or `pro_finetune`"))
}

/// A database URL with any password replaced, fit for logs.
pub fn redact_url(url: &str) -> String {
    // Userinfo: keep the user name, hide the password (or a lone token).
    let masked = match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at))
            if at > scheme_end && !url[scheme_end + 3..at].contains('/') =>
        {
            let userinfo = &url[scheme_end + 3..at];
            let shown = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_owned(),
            };
            format!("{}://{shown}@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    };
    // Query parameters whose names say they are secret.
    let Some((base, query)) = masked.split_once('?') else {
        return masked;
    };
    let secret_name = |name: &str| {
        let name = name.to_ascii_lowercase();
        [
            "pass",
            "secret",
            "token",
            "key",
            "sig",
            "credential",
            "auth",
        ]
        .iter()
        .any(|s| name.contains(s))
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret_name(name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_database_urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://aisha:s3cret@db:5432/aisha"),
            "postgres://aisha:***@db:5432/aisha"
        );
        assert_eq!(redact_url("sqlite://aisha.db"), "sqlite://aisha.db");
        assert_eq!(
            redact_url("postgres://db/aisha?user=a&password=s3cret&sslmode=require"),
            "postgres://db/aisha?user=a&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("s3://AKIA:wJalr@bucket/prefix?x-amz-security-token=t0k"),
            "s3://AKIA:***@bucket/prefix?x-amz-security-token=***"
        );
        assert_eq!(
            redact_url("https://bot123:abc@api.telegram.org"),
            "https://bot123:***@api.telegram.org"
        );
        assert_eq!(
            redact_url("https://ghp_tok3n@aisha.example.com/base"),
            "https://***@aisha.example.com/base"
        );
        assert_eq!(
            redact_url("https://example.com/a@b?api_key=k&q=1"),
            "https://example.com/a@b?api_key=***&q=1"
        );
    }
}
