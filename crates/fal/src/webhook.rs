//! FAL webhook signatures: checking them against FAL's published keys (JWKS), and making them,
//! for the simulator and tests.
//!
//! The signed message is `request_id \n user_id \n timestamp \n hex(sha256(raw body))`, ED25519,
//! the signature sent hex-encoded; a webhook is genuine if any published key verifies it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use ed25519_dalek::{Signature, VerifyingKey};
#[cfg(any(test, feature = "sim"))]
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use super::types::WebhookPayload;

pub const HEADER_REQUEST_ID: &str = "x-fal-webhook-request-id";
pub const HEADER_USER_ID: &str = "x-fal-webhook-user-id";
pub const HEADER_TIMESTAMP: &str = "x-fal-webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "x-fal-webhook-signature";

/// Webhooks stamped further than this from now (either way) are refused, against replays.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;
/// Longest time a fetched key set is trusted.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// base64url that takes `x` with or without `=` padding: FAL's live document has carried both.
const BASE64URL_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} is not a valid value")]
    BadHeader(&'static str),
    #[error("the signature is not 64 bytes of hex")]
    BadSignatureEncoding,
    #[error("no published key verifies the signature")]
    InvalidSignature,
    #[error("the timestamp is more than {MAX_CLOCK_SKEW_SECS} s from now")]
    StaleTimestamp,
    #[error("the body is not a FAL webhook: {0}")]
    Malformed(String),
    #[error("FAL's signing keys could not be obtained: {0}")]
    KeysUnavailable(String),
    #[error("the request id in the headers does not match the body")]
    RequestIdMismatch,
    /// Genuinely signed by FAL, but for another FAL account's request (see
    /// [`VerifierConfig::expected_user_id`]).
    #[error("signed for FAL user {user_id:?}, not ours")]
    ForeignUser { user_id: String, request_id: String },
}

/// The four signature headers of a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookHeaders {
    pub request_id: String,
    pub user_id: String,
    /// Unix seconds, as sent.
    pub timestamp: String,
    /// Hex of the 64-byte ED25519 signature.
    pub signature: String,
}

impl WebhookHeaders {
    /// Reads the headers of an incoming webhook.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, WebhookError> {
        let get = |name: &'static str| -> Result<String, WebhookError> {
            let value = headers.get(name).ok_or(WebhookError::MissingHeader(name))?;
            let text = value.to_str().map_err(|_| WebhookError::BadHeader(name))?;
            Ok(text.trim().to_owned())
        };
        Ok(Self {
            request_id: get(HEADER_REQUEST_ID)?,
            user_id: get(HEADER_USER_ID)?,
            timestamp: get(HEADER_TIMESTAMP)?,
            signature: get(HEADER_SIGNATURE)?,
        })
    }

    /// The headers as name/value pairs, to send.
    pub fn pairs(&self) -> [(&'static str, &str); 4] {
        [
            (HEADER_REQUEST_ID, self.request_id.as_str()),
            (HEADER_USER_ID, self.user_id.as_str()),
            (HEADER_TIMESTAMP, self.timestamp.as_str()),
            (HEADER_SIGNATURE, self.signature.as_str()),
        ]
    }

    /// The headers as a map; values that cannot be header values are left out.
    pub fn to_header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in self.pairs() {
            if let Ok(value) = HeaderValue::from_str(value) {
                map.insert(HeaderName::from_static(name), value);
            }
        }
        map
    }
}

/// The bytes FAL signs.
pub fn signed_message(request_id: &str, user_id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let digest = hex::encode(Sha256::digest(body));
    format!("{request_id}\n{user_id}\n{timestamp}\n{digest}").into_bytes()
}

/// Refuses timestamps that are not Unix seconds within [`MAX_CLOCK_SKEW_SECS`] of `now_unix`.
pub fn check_timestamp(timestamp: &str, now_unix: i64) -> Result<(), WebhookError> {
    let stamped: i64 = timestamp
        .parse()
        .map_err(|_| WebhookError::BadHeader(HEADER_TIMESTAMP))?;
    if stamped.abs_diff(now_unix) > MAX_CLOCK_SKEW_SECS as u64 {
        return Err(WebhookError::StaleTimestamp);
    }
    Ok(())
}

fn decode_signature(signature_hex: &str) -> Result<Signature, WebhookError> {
    let bytes = hex::decode(signature_hex).map_err(|_| WebhookError::BadSignatureEncoding)?;
    let bytes: [u8; 64] = bytes
        .try_into()
        .map_err(|_| WebhookError::BadSignatureEncoding)?;
    Ok(Signature::from_bytes(&bytes))
}

/// The pure check: timestamp fresh, signature well-formed and made by one of `keys`.
pub fn verify_signature(
    keys: &[VerifyingKey],
    headers: &WebhookHeaders,
    body: &[u8],
    now_unix: i64,
) -> Result<(), WebhookError> {
    check_timestamp(&headers.timestamp, now_unix)?;
    let signature = decode_signature(&headers.signature)?;
    let message = signed_message(
        &headers.request_id,
        &headers.user_id,
        &headers.timestamp,
        body,
    );
    if any_key_verifies(keys, &message, &signature) {
        Ok(())
    } else {
        Err(WebhookError::InvalidSignature)
    }
}

