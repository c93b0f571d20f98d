//! Settings from the environment (and `.env`), under the fixed variable names of DESIGN.md.
//!
//! The CLI reads them through clap (so `--help` lists every variable); tests build [`Config`]
//! directly and never touch the process environment.

use std::net::SocketAddr;

use clap::Args;

use crate::bot::pricing::{
    self, CreditPacks, PaymentsConfig, PaymentsMode, PriceList, Prices, PricingError,
};
use crate::secret::{Secret, SecretUrl};

/// PostgreSQL connections per process unless `DATABASE_MAX_CONNECTIONS` says otherwise.
pub const DEFAULT_DATABASE_CONNECTIONS: u32 = 32;

/// Every setting the `aisha` binary reads.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Database: `sqlite://PATH` (created on first run) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://aisha.db")]
    pub database_url: SecretUrl,

    /// Connections each process keeps to PostgreSQL at most. Every instance sharing a database
    /// brings its own pool: their sum must stay under the server's `max_connections`.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = DEFAULT_DATABASE_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub database_max_connections: u32,

    /// Telegram bot token (required for `serve`).
    #[arg(long, env = "TELOXIDE_TOKEN", hide_env_values = true)]
    pub teloxide_token: Option<Secret>,

    /// Telegram Bot API base URL.
    #[arg(
        long,
        env = "TELEGRAM_API_URL",
        default_value = "https://api.telegram.org"
    )]
    pub telegram_api_url: SecretUrl,

    /// FAL API key; never logged.
    #[arg(long, env = "FAL_KEY", hide_env_values = true)]
    pub fal_key: Option<Secret>,

    /// `live` or `simulated`; defaults to `live` when FAL_KEY is set, else `simulated`.
    #[arg(long, env = "FAL_MODE")]
    pub fal_mode: Option<FalMode>,

    /// FAL queue base URL.
    #[arg(long, env = "FAL_QUEUE_URL", default_value = "https://queue.fal.run")]
    pub fal_queue_url: SecretUrl,

    /// FAL REST base URL (storage uploads).
    #[arg(long, env = "FAL_REST_URL", default_value = "https://rest.fal.ai")]
    pub fal_rest_url: SecretUrl,

    /// Where FAL publishes the keys that sign its webhooks.
    #[arg(
        long,
        env = "FAL_JWKS_URL",
        default_value = "https://rest.fal.ai/.well-known/jwks.json"
    )]
    pub fal_jwks_url: SecretUrl,

    /// FAL's Platform API, version included; a finished request's payloads and output files
    /// are deleted there (which takes a FAL_KEY of FAL's ADMIN scope).
    #[arg(
        long,
        env = "FAL_PLATFORM_URL",
        default_value = "https://api.fal.ai/v1"
    )]
    pub fal_platform_url: SecretUrl,

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
    pub public_base_url: Option<SecretUrl>,

    /// Our URL as FAL reaches it, when it differs from PUBLIC_BASE_URL (or when Telegram
    /// updates are long-polled but FAL's webhooks should still come); defaults to
    /// PUBLIC_BASE_URL.
    #[arg(long, env = "FAL_WEBHOOK_BASE_URL")]
    pub fal_webhook_base_url: Option<SecretUrl>,

    /// The trainer new style avatars train on: `lora` (FAL's LoRA trainer in style mode) or
    /// `pro_finetune` (the deprecated pro trainer, for accounts where FAL still serves it).
    #[arg(long, env = "STYLE_TRAINER", default_value = "lora", value_parser = parse_style_trainer)]
    pub style_trainer: aggregates::StyleTrainer,

    /// A folder of operator packs (`*.json`, each one pack or a list) added to the shipped
    /// ones; a pack with a shipped pack's id replaces it.
    #[arg(long, env = "PACKS_DIR")]
    pub packs_dir: Option<std::path::PathBuf>,

    /// Sample images made from the starter pack when a training completes; 0 turns them off.
    #[arg(long, env = "STARTER_IMAGES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub starter_images: u32,

    /// Listen address of the HTTP server.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Photo storage: `file://DIR` or `s3://BUCKET/PREFIX`.
    #[arg(long, env = "STORAGE_URL", default_value = "file://./data/photos")]
    pub storage_url: SecretUrl,

    /// Days the photos of a trained avatar are kept after its training succeeded; then they
    /// are deleted (the model stays). `0`: at once; `off`: kept until the avatar is deleted.
    #[arg(long, env = "TRAINING_PHOTO_RETENTION_DAYS", default_value = "30", value_parser = parse_photo_retention)]
    pub training_photo_retention_days: PhotoRetention,

    /// Bearer token for the audit and analytics API (the API is off without it).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// Seconds between two edits of a training's progress bar (the "training started" message,
    /// edited while FAL works); the bar moves when the status poller reads it, so also see
    /// STATUS_POLL_EVERY_SECS.
    #[arg(long, env = "PROGRESS_EDIT_EVERY_SECS", default_value_t = 20)]
    pub progress_edit_every_secs: u64,

    /// `off` (nothing costs anything) or `stars` (credits are sold in Telegram Stars and paid
    /// work costs credits).
    #[arg(long, env = "PAYMENTS", default_value = "off", value_parser = PaymentsMode::parse)]
    pub payments: PaymentsMode,

    /// The packs on sale, `credits:stars` comma-separated, in the order shown.
    #[arg(long, env = "CREDIT_PACKS", default_value = pricing::DEFAULT_CREDIT_PACKS, value_parser = CreditPacks::parse)]
    pub credit_packs: CreditPacks,

    /// Credits every new account gets once when payments are on (0: none).
    #[arg(long, env = "WELCOME_CREDITS", default_value_t = 0)]
    pub welcome_credits: u32,

    /// Credits per training: one value, or per preset (`fast:20,balanced:30,quality:40`).
    #[arg(long, env = "PRICE_TRAINING", default_value = pricing::DEFAULT_PRICE_TRAINING, value_parser = parse_training_prices)]
    pub price_training: PriceList<aggregates::TrainingPreset>,

    /// Credits per image: one value, or per generation preset (`ultra:3,default:1`).
    #[arg(long, env = "PRICE_IMAGE", default_value = pricing::DEFAULT_PRICE_IMAGE, value_parser = parse_image_prices)]
    pub price_image: PriceList<aggregates::GenerationPreset>,

    /// Days after a purchase during which its unspent credits may be refunded.
    #[arg(long, env = "REFUND_WINDOW_DAYS", default_value = "14", value_parser = pricing::parse_refund_window)]
    pub refund_window_days: std::time::Duration,

    /// Who answers questions about payments (`/paysupport`): a @username, an e-mail or a link.
    #[arg(long, env = "PAYMENTS_SUPPORT")]
    pub payments_support: Option<String>,

    /// What FAL charges, for the money views: `endpoint:usd` comma-separated, USD per completed
    /// request of a trainer and per image of a generator (`fal-ai/flux-lora:0.035,…`).
    #[arg(long, env = "FAL_PRICES", value_parser = FalPrices::parse)]
    pub fal_prices: Option<FalPrices>,

    /// USD one Telegram Star is worth to us, for the money views.
    #[arg(long, env = "STARS_USD", default_value_t = DEFAULT_STARS_USD, value_parser = parse_stars_usd)]
    pub stars_usd: f64,

    /// The master key that wraps every user's data key (32 bytes: 64 hex digits or base64;
    /// `aisha keys generate` makes one). Never logged. Without it a public development key is
    /// used, which `serve` refuses with live FAL.
    #[arg(long, env = "DATA_KEY", hide_env_values = true)]
    pub data_key: Option<Secret>,

    /// The master key being retired during a rotation (`aisha keys rotate` rewraps under
    /// DATA_KEY everything it wrapped).
    #[arg(long, env = "DATA_KEY_PREVIOUS", hide_env_values = true)]
    pub data_key_previous: Option<Secret>,
}

