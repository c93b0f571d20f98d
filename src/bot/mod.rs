//! The Telegram bot: create an avatar, upload photos, train, browse the gallery, generate, delete.
//!
//! The handler tree is [`schema`] (in the manner of teloxide's `examples/dialogue.rs`); the
//! conversation step of each chat is a [`State`] kept in the database ([`dialogues`]), and
//! avatars themselves live in the event store — so after a restart a user is on the same step,
//! with their draft and its photos all still there. Layout:
//! - [`handlers`] — what the bot does with commands, messages and button presses;
//! - [`texts`] — every text, one implementation per language (Russian default, English);
//! - [`keyboards`], [`callbacks`] — inline keyboards and their compact, strictly parsed data;
//! - [`photos`] — photo intake (download, decode, check, store, record) and album summaries;
//! - [`notifier`] — [`TelegramNotifier`], which tells users about trainings and generations;
//! - [`progress`] — the progress bar a running training's "started" message becomes;
//! - [`users`] — the `telegram_users` table (chat, language, last used avatar);
//! - [`send`] — retries, metrics and error classification for Bot API calls;
//! - [`limiter`] — Telegram's per-chat and overall send budgets;
//! - [`inbox`] — updates stored before they are acknowledged, and the workers that handle them.
//!
//! Every message goes out through [`send::sending`], within the budgets of one shared
//! [`limiter::SendLimiter`] (teloxide's `Throttle` hands requests out in 250 ms rounds, which
//! alone would cost a reply up to a quarter of a second); 429s are waited out and retried.
//! Updates arrive by long polling, or by webhook at `POST /webhooks/telegram` when
//! `PUBLIC_BASE_URL` is set (the `X-Telegram-Bot-Api-Secret-Token` header is checked), and are
//! stored in the [`inbox`] before they are acknowledged; its workers handle them, one at a time
//! per chat, on whichever instance holds the chat.

pub mod callbacks;
mod charge;
mod ctx;
pub mod dialogues;
pub mod handlers;
pub mod inbox;
pub mod keyboards;
pub mod limiter;
pub mod notifier;
pub mod photos;
mod press;
pub mod pricing;
pub mod progress;
pub mod quotas;
mod reads;
pub mod reconcile;
pub mod screens;
pub mod send;
pub mod texts;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use aggregates::{AvatarType, Gender, GenerationPreset};
use sha2::{Digest, Sha256};
use teloxide::adaptors::DefaultParseMode;
use teloxide::prelude::*;
use teloxide::types::{BotCommand, ParseMode};
use teloxide::RequestError;
use uuid::Uuid;

use crate::fal::FalClient;
use crate::photos::PhotoStore;
use crate::store::accounts::{AccountStore, AccountStoreError};
use crate::store::{AvatarStore, Database, StoreError};

pub use handlers::{schema, Command};
pub use limiter::{SendLimiter, SendLimits};
pub use notifier::TelegramNotifier;

/// The bot as handlers use it: HTML by default (sends keep to the limits via [`send::sending`]).
pub type TgBot = DefaultParseMode<Bot>;
/// One chat's conversation step.
pub type BotDialogue = Dialogue<State, dialogues::Dialogues>;
/// What every handler returns; `Err` is logged, the user has been answered already if possible.
pub type HandlerResult = Result<(), BotError>;

/// The route Telegram posts updates to in webhook mode.
pub const WEBHOOK_PATH: &str = "/webhooks/telegram";

/// Where a chat's conversation is. Avatars are in the event store; this is only the step.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum State {
    #[default]
    Idle,
    /// Type and gender chosen; the next text is the avatar's name.
    AwaitingName {
        avatar_type: AvatarType,
        gender: Gender,
    },
    /// Photos sent now go to this avatar.
    Uploading { avatar_id: Uuid },
    /// The next text is a new name for this avatar.
    AwaitingNewName { avatar_id: Uuid },
    /// The next text is a prompt for this avatar and preset.
    AwaitingPrompt {
        avatar_id: Uuid,
        preset: GenerationPreset,
    },
    /// The next text is a promo code to redeem.
    AwaitingPromoCode,
}

