//! The client's settings: FAL's hosts, timeouts, the retry policy, and what to upload.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;

use super::media::MediaPolicy;

/// FAL's queue host.
pub const DEFAULT_QUEUE_URL: &str = "https://queue.fal.run";
/// FAL's REST host (storage, keys), as the current official clients use it.
pub const DEFAULT_REST_URL: &str = "https://rest.fal.ai";
/// Where FAL publishes the keys that sign its webhooks.
pub const DEFAULT_JWKS_URL: &str = "https://rest.fal.ai/.well-known/jwks.json";
/// FAL's Platform API (request payloads among others), version included.
pub const DEFAULT_PLATFORM_URL: &str = "https://api.fal.ai/v1";

/// How long calls may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection.
    pub connect: Duration,
    /// One queue or storage API call, answer included.
    pub request: Duration,
    /// Moving file bytes (uploads and downloads).
    pub transfer: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(30),
            transfer: Duration::from_secs(300),
        }
    }
}

/// Exponential backoff with jitter, for calls that are safe to repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retries.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 1): half the exponential step
    /// fixed, half random, so that many clients do not retry in lockstep.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let step = exp.min(self.max_delay);
        let half = step / 2;
        let jitter_ms = rand::thread_rng().gen_range(0..=half.as_millis() as u64);
        let backoff = half + Duration::from_millis(jitter_ms);
        match retry_after {
            Some(wait) => backoff.max(wait).min(self.max_delay),
            None => backoff,
        }
    }
}

/// Settings of a [`FalClient`].
#[derive(Clone)]
pub struct FalClientConfig {
    /// Queue base, e.g. `https://queue.fal.run`.
    pub queue_url: String,
    /// REST base, e.g. `https://rest.fal.ai`.
    pub rest_url: String,
    /// Platform API base with its version, e.g. `https://api.fal.ai/v1`.
    pub platform_url: String,
    /// The API key; without one, FAL answers 401. Deleting request payloads needs a key of
    /// FAL's ADMIN scope.
    pub key: Option<String>,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    /// Largest file [`FalClient::download`] accepts.
    pub max_download_bytes: u64,
    /// Where result files may be fetched from; the queue's and REST API's own origins are
    /// always added (see [`MediaPolicy`]).
    pub media: MediaPolicy,
}

impl FalClientConfig {
    /// Settings with default timeouts and retries.
    pub fn new(
        queue_url: impl Into<String>,
        rest_url: impl Into<String>,
        key: Option<String>,
    ) -> Self {
        Self {
            queue_url: queue_url.into(),
            rest_url: rest_url.into(),
            platform_url: DEFAULT_PLATFORM_URL.to_owned(),
            key,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            max_download_bytes: 50 * 1024 * 1024,
            media: MediaPolicy::default(),
        }
    }

    /// Settings for the real FAL hosts.
    pub fn live(key: impl Into<String>) -> Self {
        Self::new(DEFAULT_QUEUE_URL, DEFAULT_REST_URL, Some(key.into()))
    }

    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Another Platform API base (the simulator's, a proxy's).
    pub fn with_platform_url(mut self, platform_url: impl Into<String>) -> Self {
        self.platform_url = platform_url.into();
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn with_max_download_bytes(mut self, limit: u64) -> Self {
        self.max_download_bytes = limit;
        self
    }

    pub fn with_media_policy(mut self, media: MediaPolicy) -> Self {
        self.media = media;
        self
    }
}

// By hand, so that the key can never reach a log line through `{:?}`.
impl fmt::Debug for FalClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FalClientConfig")
            .field("queue_url", &self.queue_url)
            .field("rest_url", &self.rest_url)
            .field("platform_url", &self.platform_url)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .field("max_download_bytes", &self.max_download_bytes)
            .field("media", &self.media)
            .finish()
    }
}

/// What to upload: bytes in memory, or a file read afresh on every attempt.
#[derive(Debug, Clone)]
pub enum UploadSource {
    Bytes(Bytes),
    File(PathBuf),
}

impl From<Bytes> for UploadSource {
    fn from(bytes: Bytes) -> Self {
        Self::Bytes(bytes)
    }
}

impl From<Vec<u8>> for UploadSource {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Bytes(bytes.into())
    }
}

impl From<PathBuf> for UploadSource {
    fn from(path: PathBuf) -> Self {
        Self::File(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_capped() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for attempt in 1..10 {
            let d = policy.delay(attempt, None);
            let step =
                Duration::from_millis(100 * 2u64.pow(attempt - 1)).min(Duration::from_secs(1));
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(1)
        );
    }
}
