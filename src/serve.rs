//! `aisha serve`: builds the [`Application`] and runs it until Ctrl-C / SIGTERM.

use crate::app::{AppError, AppOptions, Application};
use crate::config::Config;

/// Which send limits the bot keeps to (`TELEGRAM_RATE_LIMITS`).
pub use crate::config::RateLimits;

/// Runs the service until a shutdown signal arrives.
pub async fn run(config: Config) -> Result<(), AppError> {
    if config.telegram.token.is_none() {
        return Err(AppError::MissingToken);
    }
    let master = &crate::store::keys::master_keys().current;
    if master.is_development() {
        if config.fal.mode() == crate::config::FalMode::Live {
            return Err(AppError::MissingDataKey);
        }
        tracing::warn!(
            "DATA_KEY is not set: personal data is sealed with the public development key"
        );
    } else {
        tracing::info!(master_key = master.id(), "data keys wrapped by DATA_KEY");
    }
    let limits = config.http.limits();
    let ops_addr = config.http.ops_addr;
    let rate_limits = config.telegram.rate_limits;
    let quotas = config.limits.quotas();
    let inbox = config.inbox_options();
    let feed_lag_alert = config.workers.feed_lag_alert();
    let actor_settings = config.workers.actor_settings();
    let options = AppOptions {
        actor_settings,
        ..AppOptions::default()
    };
    let mut app = Application::build(config, options).await?;
    app.feed_lag_alert = feed_lag_alert;
    app.http_limits = limits;
    app.inbox = inbox;
    if let Some(addr) = ops_addr {
        app.listen_ops(addr).await?;
    }
    // Each connection holds a descriptor: the cap, not the default soft limit, should decide.
    let listeners = if ops_addr.is_some() { 2 } else { 1 };
    match crate::http::server::raise_open_file_limit() {
        Some(limit) if (limit as usize) < limits.max_connections * listeners + 256 => {
            tracing::warn!(
                open_file_limit = limit,
                max_connections = limits.max_connections,
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
