//! The verifier with its cached key set: one fetch at a time, bounded waits, and a refetch
//! when a signature fails, so FAL can rotate keys without a webhook being lost.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::HeaderMap;
use ed25519_dalek::VerifyingKey;
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::{VerifierConfig, MAX_KEY_AGE};
use super::error::WebhookError;
use super::jwks::parse_jwks_counting;
use super::signing::{
    any_key_verifies, check_timestamp, decode_signature, parse_payload, signed_message,
    WebhookHeaders,
};
use crate::types::WebhookPayload;

/// One fetched key set.
struct KeySet {
    keys: Vec<VerifyingKey>,
    fetched_at: Instant,
}

/// What a fetch ends with, shared with every webhook waiting for it.
type FetchOutcome = Option<Result<Arc<KeySet>, String>>;

#[derive(Default)]
struct KeyCache {
    current: Option<Arc<KeySet>>,
    last_attempt: Option<Instant>,
    /// The fetch under way, if any: at most one at a time.
    inflight: Option<watch::Receiver<FetchOutcome>>,
}

struct Shared {
    http: reqwest::Client,
    config: VerifierConfig,
    /// Held only for a few instructions, never across an await.
    cache: std::sync::Mutex<KeyCache>,
    /// Whether skipped (non-ED25519) JWKS entries were logged already.
    skipped_logged: AtomicBool,
}

impl Shared {
    fn cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn fetch(&self) -> Result<Vec<VerifyingKey>, WebhookError> {
        let unavailable = |e: reqwest::Error| WebhookError::KeysUnavailable(e.to_string());
        let response = self
            .http
            .get(&self.config.jwks_url)
            .timeout(self.config.fetch_timeout)
            .send()
            .await
            .map_err(unavailable)?;
        if !response.status().is_success() {
            return Err(WebhookError::KeysUnavailable(format!(
                "JWKS answered HTTP {}",
                response.status().as_u16()
            )));
        }
        let body = response.bytes().await.map_err(unavailable)?;
        let (keys, skipped) = parse_jwks_counting(&body)?;
        if skipped > 0 {
            if self.skipped_logged.swap(true, Ordering::Relaxed) {
                tracing::debug!(skipped, usable = keys.len(), "JWKS entries skipped");
            } else {
                tracing::warn!(jwks_url = %self.config.jwks_url, skipped, usable = keys.len(),
                    "FAL's JWKS lists keys that are not ED25519; they are skipped");
            }
        }
        Ok(keys)
    }
}

/// Verifies webhooks against FAL's JWKS, fetched lazily and cached.
///
/// One fetch at a time: webhooks arriving meanwhile verify with the cached set when there is
/// one, and otherwise wait for the fetch at most [`VerifierConfig::max_wait`].
pub struct WebhookVerifier {
    shared: Arc<Shared>,
}

impl fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl WebhookVerifier {
    /// A verifier with default caching, reading keys from `jwks_url`.
    pub fn new(jwks_url: impl Into<String>) -> Self {
        Self::with_config(VerifierConfig::new(jwks_url))
    }

    pub fn with_config(mut config: VerifierConfig) -> Self {
        config.max_key_age = config.max_key_age.min(MAX_KEY_AGE);
        Self {
            shared: Arc::new(Shared {
                http: reqwest::Client::new(),
                config,
                cache: std::sync::Mutex::new(KeyCache::default()),
                skipped_logged: AtomicBool::new(false),
            }),
        }
    }

    pub fn config(&self) -> &VerifierConfig {
        &self.shared.config
    }

    /// Checks a webhook's signature, freshness and (when pinned) user, then decodes it.
    /// `now_unix` is the current time in Unix seconds (a parameter so that tests are
    /// deterministic).
    pub async fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<WebhookPayload, WebhookError> {
        let headers = WebhookHeaders::from_headers(headers)?;
        // Cheap checks first: a stale or garbled webhook never costs a key fetch.
        check_timestamp(&headers.timestamp, now_unix)?;
        let signature = decode_signature(&headers.signature)?;
        let message = signed_message(
            &headers.request_id,
            &headers.user_id,
            &headers.timestamp,
            body,
        );

        let keys = self.usable_keys().await?;
        if !any_key_verifies(&keys.keys, &message, &signature) {
            // Perhaps FAL rotated its keys: fetch again (unless that was done very recently).
            let newer = self.refreshed_since(&keys).await;
            match newer {
                Ok(newer) if any_key_verifies(&newer.keys, &message, &signature) => {}
                Err(error @ WebhookError::KeysUnavailable(_)) => return Err(error),
                _ => {
                    tracing::warn!(request_id = %headers.request_id, "webhook signature refused");
                    return Err(WebhookError::InvalidSignature);
                }
            }
        }
        if let Some(expected) = &self.shared.config.expected_user_id {
            if headers.user_id != *expected {
                return Err(WebhookError::ForeignUser {
                    user_id: headers.user_id,
                    request_id: headers.request_id,
                });
            }
        }
        parse_payload(&headers, body)
    }

