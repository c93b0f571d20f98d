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

/// Runs the service until a shutdown signal arrives.
pub async fn run(
    config: Config,
    actor_settings: ActorSettings,
    feed_lag_alert: std::time::Duration,
    rate_limits: RateLimits,
) -> Result<(), AppError> {
    if config.teloxide_token.is_none() {
        return Err(AppError::MissingToken);
    }
    let options = AppOptions {
        actor_settings,
        ..AppOptions::default()
    };
    let mut app = Application::build(config, options).await?;
    app.feed_lag_alert = feed_lag_alert;
    if let (RateLimits::Relaxed, Some(telegram)) = (rate_limits, app.telegram.as_ref()) {
        telegram.set_limits(crate::bot::SendLimits::relaxed());
    }
    app.run_until_stopped(shutdown_signal()).await
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
