//! How a stopping instance divides its grace period between finishing work and closing.

use std::time::Duration;

/// How a stopping instance spends `SHUTDOWN_GRACE_SECS`: the HTTP drain and the Telegram
/// workers run side by side for most of it, and the rest is for stopping the actors and
/// closing the database, so the process is gone within the grace period a deploy waits for.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownBudget {
    /// For finishing requests and updates in hand.
    pub working: Duration,
    /// For what comes after, up to the end of the grace period.
    pub closing: Duration,
}

impl ShutdownBudget {
    pub fn new(grace: Duration) -> Self {
        let closing = (grace / 5).min(Duration::from_secs(2));
        Self {
            working: grace.saturating_sub(closing),
            closing,
        }
    }
}