    /// [`WebhookVerifier::verify`] at the system clock's current time.
    pub async fn verify_now(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<WebhookPayload, WebhookError> {
        self.verify(headers, body, chrono::Utc::now().timestamp())
            .await
    }

    /// A key set young enough to trust: the cached one (a refresh starts in the background
    /// when it is nearly due), or a fresh fetch waited for at most the bound.
    async fn usable_keys(&self) -> Result<Arc<KeySet>, WebhookError> {
        let config = &self.shared.config;
        let waiting = {
            let mut cache = self.shared.cache();
            match cache.current.clone() {
                Some(set) if set.fetched_at.elapsed() < config.max_key_age => {
                    let refresh_at = config.max_key_age - config.max_key_age / 10;
                    if set.fetched_at.elapsed() >= refresh_at {
                        let _ = self.start_fetch(&mut cache);
                    }
                    return Ok(set);
                }
                _ => {
                    // Keys older than the limit are not trusted, whatever happens next.
                    cache.current = None;
                    self.start_fetch(&mut cache)
                }
            }
        };
        match waiting {
            Some(fetch) => self.wait_for(fetch).await,
            None => Err(WebhookError::KeysUnavailable(
                "key refresh attempted too recently".to_owned(),
            )),
        }
    }

    /// A key set fetched after `seen`: one another webhook's refresh brought meanwhile, or a
    /// new fetch (rate-limited by the minimum interval) waited for at most the bound.
    async fn refreshed_since(&self, seen: &Arc<KeySet>) -> Result<Arc<KeySet>, WebhookError> {
        let waiting = {
            let mut cache = self.shared.cache();
            if let Some(current) = &cache.current {
                if current.fetched_at > seen.fetched_at {
                    return Ok(current.clone());
                }
            }
            self.start_fetch(&mut cache)
        };
        match waiting {
            Some(fetch) => self.wait_for(fetch).await,
            None => Err(WebhookError::InvalidSignature),
        }
    }

    /// Joins the fetch under way, or starts one unless the last began within the minimum
    /// interval (`None` then). The fetch runs in its own task, so it finishes, and fills the
    /// cache, even when every webhook waiting for it has given up.
    fn start_fetch(&self, cache: &mut KeyCache) -> Option<watch::Receiver<FetchOutcome>> {
        if let Some(fetch) = &cache.inflight {
            // A fetch whose task vanished (its runtime shut down) is not joined.
            if fetch.has_changed().is_ok() {
                return Some(fetch.clone());
            }
            cache.inflight = None;
        }
        if let Some(last) = cache.last_attempt {
            if last.elapsed() < self.shared.config.min_refresh_interval {
                return None;
            }
        }
        cache.last_attempt = Some(Instant::now());
        let (done, fetch) = watch::channel(None);
        cache.inflight = Some(fetch.clone());
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let fetched = shared.fetch().await;
            let outcome = {
                let mut cache = shared.cache();
                cache.inflight = None;
                match fetched {
                    Ok(keys) => {
                        tracing::info!(jwks_url = %shared.config.jwks_url, keys = keys.len(),
                            "fetched FAL's JWKS");
                        let set = Arc::new(KeySet {
                            keys,
                            fetched_at: Instant::now(),
                        });
                        cache.current = Some(set.clone());
                        Ok(set)
                    }
                    Err(error) => {
                        tracing::warn!(jwks_url = %shared.config.jwks_url, %error,
                            "could not fetch FAL's JWKS");
                        Err(error.to_string())
                    }
                }
            };
            let _ = done.send(Some(outcome));
        });
        Some(fetch)
    }

    /// Waits for a fetch, at most [`VerifierConfig::max_wait`].
    async fn wait_for(
        &self,
        mut fetch: watch::Receiver<FetchOutcome>,
    ) -> Result<Arc<KeySet>, WebhookError> {
        let max_wait = self.shared.config.max_wait;
        let finished = tokio::time::timeout(max_wait, async {
            loop {
                if let Some(outcome) = fetch.borrow_and_update().clone() {
                    return Some(outcome);
                }
                if fetch.changed().await.is_err() {
                    return fetch.borrow().clone();
                }
            }
        })
        .await;
        match finished {
            Ok(Some(Ok(set))) => Ok(set),
            Ok(Some(Err(error))) => Err(WebhookError::KeysUnavailable(error)),
            Ok(None) => Err(WebhookError::KeysUnavailable(
                "the key fetch was abandoned".to_owned(),
            )),
            Err(_) => {
                metrics::counter!("jwks_waits_timed_out_total").increment(1);
                Err(WebhookError::KeysUnavailable(format!(
                    "FAL's JWKS did not answer within {} ms",
                    max_wait.as_millis()
                )))
            }
        }
    }
}
