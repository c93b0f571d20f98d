//! `aisha serve`: builds the [`Application`] and runs it until Ctrl-C / SIGTERM.

use crate::actors::ActorSettings;
use crate::app::{AppError, AppOptions, Application};
use crate::config::Config;

/// Which send limits the bot keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RateLimits {
    Production,
    Relaxed,
}

/// The HTTP server's `serve` settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpSettings {
    pub limits: crate::http::server::ServerLimits,
    /// Where `/healthz` and `/metrics` are served instead of the main listener (`OPS_ADDR`).
    pub ops_addr: Option<std::net::SocketAddr>,
}

/// Runs the service until a shutdown signal arrives.
pub async fn run(
    config: Config,
    actor_settings: ActorSettings,
    feed_lag_alert: std::time::Duration,
    rate_limits: RateLimits,
    http: HttpSettings,
    inbox: crate::bot::InboxOptions,
    quotas: crate::bot::quotas::Quotas,
) -> Result<(), AppError> {
    if config.teloxide_token.is_none() {
        return Err(AppError::MissingToken);
    }
    let master = &crate::store::keys::master_keys().current;
    if master.is_development() {
        if config.fal_mode == crate::config::FalMode::Live {
            return Err(AppError::MissingDataKey);
        }
        tracing::warn!(
            "DATA_KEY is not set: personal data is sealed with the public development key"
        );
    } else {
        tracing::info!(master_key = master.id(), "data keys wrapped by DATA_KEY");
    }
    let options = AppOptions {
        actor_settings,
        ..AppOptions::default()
    };
    let mut app = Application::build(config, options).await?;
    app.feed_lag_alert = feed_lag_alert;
    app.http_limits = http.limits;
    app.inbox = inbox;
    if let Some(addr) = http.ops_addr {
        app.listen_ops(addr).await?;
    }
    // Each connection holds a descriptor: the cap, not the default soft limit, should decide.
    let listeners = if http.ops_addr.is_some() { 2 } else { 1 };
    match crate::http::server::raise_open_file_limit() {
        Some(limit) if (limit as usize) < http.limits.max_connections * listeners + 256 => {
            tracing::warn!(
                open_file_limit = limit,
                max_connections = http.limits.max_connections,
                "HTTP_MAX_CONNECTIONS is close to or above the open-file limit: lower it or raise \
                 the limit (ulimit -n / LimitNOFILE)"
            );
        }
        Some(limit) => tracing::info!(open_file_limit = limit, "open-file limit"),
        None => {}
    }
    if let Some(telegram) = app.telegram.as_ref() {
        telegram.set_quotas(quotas);
    }
    if let (RateLimits::Relaxed, Some(telegram)) = (rate_limits, app.telegram.as_ref()) {
        telegram.set_limits(crate::bot::SendLimits::relaxed());
    }
    let grace = app.inbox.grace;
    app.run_until_stopped(async move {
        shutdown_signal().await;
        // The stop is budgeted to fit the grace period; should something still hold the
        // process past it (a stuck thread), a deploy must not wait on it.
        std::thread::spawn(move || {
            std::thread::sleep(grace + std::time::Duration::from_secs(1));
            tracing::error!(
                grace_secs = grace.as_secs_f64(),
                "still stopping after the grace period; exiting now"
            );
            std::process::exit(1);
        });
    })
    .await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