/// Why handling an update failed (the user gets a short apology; the log gets this).
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("Bot API call failed: {0}")]
    Telegram(#[from] RequestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("read model: {0}")]
    ReadModel(#[from] projections::ProjectionError),
    #[error(transparent)]
    Dialogue(#[from] dialogues::DialogueError),
    #[error("credits ledger: {0}")]
    Accounts(#[from] AccountStoreError),
    #[error("invalid TELEGRAM_API_URL or PUBLIC_BASE_URL: {0}")]
    Url(String),
}

/// What the handlers share.
pub struct BotDeps {
    pub store: Arc<AvatarStore>,
    pub photos: PhotoStore,
    pub db: Database,
    pub users: users::Users,
    pub albums: photos::Albums,
    /// The plain client, for file downloads (the adaptors do not forward them).
    pub downloader: Bot,
    /// The send budgets, shared by the handlers and the notifier.
    pub limiter: Arc<SendLimiter>,
    /// The trainer style avatars train on (the operator's `STYLE_TRAINER`).
    pub style_trainer: aggregates::StyleTrainer,
    /// The bot's username, learned at start, for links to its private chat.
    pub username: std::sync::OnceLock<String>,
    /// What one user (and all together) may ask for.
    pub quotas: std::sync::RwLock<quotas::Quotas>,
    /// FAL's result files, for "send as file".
    pub fal: FalClient,
    /// The packs users choose from, and the samples made when a training completes.
    pub starter: crate::packs::StarterPlan,
    /// Whether credits are sold (`PAYMENTS`), the packs and the prices.
    pub payments: pricing::PaymentsConfig,
    /// The credits ledger.
    pub accounts: Arc<AccountStore>,
    /// How long photos are kept after a successful training (`None`: until deletion), as the
    /// upload screen tells users.
    pub photo_retention: Option<Duration>,
    /// How long FAL keeps what we upload to it (`None`: nothing is uploaded, FAL reads our
    /// copies from us), as the deletion warning tells users.
    pub fal_uploads_kept_for: Option<Duration>,
}

/// The bot, built and ready to start.
pub struct Telegram {
    bot: TgBot,
    deps: Arc<BotDeps>,
    notifier: Arc<TelegramNotifier>,
    webhook_secret: String,
}

impl BotDeps {
    /// Sets the quotas while the bot runs.
    pub fn set_quotas(&self, quotas: quotas::Quotas) {
        *self
            .quotas
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = quotas;
    }
}

impl Telegram {
    /// Builds the bot for `token` against the Bot API at `api_url`; nothing is called yet.
    pub fn new(
        token: &str,
        api_url: &str,
        store: Arc<AvatarStore>,
        photos: PhotoStore,
        db: Database,
        fal: FalClient,
        style_trainer: aggregates::StyleTrainer,
        starter: crate::packs::StarterPlan,
        payments: pricing::PaymentsConfig,
        accounts: Arc<AccountStore>,
        photo_retention: Option<Duration>,
        fal_uploads_kept_for: Option<Duration>,
    ) -> Result<Self, BotError> {
        let url = reqwest::Url::parse(api_url).map_err(|e| BotError::Url(e.to_string()))?;
        let raw = Bot::new(token).set_api_url(url);
        let bot = DefaultParseMode::new(raw.clone(), ParseMode::Html);
        let deps = Arc::new(BotDeps {
            store,
            photos,
            users: users::Users::new(db.clone()),
            db,
            albums: photos::Albums::default(),
            downloader: raw,
            limiter: Arc::new(SendLimiter::for_database(
                SendLimits::production(),
                accounts.database(),
            )),
            style_trainer,
            username: std::sync::OnceLock::new(),
            quotas: std::sync::RwLock::new(quotas::Quotas::default()),
            fal: fal.clone(),
            starter,
            accounts,
            payments,
            photo_retention,
            fal_uploads_kept_for,
        });
        let notifier = Arc::new(TelegramNotifier::new(bot.clone(), deps.clone(), fal));
        Ok(Self {
            bot,
            deps,
            notifier,
            webhook_secret: webhook_secret(token),
        })
    }

    /// The notifier the actors use to reach users.
    pub fn notifier(&self) -> Arc<TelegramNotifier> {
        self.notifier.clone()
    }

    /// What shows the status poller's readings to users: each training's progress bar, edited
    /// at most every `edit_every` (`PROGRESS_EDIT_EVERY_SECS`).
    pub fn progress(&self, edit_every: Duration) -> Arc<progress::TelegramProgress> {
        Arc::new(progress::TelegramProgress::new(
            self.bot.clone(),
            self.deps.clone(),
            edit_every,
        ))
    }

    /// What the handlers share, for changing settings while the bot runs (tests).
    pub fn deps(&self) -> Arc<BotDeps> {
        self.deps.clone()
    }

    /// Sets the quotas (the operator's settings; tests lower them).
    pub fn set_quotas(&self, quotas: quotas::Quotas) {
        self.deps.set_quotas(quotas);
    }

    /// Changes the send budgets (tests, the demo and load runs relax them).
    pub fn set_limits(&self, limits: SendLimits) {
        self.deps.limiter.set_limits(limits);
    }

    /// Checks the token, sets the command menu and starts receiving updates into the inbox —
    /// by long polling (one instance polls, the others stand by), or by webhook under
    /// `public_base_url` (then the returned bot carries the route to serve) — and the workers
    /// that handle them.
    pub async fn start(
        self,
        public_base_url: Option<&str>,
        options: InboxOptions,
    ) -> Result<RunningBot, BotError> {
        let bot = self.bot.clone();
        let me = send::retrying("getMe", || bot.get_me().send()).await?;
        tracing::info!(username = me.username(), "Telegram bot connected");
        let _ = self.deps.username.set(me.username().to_owned());
        self.set_commands(&bot).await;

        let inbox = inbox::Inbox::new(self.deps.db.clone(), instance_name(), options.lease);
        let wake = inbox::intake::Wake::new(options.workers);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let accepting = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (intake, router) = match public_base_url {
            None => {
                let db = self.deps.db.clone();
                let (bot, inbox, wake) = (bot.clone(), inbox.clone(), wake.clone());
                let mut stopping = stopping.clone();
                let task = tokio::spawn(async move {
                    // Telegram admits one long poller per bot: the others stand by and take
                    // over within a second of its death.
                    let role = crate::store::locks::hold_role(&db, "telegram-poller", || {
                        tracing::info!(
                            "standby: another instance polls Telegram; taking over when it stops"
                        )
                    });
                    let _role = tokio::select! {
                        _ = stopping.wait_for(|stop| *stop) => return,
                        role = role => match role {
                            Ok(role) => role,
                            Err(e) => {
                                tracing::error!(error = %crate::telemetry::chain(&e),
                                    "could not take the Telegram poller role");
                                return;
                            }
                        },
                    };
                    tracing::info!("this instance polls Telegram for updates");
                    inbox::intake::poll(bot, inbox, wake, stopping).await;
                });
                (Some(task), None)
            }
            Some(base) => {
                let url = format!("{}{WEBHOOK_PATH}", base.trim_end_matches('/'));
                let url = reqwest::Url::parse(&url).map_err(|e| BotError::Url(e.to_string()))?;
                // Never deleted when an instance stops: that would cut off every other
                // instance sharing it.
                send::retrying("setWebhook", || {
                    bot.set_webhook(url.clone())
                        .secret_token(self.webhook_secret.clone())
                        .send()
                })
                .await?;
                tracing::info!(path = WEBHOOK_PATH, "Telegram updates arrive by webhook");
                let router = inbox::intake::webhook_router(
                    inbox.clone(),
                    wake.clone(),
                    self.webhook_secret.clone(),
                    accepting.clone(),
                );
                (None, Some(router))
            }
        };
        let handling = inbox::workers::Handling::new(
            inbox,
            schema(),
            dptree::deps![
                self.deps.clone(),
                dialogues::Dialogues::new(self.deps.db.clone()),
                me,
                bot.clone()
            ],
            bot.clone(),
            self.deps.clone(),
            wake,
        );
        let workers = inbox::workers::spawn(handling, options.workers, stopping);
        tracing::info!(
            workers = options.workers,
            lease_secs = options.lease.as_secs_f64(),
            "handling Telegram updates from the inbox"
        );
        let reconciler = self.deps.payments.enabled().then(|| {
            let (bot, deps) = (bot.clone(), self.deps.clone());
            tokio::spawn(reconcile::run(bot, deps, reconcile::EVERY))
        });
        Ok(RunningBot {
            stop,
            accepting,
            intake,
            workers,
            router,
            reconciler,
        })
    }

    /// The command menu in both languages; a failure only costs the menu, so it is logged.
    async fn set_commands(&self, bot: &TgBot) {
        for (lang, code) in [
            (texts::Lang::Ru, None),
            (texts::Lang::En, Some(texts::Lang::En.code())),
        ] {
            let t = lang.texts();
            let payment_commands = if self.deps.payments.enabled() {
                t.payment_commands().to_vec()
            } else {
                Vec::new()
            };
            let commands: Vec<BotCommand> = t
                .commands()
                .iter()
                .chain(payment_commands.iter())
                .map(|(command, description)| BotCommand::new(*command, *description))
                .collect();
            let result = send::retrying("setMyCommands", || {
                let mut request = bot.set_my_commands(commands.clone());
                if let Some(code) = code {
                    request = request.language_code(code);
                }
                request.send()
            })
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %crate::telemetry::chain(&e), "could not set the bot's command menu");
            }
        }
    }
}

/// How the inbox is worked (`TELEGRAM_WORKERS`, `TELEGRAM_CHAT_LEASE_SECS`, `SHUTDOWN_GRACE_SECS`).
#[derive(Debug, Clone, Copy)]
pub struct InboxOptions {
    /// Chats handled at once by this instance.
    pub workers: usize,
    /// How long a chat stays with an instance that stopped renewing its hold.
    pub lease: Duration,
    /// How long a stopping instance may take from the signal to its exit (see
    /// [`crate::app::ShutdownBudget`]).
    pub grace: Duration,
}

impl Default for InboxOptions {
    fn default() -> Self {
        Self {
            workers: 32,
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(20),
        }
    }
}

/// This process's name in chat leases: host and pid, enough to tell instances apart in logs.
fn instance_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "aisha".to_owned());
    format!("{host}:{}", std::process::id())
}

