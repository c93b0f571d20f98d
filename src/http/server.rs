//! Serves a router on a listener with limits that `axum::serve` does not have: a header read
//! timeout (which also closes idle keep-alive connections), a request/body timeout and a cap on
//! open connections, so that slow or idle clients cannot hold file descriptors forever.
//!
//! Connections are HTTP/1.1 (hyper's header read timeout applies to HTTP/1 only; FAL, Telegram
//! and reverse proxies all speak HTTP/1.1 to us).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::timeout::{RequestBodyTimeout, Timeout};

/// How the HTTP server treats its clients (`HTTP_*` settings of `aisha serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// A client must send a request's complete head within this long of opening the connection
    /// or of the previous response; otherwise the connection is closed. This is also how long an
    /// idle keep-alive connection stays open (`HTTP_HEADER_TIMEOUT_SECS`).
    pub header_timeout: Duration,
    /// The longest a request may take from its head to its response, reading its body included
    /// (408 past it), and the longest wait for the next piece of a body
    /// (`HTTP_BODY_TIMEOUT_SECS`).
    pub body_timeout: Duration,
    /// Open connections at most, per listener; past it new connections are accepted and closed
    /// at once, so they never pile up in the backlog (`HTTP_MAX_CONNECTIONS`).
    pub max_connections: usize,
}

/// Default for [`ServerLimits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ServerLimits::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`ServerLimits::max_connections`]; kept below the usual open-file limits.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Connections refused because the cap was reached, since the process started.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Connections refused because [`ServerLimits::max_connections`] were open.
pub fn refused_connections() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets open
/// connections finish their requests (for up to `drain`) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let service = Timeout::with_status_code(
        RequestBodyTimeout::new(app, limits.body_timeout),
        StatusCode::REQUEST_TIMEOUT,
        limits.body_timeout,
    );
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let addr = listener.local_addr().ok();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::error!(error = %crate::telemetry::chain(&e), ?addr, "accept error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Closing at once frees the descriptor and tells the client to retry.
            drop(stream);
            if REFUSED.fetch_add(1, Ordering::Relaxed) % 1000 == 0 {
                tracing::warn!(
                    ?addr,
                    max_connections = limits.max_connections,
                    "too many open connections: refusing new ones"
                );
            }
            continue;
        };
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.clone()),
        );
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %crate::telemetry::chain(&*e), "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?addr,
            "HTTP connections still open after the shutdown grace period"
        );
    }
    Ok(())
}

/// Pending connections the kernel queues for a listener (capped by `net.core.somaxconn`); more
/// than tokio's 1,024 so that a burst of connections is not dropped and retried a second later.
const BACKLOG: u32 = 4096;

/// Binds a listener for [`serve`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Errors about one connection, not about the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Raises the soft open-file limit to the hard one, so the connection cap and not the default
/// soft limit (often 1024) decides how many clients are served. Returns the soft limit now in
/// force, when it can be read.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid, writable rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: `raised` is a valid rlimit; failure leaves the limit unchanged.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            }
        }
        #[allow(clippy::unnecessary_cast)]
        Some(limit.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    {
        None
    }
}