/// Whether FAL calls go to the real FAL or to the built-in simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FalMode {
    Live,
    Simulated,
}

/// Settings after defaults have been resolved. Secrets and URLs that may carry credentials have
/// types that mask them, so `{:?}` of the whole configuration is fit for the log.
#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: SecretUrl,
    pub database_max_connections: u32,
    pub teloxide_token: Option<Secret>,
    pub telegram_api_url: SecretUrl,
    pub fal_key: Option<Secret>,
    pub fal_mode: FalMode,
    pub fal_queue_url: SecretUrl,
    pub fal_rest_url: SecretUrl,
    pub fal_jwks_url: SecretUrl,
    pub fal_platform_url: SecretUrl,
    /// Our FAL account's user id; `None`: webhooks of any FAL user are read (live mode).
    pub fal_user_id: Option<String>,
    /// Where result files may be fetched from (host suffixes); empty: FAL's media hosts.
    pub fal_media_hosts: Vec<String>,
    pub public_base_url: Option<SecretUrl>,
    /// Where FAL's webhooks reach us; `None`: under `public_base_url`.
    pub fal_webhook_base_url: Option<SecretUrl>,
    pub style_trainer: aggregates::StyleTrainer,
    pub packs_dir: Option<std::path::PathBuf>,
    /// Starter samples per completed training (0: none).
    pub starter_images: u32,
    pub http_addr: SocketAddr,
    pub storage_url: SecretUrl,
    /// The S3-compatible server an `s3://` `storage_url` is reached with; `None` (production):
    /// the `AWS_*` environment decides. Not an operator setting: tests name their server.
    pub s3: Option<crate::photos::S3Connection>,
    /// How long a trained avatar's photos are kept after its training succeeded; `None`:
    /// until the avatar is deleted.
    pub training_photo_retention: Option<std::time::Duration>,
    pub admin_token: Option<Secret>,
    /// Least time between two edits of one training's progress bar.
    pub progress_edit_every: std::time::Duration,
    /// Whether and how credits are sold, and what work costs.
    pub payments: PaymentsConfig,
    /// What FAL charges per endpoint, stored at start for the money views (empty: unpriced).
    pub fal_prices: FalPrices,
    /// USD per Telegram Star, for the money views.
    pub stars_usd: f64,
    /// `DATA_KEY` and, during a rotation, `DATA_KEY_PREVIOUS` (read by [`Config::master_keys`]).
    pub data_key: Option<Secret>,
    pub data_key_previous: Option<Secret>,
}