fn any_key_verifies(keys: &[VerifyingKey], message: &[u8], signature: &Signature) -> bool {
    keys.iter()
        .any(|key| key.verify_strict(message, signature).is_ok())
}

/// Decodes the body and checks it is about the request the headers name.
pub fn parse_payload(
    headers: &WebhookHeaders,
    body: &[u8],
) -> Result<WebhookPayload, WebhookError> {
    let payload: WebhookPayload =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let header_id = headers.request_id.as_str();
    // The header may carry either id (they differ only when FAL retried the job internally).
    if payload.request_id != header_id && payload.gateway_request_id.as_deref() != Some(header_id) {
        return Err(WebhookError::RequestIdMismatch);
    }
    Ok(payload)
}

/// One key of a JWKS document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    /// The 32-byte public key, base64url.
    pub x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

impl Jwk {
    /// The ED25519 key, or `None` for other key types or bad encodings.
    pub fn verifying_key(&self) -> Option<VerifyingKey> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return None;
        }
        let bytes = BASE64URL_ANY_PADDING.decode(self.x.trim()).ok()?;
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        VerifyingKey::from_bytes(&bytes).ok()
    }
}

/// A JWKS document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// The usable ED25519 keys of a JWKS document; entries of other types (RSA, EC, …) or that do
/// not decode are skipped, never fatal. Fails only when no usable key is left.
pub fn parse_jwks(document: &[u8]) -> Result<Vec<VerifyingKey>, WebhookError> {
    parse_jwks_counting(document).map(|(keys, _)| keys)
}

/// [`parse_jwks`], also saying how many entries were skipped.
pub fn parse_jwks_counting(document: &[u8]) -> Result<(Vec<VerifyingKey>, usize), WebhookError> {
    /// Each entry read on its own, so that one foreign key cannot spoil the set.
    #[derive(Deserialize)]
    struct LenientJwks {
        keys: Vec<serde_json::Value>,
    }
    let jwks: LenientJwks = serde_json::from_slice(document)
        .map_err(|e| WebhookError::KeysUnavailable(format!("bad JWKS document: {e}")))?;
    let listed = jwks.keys.len();
    let keys: Vec<VerifyingKey> = jwks
        .keys
        .into_iter()
        .filter_map(|entry| serde_json::from_value::<Jwk>(entry).ok())
        .filter_map(|jwk| jwk.verifying_key())
        .collect();
    if keys.is_empty() {
        return Err(WebhookError::KeysUnavailable(format!(
            "the JWKS document has no ED25519 key ({listed} listed)"
        )));
    }
    Ok((keys.clone(), listed - keys.len()))
}

/// Longest a webhook waits for FAL's keys to be fetched before it is answered 503 (FAL
/// delivers it again later).
pub const DEFAULT_MAX_KEY_WAIT: Duration = Duration::from_secs(3);

/// Settings of a [`WebhookVerifier`].
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
    /// [`WebhookError::ForeignUser`]: every FAL customer's webhooks carry valid signatures.
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

/// Signs webhooks the way FAL does; used by the simulator and by tests.
#[cfg(any(test, feature = "sim"))]
pub struct WebhookSigner {
    key: SigningKey,
    user_id: String,
}

// By hand: the private key stays out of debug output.
#[cfg(any(test, feature = "sim"))]
impl fmt::Debug for WebhookSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSigner")
            .field("user_id", &self.user_id)
            .field(
                "public_key",
                &hex::encode(self.key.verifying_key().as_bytes()),
            )
            .finish()
    }
}

#[cfg(any(test, feature = "sim"))]
impl WebhookSigner {
    /// A signer with a fresh random key.
    pub fn generate(user_id: impl Into<String>) -> Self {
        Self {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
            user_id: user_id.into(),
        }
    }

