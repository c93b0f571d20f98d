//! `aisha serve`: wires the store and the HTTP server together and runs until Ctrl-C / SIGTERM.

use std::sync::Arc;

use crate::config::Config;
use crate::http::{router, AppState};
use crate::store::{AvatarStore, Database, StoreError};

/// Runs the service until a shutdown signal arrives.
pub async fn run(config: Config, db: Database) -> Result<(), StoreError> {
    let store = Arc::new(AvatarStore::new(db.clone()));
    let app = router(AppState { store });
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| StoreError::Database(format!("cannot listen on {}: {e}", config.http_addr)))?;
    tracing::info!(addr = %config.http_addr, backend = db.backend_name(), "HTTP server listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| StoreError::Database(format!("HTTP server stopped: {e}")))?;
    db.close().await;
    Ok(())
}

async fn shutdown_signal() {
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