impl Config {
    /// Settings for running without the outside world: the given database and photo folder,
    /// FAL simulated, no bot token, no public URL, a free port. Tests and the demo start from it
    /// and change what they need.
    pub fn offline(database_url: impl Into<String>, photos_dir: &std::path::Path) -> Self {
        Self {
            database_url: SecretUrl::new(database_url),
            database_max_connections: DEFAULT_DATABASE_CONNECTIONS,
            teloxide_token: None,
            telegram_api_url: "http://127.0.0.1:9".into(),
            fal_key: None,
            fal_mode: FalMode::Simulated,
            fal_queue_url: "".into(),
            fal_rest_url: "".into(),
            fal_jwks_url: "".into(),
            fal_platform_url: "".into(),
            fal_user_id: None,
            fal_media_hosts: Vec::new(),
            public_base_url: None,
            fal_webhook_base_url: None,
            style_trainer: Default::default(),
            packs_dir: None,
            // Off unless a test or the demo asks: they would add messages to every story.
            starter_images: 0,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            storage_url: format!("file://{}", photos_dir.display()).into(),
            s3: None,
            training_photo_retention: Some(DEFAULT_PHOTO_RETENTION),
            admin_token: None,
            // Tests and the demo watch the bar move at every poll.
            progress_edit_every: std::time::Duration::ZERO,
            payments: PaymentsConfig::off(),
            fal_prices: FalPrices::default(),
            stars_usd: DEFAULT_STARS_USD,
            data_key: None,
            data_key_previous: None,
        }
    }
}

impl Config {
    /// The master keys from `DATA_KEY` (and `DATA_KEY_PREVIOUS`); the development key if unset.
    pub fn master_keys(
        &self,
    ) -> Result<crate::store::keys::MasterKeys, crate::store::keys::KeyError> {
        use crate::store::keys::{MasterKey, MasterKeys};
        let current = match &self.data_key {
            Some(key) => MasterKey::parse(key.expose())?,
            None => MasterKey::development(),
        };
        let previous = match &self.data_key_previous {
            Some(key) => Some(MasterKey::parse(key.expose())?),
            None => None,
        };
        Ok(MasterKeys { current, previous })
    }
}

