//! Every setting, read once from the environment (and `.env`) under the variable names of
//! DESIGN.md into one [`Config`] of sections; tests and the demo start from [`Config::offline`].
//!
//! The CLI reads it through clap (so `--help` lists every variable); tests build it directly and
//! never touch the process environment.

use std::path::Path;
use std::time::Duration;

use clap::{Args, FromArgMatches};

use crate::bot::pricing::PaymentsConfig;
use crate::secret::{Secret, SecretUrl};

mod connections;
mod money;
mod operations;

pub use connections::{
    DatabaseSettings, FalMode, FalSettings, HttpSettings, PhotoRetention, RateLimits,
    StorageSettings, TelegramSettings, DEFAULT_PHOTO_RETENTION,
};
pub use money::{FalPrices, MoneySettingError, MoneySettings, DEFAULT_STARS_USD};
pub use operations::{AvatarSettings, KeySettings, LimitSettings, WorkerSettings};

/// PostgreSQL connections per process unless `DATABASE_MAX_CONNECTIONS` says otherwise.
pub const DEFAULT_DATABASE_CONNECTIONS: u32 = db::DEFAULT_CONNECTIONS;

/// Every setting the `aisha` binary reads, one section per part of the service. Secrets and URLs
/// that may carry credentials have types that mask them, so `{:?}` of the whole configuration is
/// fit for the log.
#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub telegram: TelegramSettings,
    #[command(flatten)]
    pub fal: FalSettings,
    #[command(flatten)]
    pub storage: StorageSettings,
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub avatars: AvatarSettings,
    #[command(flatten)]
    pub workers: WorkerSettings,
    #[command(flatten)]
    pub limits: LimitSettings,
    /// Whether and how credits are sold, and what work costs.
    #[command(flatten)]
    pub payments: PaymentsConfig,
    #[command(flatten)]
    pub money: MoneySettings,
    #[command(flatten)]
    pub keys: KeySettings,
}

impl Config {
    /// Settings for running without the outside world: the given database and photo folder,
    /// FAL simulated, no bot token, no public URL, a free port; everything else as an operator
    /// gets it with nothing set. Tests and the demo start from it and change what they need.
    pub fn offline(database_url: impl Into<String>, photos_dir: &Path) -> Self {
        let mut config = Self::defaults();
        config.database.url = SecretUrl::new(database_url);
        config.telegram.api_url = "http://127.0.0.1:9".into();
        // Tests and the demo watch the bar move at every poll.
        config.telegram.progress_edit_every = Duration::ZERO;
        config.fal.mode = Some(FalMode::Simulated);
        // Nothing may reach the real FAL by mistake; a test going live names its server.
        for url in [
            &mut config.fal.queue_url,
            &mut config.fal.rest_url,
            &mut config.fal.jwks_url,
            &mut config.fal.platform_url,
        ] {
            *url = "".into();
        }
        config.storage.url = format!("file://{}", photos_dir.display()).into();
        config.http.addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        // Off unless a test or the demo asks: they would add messages to every story.
        config.avatars.starter_images = 0;
        config
    }

    /// Every default of the command line, the environment left out: a test's settings must not
    /// depend on the variables of the shell that runs it.
    fn defaults() -> Self {
        let command = Self::augment_args(clap::Command::new("aisha")).mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(["aisha"])
            .expect("every setting has a default or is optional");
        Self::from_arg_matches(&matches).expect("the defaults are valid settings")
    }

    /// The settings as read, with what the variables imply filled in: a blank value is an unset
    /// one (`TELOXIDE_TOKEN=` in `.env`), names and hosts lose surrounding spaces, and FAL_MODE
    /// follows FAL_KEY when unset.
    pub fn resolved(mut self) -> Self {
        fn secret(value: Option<Secret>) -> Option<Secret> {
            value.filter(|v| !v.expose().trim().is_empty())
        }
        fn url(value: Option<SecretUrl>) -> Option<SecretUrl> {
            value.filter(|v| !v.expose().trim().is_empty())
        }
        fn text(value: Option<String>) -> Option<String> {
            value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
        }
        self.telegram.token = secret(self.telegram.token);
        self.fal.key = secret(self.fal.key);
        self.fal.mode = Some(self.fal.mode());
        self.fal.user_id = text(self.fal.user_id);
        self.fal.media_hosts = std::mem::take(&mut self.fal.media_hosts)
            .into_iter()
            .filter_map(|host| text(Some(host)))
            .collect();
        self.fal.webhook_base_url = url(self.fal.webhook_base_url);
        self.http.public_base_url = url(self.http.public_base_url);
        self.http.admin_token = secret(self.http.admin_token);
        self.payments.support_contact = text(self.payments.support_contact);
        self
    }

    /// The master keys from `DATA_KEY` (and `DATA_KEY_PREVIOUS`); the development key if unset.
    pub fn master_keys(
        &self,
    ) -> Result<crate::store::keys::MasterKeys, crate::store::keys::KeyError> {
        self.keys.master_keys()
    }

    /// How this instance takes its share of Telegram's updates, and how long it has to stop.
    pub fn inbox_options(&self) -> crate::bot::InboxOptions {
        crate::bot::InboxOptions {
            workers: self.telegram.workers.max(1),
            lease: self.telegram.chat_lease.max(Duration::from_secs(1)),
            grace: self.workers.shutdown_grace,
        }
    }
}

/// A whole number of seconds (the `*_SECS` variables).
fn parse_secs(value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("`{value}` is not a whole number of seconds"))
}

/// A whole number of hours (the `*_HOURS` variables).
fn parse_hours(value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse::<u64>()
        .map(|hours| Duration::from_secs(hours.saturating_mul(3600)))
        .map_err(|_| format!("`{value}` is not a whole number of hours"))
}

#[cfg(test)]
mod tests;