    /// A signer with a fixed key, for reproducible setups.
    pub fn from_seed(seed: [u8; 32], user_id: impl Into<String>) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
            user_id: user_id.into(),
        }
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as a JWKS entry; `padded` writes `x` with `=` padding.
    pub fn jwk(&self, padded: bool) -> Jwk {
        let bytes = self.key.verifying_key().to_bytes();
        let x = if padded {
            base64::engine::general_purpose::URL_SAFE.encode(bytes)
        } else {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        };
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x,
            kid: Some(hex::encode(&bytes[..8])),
        }
    }

    /// The headers for `body` about `request_id`, stamped with `timestamp` (Unix seconds).
    pub fn sign(&self, request_id: &str, timestamp: i64, body: &[u8]) -> WebhookHeaders {
        let timestamp = timestamp.to_string();
        let message = signed_message(request_id, &self.user_id, &timestamp, body);
        let signature = self.key.sign(&message);
        WebhookHeaders {
            request_id: request_id.to_owned(),
            user_id: self.user_id.clone(),
            timestamp,
            signature: hex::encode(signature.to_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000;

    fn body(request_id: &str) -> Vec<u8> {
        format!(
            r#"{{"request_id":"{request_id}","gateway_request_id":"{request_id}","status":"OK","payload":{{"finetune_id":"f"}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_signed_webhook_verifies_with_its_key_among_others() {
        let signer = WebhookSigner::from_seed([7; 32], "user");
        let other = WebhookSigner::from_seed([8; 32], "user");
        let body = body("r1");
        let headers = signer.sign("r1", NOW, &body);
        let keys = [other.verifying_key(), signer.verifying_key()];
        verify_signature(&keys, &headers, &body, NOW + 10).unwrap();
        let payload = parse_payload(&headers, &body).unwrap();
        assert_eq!(payload.request_id, "r1");
    }

    #[test]
    fn forged_tampered_stale_and_garbled_webhooks_are_refused() {
        let signer = WebhookSigner::from_seed([7; 32], "user");
        let forger = WebhookSigner::from_seed([9; 32], "user");
        let keys = [signer.verifying_key()];
        let body = body("r1");

        let forged = forger.sign("r1", NOW, &body);
        assert!(matches!(
            verify_signature(&keys, &forged, &body, NOW),
            Err(WebhookError::InvalidSignature)
        ));

        let headers = signer.sign("r1", NOW, &body);
        let mut tampered = body.clone();
        tampered[5] ^= 1;
        assert!(matches!(
            verify_signature(&keys, &headers, &tampered, NOW),
            Err(WebhookError::InvalidSignature)
        ));

        assert!(matches!(
            verify_signature(&keys, &headers, &body, NOW + 301),
            Err(WebhookError::StaleTimestamp)
        ));
        assert!(matches!(
            verify_signature(&keys, &headers, &body, NOW - 301),
            Err(WebhookError::StaleTimestamp)
        ));
        verify_signature(&keys, &headers, &body, NOW + 300).unwrap();

        let mut garbled = headers.clone();
        garbled.signature = "zz".repeat(64);
        assert!(matches!(
            verify_signature(&keys, &garbled, &body, NOW),
            Err(WebhookError::BadSignatureEncoding)
        ));
        garbled.signature = headers.signature[..100].to_owned();
        assert!(matches!(
            verify_signature(&keys, &garbled, &body, NOW),
            Err(WebhookError::BadSignatureEncoding)
        ));

        // Another request's headers must not vouch for this body.
        let other = signer.sign("r2", NOW, &body);
        verify_signature(&keys, &other, &body, NOW).unwrap();
        assert!(matches!(
            parse_payload(&other, &body),
            Err(WebhookError::RequestIdMismatch)
        ));
    }

    #[test]
    fn missing_headers_are_named() {
        let signer = WebhookSigner::from_seed([7; 32], "user");
        let mut map = signer.sign("r1", NOW, b"{}").to_header_map();
        map.remove(HEADER_TIMESTAMP);
        assert!(matches!(
            WebhookHeaders::from_headers(&map),
            Err(WebhookError::MissingHeader(HEADER_TIMESTAMP))
        ));
    }

    #[test]
    fn jwks_keys_decode_with_or_without_padding() {
        let signer = WebhookSigner::from_seed([7; 32], "user");
        for padded in [true, false] {
            let jwk = signer.jwk(padded);
            assert_eq!(jwk.x.ends_with('='), padded);
            let doc = serde_json::to_vec(&Jwks { keys: vec![jwk] }).unwrap();
            assert_eq!(parse_jwks(&doc).unwrap(), vec![signer.verifying_key()]);
        }
        let doc = br#"{"keys":[{"kty":"RSA","crv":"","x":"AQAB"}]}"#;
        assert!(matches!(
            parse_jwks(doc),
            Err(WebhookError::KeysUnavailable(_))
        ));
        assert!(matches!(
            parse_jwks(b"not json"),
            Err(WebhookError::KeysUnavailable(_))
        ));
    }

    #[test]
    fn keys_of_other_types_are_skipped_not_fatal() {
        let signer = WebhookSigner::from_seed([7; 32], "user");
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256", "n": "sXch", "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "x": "f83O", "y": "x_FE"},
            {"kty": "OKP", "crv": "X25519", "x": signer.jwk(false).x},
            {"kty": "OKP", "crv": "Ed25519", "x": "not base64!"},
            serde_json::to_value(signer.jwk(true)).unwrap(),
        ]});
        let (keys, skipped) = parse_jwks_counting(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys, vec![signer.verifying_key()]);
        assert_eq!(skipped, 4);
    }

    #[test]
    fn the_signer_debug_output_has_no_private_key() {
        let signer = WebhookSigner::from_seed([7; 32], "user");
        assert!(!format!("{signer:?}").contains(&hex::encode([7u8; 32])));
    }
}