impl From<ConfigArgs> for Config {
    fn from(a: ConfigArgs) -> Self {
        let fal_key = a.fal_key.filter(|k| !k.expose().trim().is_empty());
        let fal_mode = a.fal_mode.unwrap_or(if fal_key.is_some() {
            FalMode::Live
        } else {
            FalMode::Simulated
        });
        Self {
            database_url: a.database_url,
            database_max_connections: a.database_max_connections,
            teloxide_token: a.teloxide_token.filter(|t| !t.expose().trim().is_empty()),
            telegram_api_url: a.telegram_api_url,
            fal_key,
            fal_mode,
            fal_queue_url: a.fal_queue_url,
            fal_rest_url: a.fal_rest_url,
            fal_jwks_url: a.fal_jwks_url,
            fal_platform_url: a.fal_platform_url,
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
            public_base_url: a.public_base_url.filter(|u| !u.expose().trim().is_empty()),
            fal_webhook_base_url: a
                .fal_webhook_base_url
                .filter(|u| !u.expose().trim().is_empty()),
            style_trainer: a.style_trainer,
            packs_dir: a.packs_dir,
            starter_images: a.starter_images,
            http_addr: a.http_addr,
            storage_url: a.storage_url,
            s3: None,
            training_photo_retention: a.training_photo_retention_days.0,
            admin_token: a.admin_token.filter(|t| !t.expose().trim().is_empty()),
            progress_edit_every: std::time::Duration::from_secs(a.progress_edit_every_secs),
            payments: PaymentsConfig {
                mode: a.payments,
                packs: a.credit_packs,
                welcome_credits: a.welcome_credits,
                prices: Prices {
                    training: a.price_training,
                    image: a.price_image,
                },
                refund_window: a.refund_window_days,
                support_contact: a
                    .payments_support
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty()),
            },
            fal_prices: a.fal_prices.unwrap_or_default(),
            stars_usd: a.stars_usd,
            data_key: a.data_key,
            data_key_previous: a.data_key_previous,
        }
    }
}

/// Training photos are kept this long after a successful training unless configured.
pub const DEFAULT_PHOTO_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(30 * 24 * 60 * 60);

/// `TRAINING_PHOTO_RETENTION_DAYS` read: how long, or `None` to keep the photos.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhotoRetention(pub Option<std::time::Duration>);

fn parse_photo_retention(s: &str) -> Result<PhotoRetention, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(PhotoRetention(None));
    }
    let days: u64 = s.parse().ok().filter(|d| *d <= 36_500).ok_or_else(|| {
        format!("TRAINING_PHOTO_RETENTION_DAYS: `{s}` is not a number of days (0–36500) or `off`")
    })?;
    Ok(PhotoRetention(Some(std::time::Duration::from_secs(
        days * 24 * 60 * 60,
    ))))
}

fn parse_style_trainer(s: &str) -> Result<aggregates::StyleTrainer, String> {
    aggregates::StyleTrainer::parse(s)
        .ok_or_else(|| format!("`{s}`: expected `lora` or `pro_finetune`"))
}

fn parse_training_prices(s: &str) -> Result<PriceList<aggregates::TrainingPreset>, PricingError> {
    PriceList::parse("PRICE_TRAINING", s)
}

fn parse_image_prices(s: &str) -> Result<PriceList<aggregates::GenerationPreset>, PricingError> {
    PriceList::parse("PRICE_IMAGE", s)
}

/// Telegram's reward rate for a Star (what a developer's Stars are valued at when withdrawn).
pub const DEFAULT_STARS_USD: f64 = 0.013;

/// A money setting that cannot be read; it names its variable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MoneySettingError {
    #[error("{variable}: `{entry}` is not `endpoint:usd` with a FAL endpoint and a price of zero or more")]
    Price {
        variable: &'static str,
        entry: String,
    },
    #[error("{variable}: the endpoint `{endpoint}` is priced twice")]
    DuplicateEndpoint {
        variable: &'static str,
        endpoint: String,
    },
    #[error("{variable}: `{value}` is not a USD amount of zero or more")]
    Amount {
        variable: &'static str,
        value: String,
    },
}

