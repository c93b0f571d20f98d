//! `aisha serve`: builds the [`Application`] and runs it until Ctrl-C / SIGTERM.

use crate::app::{AppError, AppOptions, Application};
use crate::config::Config;

/// Runs the service until a shutdown signal arrives.
pub async fn run(config: Config) -> Result<(), AppError> {
    let app = Application::build(config, AppOptions::default()).await?;
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
