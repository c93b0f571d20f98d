//! The whole service assembled from its configuration: database, feed, store, photo storage, FAL
//! (live or the in-process simulator), the actors and the HTTP server. `aisha serve` and the
//! end-to-end tests build it the same way, so tests exercise the production wiring.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::actors::notify::LogNotifier;
use crate::actors::work::WorkQueue;
use crate::actors::{ActorSettings, ActorSystem, NoProgress, Notifier, Services, WebhookTargets};
use crate::config::{Config, FalMode};
use crate::fal::{
    FalClient, FalClientConfig, FalSimulator, MediaPolicy, SimConfig, VerifierConfig,
    WebhookVerifier,
};
use crate::http::server::ServerLimits;
use crate::http::webhooks::{self, WebhookState};
use crate::http::{api, ops, AppState};
use crate::photos::PhotoStore;
use crate::store::feed::Feed;
use crate::store::runner::ProjectionRunner;
use crate::store::{AvatarStore, Database, StoreError};

mod shutdown;
pub use shutdown::ShutdownBudget;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("photo storage: {0}")]
    Storage(#[from] crate::photos::StorageError),
    #[error("FAL client: {0}")]
    Fal(#[from] crate::fal::FalError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the FAL simulator could not start: {0}")]
    Simulator(std::io::Error),
    #[error("Telegram bot: {0}")]
    Telegram(#[from] crate::bot::BotError),
    #[error("packs: {0}")]
    Packs(#[from] crate::packs::PackError),
    #[error("TELOXIDE_TOKEN is not set: `aisha serve` needs the Telegram bot token (ask @BotFather for one)")]
    MissingToken,
    #[error("DATA_KEY is not set: with live FAL, `aisha serve` needs a master key for the personal data it seals (make one with `aisha keys generate`, keep it secret and backed up)")]
    MissingDataKey,
}

impl From<db::DbError> for AppError {
    fn from(e: db::DbError) -> Self {
        Self::Store(e.into())
    }
}

/// Knobs that are not operator configuration: timings and test doubles.
#[derive(Clone)]
pub struct AppOptions {
    pub actor_settings: ActorSettings,
    /// How the in-process FAL simulator behaves when `FAL_MODE=simulated`.
    pub simulator: SimConfig,
    /// Who tells users about outcomes; the Telegram bot when there is one.
    pub notifier: Option<Arc<dyn Notifier>>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            actor_settings: ActorSettings::default(),
            simulator: SimConfig::demo(),
            notifier: None,
        }
    }
}

/// `/healthz` reports degraded past this lag unless [`Application::feed_lag_alert`] is changed.
pub const DEFAULT_FEED_LAG_ALERT: Duration = Duration::from_secs(60);

/// How often `/healthz` and `/metrics` refresh what they answer, unless
/// [`Application::health_refresh`] is changed.
pub const DEFAULT_HEALTH_REFRESH: Duration = Duration::from_secs(1);

/// The Telegram webhook's body limit (updates are small JSON documents).
const MAX_TELEGRAM_UPDATE_BYTES: usize = 1024 * 1024;

/// A built, listening service.
pub struct Application {
    pub config: Config,
    pub db: Database,
    pub feed: Feed,
    pub store: Arc<AvatarStore>,
    pub photos: PhotoStore,
    pub fal: FalClient,
    pub services: Services,
    /// The in-process simulator in simulated mode.
    pub simulator: Option<FalSimulator>,
    /// Where FAL's webhook signing keys are published (the simulator's in simulated mode).
    pub jwks_url: String,
    /// The FAL user webhooks must be signed for (`FAL_USER_ID`; the simulator's in simulated
    /// mode); `None`: any.
    pub fal_user_id: Option<String>,
    /// The Telegram bot, when `TELOXIDE_TOKEN` is set.
    pub telegram: Option<crate::bot::Telegram>,
    /// `/healthz` reports degraded when a feed consumer's oldest unread event is older than this
    /// (`FEED_LAG_ALERT_SECS`).
    pub feed_lag_alert: Duration,
    /// Timeouts and the connection cap of the HTTP server(s) (`HTTP_*`).
    pub http_limits: ServerLimits,
    /// How Telegram's updates are handled from the inbox (`TELEGRAM_WORKERS`, …).
    pub inbox: crate::bot::InboxOptions,
    /// How often the values `/healthz` and `/metrics` answer with are refreshed.
    pub health_refresh: Duration,
    listener: TcpListener,
    addr: SocketAddr,
    /// `/healthz` and `/metrics` only, when set ([`Application::listen_ops`], `OPS_ADDR`).
    ops: Option<(TcpListener, SocketAddr)>,
}

impl Application {
    /// Connects, migrates, binds the HTTP listener and prepares every part; nothing runs yet.
    pub async fn build(config: Config, options: AppOptions) -> Result<Self, AppError> {
        let db = Database::connect_sized(
            config.database.url.expose(),
            config.database.max_connections,
        )
        .await?;
        db.migrate().await?;
        crate::store::money::store_prices(
            &db,
            config.money.fal_prices.iter(),
            config.money.stars_usd,
        )
        .await?;
        let stale = crate::photos::archive::remove_stale_archives();
        if stale > 0 {
            tracing::info!(
                removed = stale,
                "removed training archives left behind by processes that died"
            );
        }
        let listener =
            crate::http::server::bind(config.http.addr).map_err(|source| AppError::Listen {
                addr: config.http.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| AppError::Listen {
            addr: config.http.addr,
            source,
        })?;

        let feed = Feed::new(db.clone());
        let store = Arc::new(AvatarStore::new(db.clone()).notifying(feed.clone()));
        let photos = PhotoStore::open(config.storage.url.expose(), config.storage.s3.as_ref())?;

        let (fal_config, jwks_url, simulator, public_base_url) = match config.fal.mode() {
            FalMode::Live => (
                FalClientConfig::new(
                    config.fal.queue_url.expose(),
                    config.fal.rest_url.expose(),
                    config.fal.key.as_ref().map(|key| key.expose().to_owned()),
                )
                .with_platform_url(config.fal.platform_url.expose()),
                config.fal.jwks_url.expose().to_owned(),
                None,
                config
                    .fal
                    .webhook_base_url
                    .as_ref()
                    .or(config.http.public_base_url.as_ref())
                    .map(|url| url.expose().to_owned()),
            ),
            FalMode::Simulated => {
                tracing::warn!(
                    "FAL_MODE=simulated: trainings and generations run on the built-in FAL simulator; no real FAL calls are made"
                );
                let sim = FalSimulator::spawn(options.simulator.clone().without_auth())
                    .await
                    .map_err(AppError::Simulator)?;
                // The simulator can reach us directly, so webhooks work without a public URL.
                let base = config
                    .fal
                    .webhook_base_url
                    .as_ref()
                    .or(config.http.public_base_url.as_ref())
                    .map(|url| url.expose().to_owned())
                    .unwrap_or_else(|| format!("http://{addr}"));
                (
                    FalClientConfig::new(sim.queue_url(), sim.rest_url(), Some("simulated".into()))
                        .with_platform_url(sim.platform_url()),
                    sim.jwks_url(),
                    Some(sim),
                    Some(base),
                )
            }
        };
        let timeouts = crate::fal::Timeouts {
            request: options.actor_settings.fal_request_timeout,
            ..Default::default()
        };
        // Result files only from FAL's media hosts (FAL_MEDIA_HOSTS); private addresses only
        // in simulated mode. The simulator's own origin is trusted as the queue's.
        let (media, fal_user_id) = match &simulator {
            None => (
                MediaPolicy::live(&config.fal.media_hosts),
                config.fal.user_id.clone(),
            ),
            Some(sim) => (
                MediaPolicy::simulated(&config.fal.media_hosts),
                Some(sim.user_id().to_owned()),
            ),
        };
        let fal = FalClient::new(fal_config.with_timeouts(timeouts).with_media_policy(media))?;
        let starter = crate::packs::StarterPlan {
            packs: Arc::new(crate::packs::Packs::load(
                config.avatars.packs_dir.as_deref(),
            )?),
            images: config.avatars.starter_images,
        };
        let accounts =
            Arc::new(crate::store::accounts::AccountStore::new(db.clone()).notifying(feed.clone()));
        let telegram = match &config.telegram.token {
            Some(token) => Some(crate::bot::Telegram::new(
                token.expose(),
                config.telegram.api_url.expose(),
                store.clone(),
                photos.clone(),
                db.clone(),
                fal.clone(),
                config.avatars.style_trainer,
                starter.clone(),
                config.payments.clone(),
                accounts.clone(),
                config.storage.training_photo_retention.0,
                crate::actors::copies::uploads_kept_for(
                    public_base_url.is_some(),
                    options.actor_settings.training_deadline,
                ),
            )?),
            None => None,
        };
        let services = Services {
            store: store.clone(),
            queue: WorkQueue::new(db.clone()),
            fal: fal.clone(),
            photos: photos.clone(),
            notifier: match (&options.notifier, &telegram) {
                (Some(notifier), _) => notifier.clone(),
                (None, Some(telegram)) => telegram.notifier(),
                (None, None) => Arc::new(LogNotifier),
            },
            progress: match &telegram {
                Some(telegram) => telegram.progress(config.telegram.progress_edit_every),
                None => Arc::new(NoProgress),
            },
            webhooks: WebhookTargets::load(&db, public_base_url).await?,
            settings: ActorSettings {
                // An operator setting (the upload screen names it too), not a timing.
                training_photo_retention: config.storage.training_photo_retention.0,
                ..options.actor_settings.clone()
            },
            starter,
            refunds: match &telegram {
                Some(telegram) => crate::bot::handlers::payments::star_refunds(telegram),
                None => Arc::new(crate::actors::refund::NoStarRefunds),
            },
            accounts,
            charging: config.payments.enabled(),
        };
        Ok(Self {
            config,
            db,
            feed,
            store,
            photos,
            fal,
            services,
            simulator,
            jwks_url,
            fal_user_id,
            telegram,
            feed_lag_alert: DEFAULT_FEED_LAG_ALERT,
            http_limits: ServerLimits::default(),
            inbox: crate::bot::InboxOptions::default(),
            health_refresh: DEFAULT_HEALTH_REFRESH,
            listener,
            addr,
            ops: None,
        })
    }

    /// The address the HTTP server listens on (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Binds `addr` for `/healthz` and `/metrics`, which are then no longer served on the main
    /// listener (`OPS_ADDR`). Returns the bound address (useful with port 0).
    pub async fn listen_ops(&mut self, addr: SocketAddr) -> Result<SocketAddr, AppError> {
        let listener =
            crate::http::server::bind(addr).map_err(|source| AppError::Listen { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| AppError::Listen { addr, source })?;
        self.ops = Some((listener, bound));
        Ok(bound)
    }

    /// Where `/healthz` and `/metrics` are served when not on [`Application::http_addr`].
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().map(|(_, addr)| *addr)
    }

    /// Runs the actors and the HTTP server until `shutdown` completes.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let budget = ShutdownBudget::new(self.inbox.grace);
        // First, so that a bad token stops start-up before anything else runs.
        let mut telegram = match self.telegram {
            Some(telegram) => Some(
                telegram
                    .start(
                        self.config
                            .http
                            .public_base_url
                            .as_ref()
                            .map(|url| url.expose()),
                        self.inbox,
                    )
                    .await?,
            ),
            None => None,
        };
        let metrics = crate::telemetry::prometheus();
        let actors = ActorSystem::start(self.services.clone(), self.feed.clone());
        // One live runner per read model; a rebuild or another instance may hold its lock.
        let mut read_models: Vec<_> = projections::all()
            .into_iter()
            .map(|p| tokio::spawn(ProjectionRunner::new(self.feed.clone(), p).run()))
            .collect();
        // The credits ledger's read models follow the Account events the same way.
        read_models.extend(
            projections::ledger()
                .into_iter()
                .map(|p| tokio::spawn(ProjectionRunner::ledger(self.feed.clone(), p).run())),
        );
        let state = AppState {
            store: self.store.clone(),
            feed: self.feed.clone(),
            admin_token: self.config.http.admin_token.clone(),
            metrics,
            feed_lag_alert: self.feed_lag_alert,
        };
        let webhook_state = WebhookState {
            verifier: Arc::new(WebhookVerifier::with_config(
                VerifierConfig::new(self.jwks_url.clone())
                    .with_expected_user_id(self.fal_user_id.clone()),
            )),
            services: self.services.clone(),
        };
        // `/healthz` and `/metrics` answer from values refreshed in the background, so asking
        // them costs no database query.
        let (health, health_task) = ops::spawn_health_cache(state.clone(), self.health_refresh);
        let ops_routes = ops::cached_router(state.clone(), health);
        let files = crate::http::files::FilesState {
            photos: self.services.photos.clone(),
            targets: self.services.webhooks.clone(),
        };
        let mut app = api::router(state)
            .merge(webhooks::router(webhook_state))
            .merge(crate::http::files::router(files));
        if let Some(route) = telegram
            .as_mut()
            .and_then(crate::bot::RunningBot::take_router)
        {
            app = app.merge(route.layer(axum::extract::DefaultBodyLimit::max(
                MAX_TELEGRAM_UPDATE_BYTES,
            )));
        }
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut stopping = stopping.clone();
            async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            }
        };
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        // The bot stops taking updates the moment the signal comes, while the HTTP server
        // drains: both within the same grace period, so a deploy waits for one, not the sum.
        // The actors stop at the same signal (or when the server ends on its own): their work
        // in flight gets the same grace, and what outlasts it is released to the other instances.
        let (server_done, server_ended) = tokio::sync::oneshot::channel::<()>();
        let actors_stopped = {
            let signalled = stopped();
            tokio::spawn(async move {
                tokio::select! {
                    _ = signalled => {}
                    _ = server_ended => {}
                }
                actors.stop(budget.working).await
            })
        };
        let telegram_stopped = telegram.map(|bot| {
            let signalled = stopped();
            tokio::spawn(async move {
                signalled.await;
                bot.stop(budget.working).await;
            })
        });
        let limits = self.http_limits;
        let ops_server = match self.ops {
            Some((listener, addr)) => {
                tracing::info!(%addr, "health and metrics listening");
                Some(tokio::spawn(crate::http::server::serve(
                    listener,
                    ops_routes,
                    limits,
                    stopped(),
                    budget.working,
                )))
            }
            None => {
                app = app.merge(ops_routes);
                None
            }
        };
        tracing::info!(
            addr = %self.addr,
            backend = self.db.backend_name(),
            header_timeout_secs = limits.header_timeout.as_secs_f64(),
            body_timeout_secs = limits.body_timeout.as_secs_f64(),
            max_connections = limits.max_connections,
            "HTTP server listening"
        );
        let mut served =
            crate::http::server::serve(self.listener, app, limits, stopped(), budget.working).await;
        if let Some(ops_server) = ops_server {
            match ops_server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %crate::telemetry::chain(&e), "health and metrics server failed")
                }
                Err(e) => served = Err(std::io::Error::other(e)),
            }
        }
        health_task.abort();
        drop(server_done);
        if let Some(telegram) = telegram_stopped {
            let _ = telegram.await;
        }
        match actors_stopped.await {
            Ok(stopped) if stopped.aborted > 0 => tracing::warn!(
                aborted = stopped.aborted,
                released = stopped.released,
                "work still running at the end of the grace period was cut short and released"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "the actors did not stop cleanly")
            }
        }
        read_models.iter().for_each(|runner| runner.abort());
        // A connection still lent out (a task the stop interrupted) must not hold the exit.
        if tokio::time::timeout(budget.closing, self.db.close())
            .await
            .is_err()
        {
            tracing::warn!("database connections still in use at exit");
        }
        served.map_err(|source| AppError::Listen {
            addr: self.addr,
            source,
        })
    }
}
