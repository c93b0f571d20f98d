//! The verifier's settings, kept apart so deployments can tune caching and waiting without
//! touching the fetch logic.

use std::time::Duration;

/// Longest time a fetched key set is trusted.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Longest a webhook waits for FAL's keys to be fetched before it is answered 503 (FAL
/// delivers it again later).
pub const DEFAULT_MAX_KEY_WAIT: Duration = Duration::from_secs(3);

/// Settings of a [`WebhookVerifier`](super::WebhookVerifier).
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    pub jwks_url: String,
    /// How long fetched keys are used before fetching again; capped at 24 h. A refresh starts
    /// in the background a tenth of this before, so webhooks rarely wait for one.
    pub max_key_age: Duration,
    /// Least time between two fetches, so forged webhooks cannot hammer the JWKS host.
    pub min_refresh_interval: Duration,
    /// How long one fetch may take (it goes on in the background after webhooks stop waiting).
    pub fetch_timeout: Duration,
    /// Longest a webhook waits for a fetch; a slow or failing JWKS host costs at most this.
    pub max_wait: Duration,
    /// When set, webhooks signed for another FAL user are refused with
    /// [`WebhookError::ForeignUser`](super::WebhookError::ForeignUser): every FAL customer's webhooks carry valid signatures.
    pub expected_user_id: Option<String>,
}

impl VerifierConfig {
    pub fn new(jwks_url: impl Into<String>) -> Self {
        Self {
            jwks_url: jwks_url.into(),
            max_key_age: MAX_KEY_AGE,
            min_refresh_interval: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(10),
            max_wait: DEFAULT_MAX_KEY_WAIT,
            expected_user_id: None,
        }
    }

    pub fn with_min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    pub fn with_max_key_age(mut self, age: Duration) -> Self {
        self.max_key_age = age.min(MAX_KEY_AGE);
        self
    }

    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    pub fn with_max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Pins our FAL account's user id (empty or `None`: any user).
    pub fn with_expected_user_id(mut self, user_id: Option<String>) -> Self {
        self.expected_user_id = user_id
            .map(|u| u.trim().to_owned())
            .filter(|u| !u.is_empty());
        self
    }
}