/// What FAL charges per endpoint, in USD: per completed request of a trainer, per image of a
/// generator or upscaler (FAL bills those by the megapixel; one image of ours is about one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FalPrices(Vec<(String, f64)>);

impl FalPrices {
    /// `FAL_PRICES`: `endpoint:usd` comma-separated; empty is no prices.
    pub fn parse(value: &str) -> Result<Self, MoneySettingError> {
        const VARIABLE: &str = "FAL_PRICES";
        let mut prices: Vec<(String, f64)> = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let invalid = || MoneySettingError::Price {
                variable: VARIABLE,
                entry: entry.to_owned(),
            };
            // Endpoints hold slashes, never colons: the price follows the last colon.
            let (endpoint, usd) = entry.rsplit_once(':').ok_or_else(invalid)?;
            let endpoint = endpoint.trim();
            let usd: f64 = usd.trim().parse().map_err(|_| invalid())?;
            if endpoint.is_empty()
                || endpoint.contains(char::is_whitespace)
                || !usd.is_finite()
                || usd < 0.0
            {
                return Err(invalid());
            }
            if prices.iter().any(|(known, _)| known == endpoint) {
                return Err(MoneySettingError::DuplicateEndpoint {
                    variable: VARIABLE,
                    endpoint: endpoint.to_owned(),
                });
            }
            prices.push((endpoint.to_owned(), usd));
        }
        Ok(Self(prices))
    }

    /// Each endpoint and its price, in the configured order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0
            .iter()
            .map(|(endpoint, usd)| (endpoint.as_str(), *usd))
    }

    pub fn get(&self, endpoint: &str) -> Option<f64> {
        self.iter()
            .find(|(e, _)| *e == endpoint)
            .map(|(_, usd)| usd)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_stars_usd(s: &str) -> Result<f64, MoneySettingError> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|usd| usd.is_finite() && *usd >= 0.0)
        .ok_or_else(|| MoneySettingError::Amount {
            variable: "STARS_USD",
            value: s.to_owned(),
        })
}

#[cfg(test)]
mod money_settings_tests {
    use super::*;

    #[test]
    fn fal_prices_read_endpoints_with_slashes_and_name_the_variable_when_wrong() {
        let prices =
            FalPrices::parse("fal-ai/flux-lora:0.035, fal-ai/flux-lora-fast-training:2").unwrap();
        assert_eq!(prices.get("fal-ai/flux-lora"), Some(0.035));
        assert_eq!(prices.get("fal-ai/flux-lora-fast-training"), Some(2.0));
        assert_eq!(prices.get("fal-ai/flux-pro"), None);
        assert!(FalPrices::parse("").unwrap().is_empty());
        for wrong in [
            "fal-ai/flux-lora",
            "fal-ai/flux-lora:-1",
            ":0.5",
            "fal-ai/x:abc",
        ] {
            let err = FalPrices::parse(wrong).unwrap_err();
            assert!(err.to_string().starts_with("FAL_PRICES: "), "{err}");
        }
        let twice = FalPrices::parse("a/b:1,a/b:2").unwrap_err();
        assert!(twice.to_string().contains("priced twice"), "{twice}");
    }

    #[test]
    fn photo_retention_is_days_or_off_and_its_errors_name_the_variable() {
        let day = std::time::Duration::from_secs(24 * 60 * 60);
        assert_eq!(
            parse_photo_retention("30"),
            Ok(PhotoRetention(Some(30 * day)))
        );
        assert_eq!(
            parse_photo_retention("0"),
            Ok(PhotoRetention(Some(std::time::Duration::ZERO)))
        );
        assert_eq!(parse_photo_retention(" OFF "), Ok(PhotoRetention(None)));
        for wrong in ["-1", "1.5", "forever", ""] {
            let err = parse_photo_retention(wrong).unwrap_err();
            assert!(err.starts_with("TRAINING_PHOTO_RETENTION_DAYS: "), "{err}");
        }
    }

    #[test]
    fn stars_usd_is_a_non_negative_amount() {
        assert_eq!(parse_stars_usd("0.013"), Ok(0.013));
        let err = parse_stars_usd("-0.1").unwrap_err();
        assert!(err.to_string().starts_with("STARS_USD: "), "{err}");
    }
}