/// A bot receiving updates.
pub struct RunningBot {
    stop: tokio::sync::watch::Sender<bool>,
    /// Cleared on stop: the webhook then answers 503 and Telegram delivers elsewhere.
    accepting: Arc<std::sync::atomic::AtomicBool>,
    /// The long poller (polling mode).
    intake: Option<tokio::task::JoinHandle<()>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    router: Option<axum::Router>,
    /// Compares Telegram's Star transactions with the ledger while credits are sold.
    reconciler: Option<tokio::task::JoinHandle<()>>,
}

impl RunningBot {
    /// In webhook mode, the route to merge into the HTTP server (taken once).
    pub fn take_router(&mut self) -> Option<axum::Router> {
        self.router.take()
    }

    /// Stops taking updates, lets the workers finish the ones in hand within the grace period
    /// (what still waits is released to other instances), then stops.
    pub async fn stop(self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        self.accepting
            .store(false, std::sync::atomic::Ordering::Release);
        let _ = self.stop.send(true);
        if let Some(intake) = self.intake {
            // The poller ends its long poll on the signal; what it fetched is stored already.
            let _ = tokio::time::timeout_at(deadline, intake).await;
        }
        let workers = futures::future::join_all(self.workers);
        match tokio::time::timeout_at(deadline, workers).await {
            Ok(_) => tracing::info!("the Telegram workers stopped"),
            Err(_) => tracing::warn!(
                grace_secs = within.as_secs_f64(),
                "Telegram updates were still being handled at the end of the grace period; \
                 their chats go to another instance when the lease runs out"
            ),
        }
        if let Some(reconciler) = self.reconciler {
            reconciler.abort();
        }
    }
}

/// The webhook secret, derived from the token so every instance sets and checks the same one
/// (Telegram allows `A-Z a-z 0-9 _ -`; hex qualifies). The token itself never leaves us.
pub fn webhook_secret(token: &str) -> String {
    let digest = Sha256::digest(format!("aisha-telegram-webhook:{token}").as_bytes());
    hex::encode(&digest[..24])
}
