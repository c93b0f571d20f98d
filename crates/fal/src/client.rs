//! The FAL HTTP client: queue submit/status/result/cancel, storage uploads, result downloads and
//! the Platform API's deletion of a request's payloads, with timeouts, typed errors, and retries
//! only where a repeat cannot start a second paid job.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER,
};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::types::{
    pick_error_type, with_error_type, DeletePayloadsResponse, ErrorDetail, FailureKind,
    GeneratorOutput, InitiateUploadRequest, InitiateUploadResponse, QueueStatus, SubmitResponse,
    UNEXPECTED_MEDIA_ADDRESS,
};

/// FAL's queue host.
pub const DEFAULT_QUEUE_URL: &str = "https://queue.fal.run";
/// FAL's REST host (storage, keys), as the current official clients use it.
pub const DEFAULT_REST_URL: &str = "https://rest.fal.ai";
/// Where FAL publishes the keys that sign its webhooks.
pub const DEFAULT_JWKS_URL: &str = "https://rest.fal.ai/.well-known/jwks.json";
/// FAL's Platform API (request payloads among others), version included.
pub const DEFAULT_PLATFORM_URL: &str = "https://api.fal.ai/v1";
/// Storage backend asked for when initiating uploads.
pub const STORAGE_TYPE: &str = "fal-cdn-v3";
/// How long FAL keeps a training archive (users' photos) we upload. The trainer reads it when
/// the job starts — after an unknown queue wait — and, we must assume, again on each of FAL's
/// automatic retries (up to 10), so it has to outlive queue and training (up to about 30
/// minutes); but nothing needs it once we give up on the job, and at the training deadline
/// (`TRAINING_DEADLINE_SECS`, 3 hours by default) we cancel it. So: 3 hours.
pub const TRAINING_ARCHIVE_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// Upload lifecycle headers. FAL's JavaScript client sends the first on upload initiation, its
/// Python client both (its comment: the CDN reads the first, storage-backed initiation the
/// second), and FAL's data-retention page names the second; we send both, as Python does.
/// The value is JSON: `{"expiration_duration_seconds": N}`.
pub const HEADER_OBJECT_LIFECYCLE: &str = "x-fal-object-lifecycle";
pub const HEADER_OBJECT_LIFECYCLE_PREFERENCE: &str = "x-fal-object-lifecycle-preference";
/// The Platform API's optional retry key ("prevents duplicate deletions on retries").
pub const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Hosts (and their subdomains) FAL serves result files from: `v3.fal.media` and `v3b.fal.media`
/// today (FAL's own clients and storage tests), `fal.media` on older answers.
pub const DEFAULT_MEDIA_HOSTS: &[&str] = &["fal.media"];
/// Redirects followed when fetching a result file, each checked like the first URL.
pub const MAX_MEDIA_REDIRECTS: usize = 3;
/// The header FAL repeats a failed request's `error_type` in.
pub const HEADER_ERROR_TYPE: &str = "x-fal-error-type";

/// Everything that can go wrong talking to FAL.
#[derive(Debug, thiserror::Error)]
pub enum FalError {
    #[error("FAL refused the API key (HTTP {status})")]
    Unauthorized { status: u16 },
    #[error("FAL rejected the input: {detail}")]
    Validation { detail: String },
    #[error("FAL's rate or concurrency limit was reached")]
    RateLimited { retry_after: Option<Duration> },
    /// `detail` ends with FAL's error type, when it gave one (see `types::with_error_type`).
    #[error("FAL server error (HTTP {status}): {detail}")]
    Server {
        status: u16,
        detail: String,
        error_type: Option<String>,
    },
    #[error("FAL found no such request or file: {detail}")]
    NotFound { detail: String },
    #[error("the request had already completed and cannot be cancelled")]
    AlreadyCompleted,
    #[error("FAL answered HTTP {status}: {detail}")]
    Http {
        status: u16,
        detail: String,
        error_type: Option<String>,
    },
    /// FAL finished the request and reports that it failed (`error` / `error_type` on its
    /// COMPLETED status); `message` ends with the type, as `detail` does above.
    #[error("FAL reports the request failed: {message}")]
    Job {
        message: String,
        error_type: Option<String>,
    },
    /// A result names a file we do not fetch (off the media allow-list, a private address, a
    /// redirect elsewhere): nothing was fetched, and the URL must not be handed on either.
    #[error("FAL returned an image from an unexpected address ({reason}) [fal error_type={UNEXPECTED_MEDIA_ADDRESS}]")]
    UnexpectedMediaUrl { url: String, reason: String },
    #[error("FAL did not answer in time")]
    Timeout,
    /// The connection was never made, so the request certainly did not reach FAL.
    #[error("could not connect to FAL")]
    Connect(#[source] reqwest::Error),
    /// The connection broke after it was made; the request may have reached FAL.
    #[error("the connection to FAL failed")]
    Connection(#[source] reqwest::Error),
    #[error("could not decode FAL's answer: {0}")]
    Decode(String),
    #[error("the download is larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("invalid URL {url:?}")]
    InvalidUrl { url: String },
    #[error("could not read the file to upload")]
    Io(#[from] std::io::Error),
    #[error("the FAL key holds characters an HTTP header cannot carry")]
    InvalidKey,
    #[error("could not build the HTTP client")]
    Setup(#[source] reqwest::Error),
}

impl FalError {
    /// The HTTP status FAL answered with, when the error is an answer.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { status }
            | Self::Server { status, .. }
            | Self::Http { status, .. } => Some(*status),
            Self::Validation { .. } => Some(422),
            Self::RateLimited { .. } => Some(429),
            Self::NotFound { .. } => Some(404),
            Self::AlreadyCompleted => Some(400),
            _ => None,
        }
    }

    /// FAL's category for the failure (`request_timeout`, `content_policy_violation`, …), for
    /// logs and analytics; our own `unexpected_media_address` for a refused result file.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            Self::Server { error_type, .. }
            | Self::Http { error_type, .. }
            | Self::Job { error_type, .. } => error_type.as_deref(),
            Self::Validation { detail } => super::types::error_type_of_reason(detail),
            Self::UnexpectedMediaUrl { .. } => Some(UNEXPECTED_MEDIA_ADDRESS),
            _ => None,
        }
    }

    /// What the failure means for the user (the bot has one sentence per kind).
    pub fn failure_kind(&self) -> FailureKind {
        self.error_type()
            .map_or(FailureKind::Other, FailureKind::from_error_type)
    }

    /// The failure a COMPLETED status reports (`error`, `error_type`), if it reports one.
    pub fn from_status(status: &QueueStatus) -> Option<Self> {
        if !status.is_failed() {
            return None;
        }
        let message = status
            .error
            .clone()
            .unwrap_or_else(|| "FAL reported an error without details".to_owned());
        let error_type = status.error_type.clone();
        count_failure("status", error_type.as_deref());
        Some(Self::Job {
            message: with_error_type(message, error_type.as_deref()),
            error_type,
        })
    }

    /// Whether repeating the same call may succeed (rate limits, server errors, lost connections).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Timeout
                | Self::Connect(_)
                | Self::Connection(_)
        )
    }

    fn from_reqwest(error: reqwest::Error) -> Self {
        // Our resolver refused the address a media host resolved to: nothing was sent.
        if let Some(refused) = find_source::<NonPublicAddress>(&error) {
            return Self::UnexpectedMediaUrl {
                url: error.url().map(Url::to_string).unwrap_or_default(),
                reason: refused.to_string(),
            };
        }
        // A connect timeout is a connect error too: nothing was sent.
        if error.is_connect() {
            Self::Connect(error)
        } else if error.is_timeout() {
            Self::Timeout
        } else if error.is_decode() {
            Self::Decode(error.to_string())
        } else {
            Self::Connection(error)
        }
    }

    /// The typed error for a non-success answer.
    fn from_response(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Self {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let detail = json
            .as_ref()
            .and_then(|v| v.get("detail"))
            .map(|d| ErrorDetail::from_value(d.clone()).to_human())
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("no details").to_owned()
                } else {
                    text.chars().take(300).collect()
                }
            });
        let queue_status = json
            .as_ref()
            .and_then(|v| v.get("status"))
            .and_then(Value::as_str);
        // FAL's category: `error_type` in the body, else the `x-fal-error-type` header (as FAL's
        // Python client reads them), or the `type` of a model error in `detail`.
        let explicit = json
            .as_ref()
            .and_then(|v| v.get("error_type"))
            .and_then(Value::as_str)
            .or_else(|| headers.get(HEADER_ERROR_TYPE).and_then(|v| v.to_str().ok()));
        let detail_type = json
            .as_ref()
            .and_then(|v| v.get("detail"))
            .map(|d| ErrorDetail::from_value(d.clone()));
        let error_type = pick_error_type(
            explicit,
            detail_type.as_ref().and_then(ErrorDetail::error_type),
        );
        if status.as_u16() == 422 || status.is_server_error() || error_type.is_some() {
            count_failure("answer", error_type.as_deref());
        }
        let detail = with_error_type(detail, error_type.as_deref());
        match status.as_u16() {
            401 | 403 => Self::Unauthorized {
                status: status.as_u16(),
            },
            422 => Self::Validation { detail },
            429 => Self::RateLimited {
                retry_after: headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
            },
            404 => Self::NotFound { detail },
            400 if queue_status == Some("ALREADY_COMPLETED") => Self::AlreadyCompleted,
            code if code >= 500 => Self::Server {
                status: code,
                detail,
                error_type,
            },
            code => Self::Http {
                status: code,
                detail,
                error_type,
            },
        }
    }
}

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

/// Whether a failed attempt may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Repeating changes nothing on FAL's side.
    Idempotent,
    /// Repeating may start a second paid job: only when the first never left this machine.
    OnlyIfNotSent,
}

/// A client for FAL's queue and storage APIs.
#[derive(Clone)]
pub struct FalClient {
    http: reqwest::Client,
    queue_url: String,
    rest_url: String,
    platform_url: String,
    auth: Option<HeaderValue>,
    timeouts: Timeouts,
    retry: RetryPolicy,
    max_download_bytes: u64,
    media: Arc<MediaPolicy>,
    /// Fetches result files: no redirects followed by itself, and in live mode a resolver that
    /// refuses private addresses (so a checked host cannot be re-resolved elsewhere).
    media_http: reqwest::Client,
}

impl fmt::Debug for FalClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FalClient")
            .field("queue_url", &self.queue_url)
            .field("rest_url", &self.rest_url)
            .field("platform_url", &self.platform_url)
            .field("key", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .field("media", &self.media)
            .finish()
    }
}

/// Where to follow and cancel one queue request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestUrls {
    pub status_url: String,
    pub response_url: String,
    pub cancel_url: String,
}

impl FalClient {
    /// A client for the given settings.
    pub fn new(config: FalClientConfig) -> Result<Self, FalError> {
        let auth = match &config.key {
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Key {}", key.trim()))
                    .map_err(|_| FalError::InvalidKey)?;
                // Marked sensitive so that HTTP-level debugging never prints it.
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            .user_agent(concat!("aisha/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(FalError::Setup)?;
        // The APIs we were pointed at are trusted with our key already; files they serve (the
        // simulator's, or a proxy's) are fetched from them too.
        let media = config
            .media
            .clone()
            .trusting(&config.queue_url)
            .trusting(&config.rest_url);
        let mut media_http = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            .user_agent(concat!("aisha/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if !media.allow_private {
            media_http = media_http.dns_resolver(Arc::new(PublicOnlyResolver {
                exempt: media.trusted_hostnames(),
            }));
        }
        let media_http = media_http.build().map_err(FalError::Setup)?;
        Ok(Self {
            http,
            queue_url: config.queue_url.trim_end_matches('/').to_owned(),
            rest_url: config.rest_url.trim_end_matches('/').to_owned(),
            platform_url: config.platform_url.trim_end_matches('/').to_owned(),
            auth,
            timeouts: config.timeouts,
            retry: config.retry,
            max_download_bytes: config.max_download_bytes,
            media: Arc::new(media),
            media_http,
        })
    }

    /// The rules result files are fetched by.
    pub fn media_policy(&self) -> &MediaPolicy {
        &self.media
    }

    /// Whether a result file's URL may be fetched (or handed to Telegram): on the allow-list,
    /// and in live mode resolving to public addresses only. A name that does not resolve right
    /// now is not refused here (the fetch will retry); one that resolves privately is.
    pub async fn check_media_url(&self, url: &str) -> Result<(), FalError> {
        let parsed = self.media.check(url)?;
        self.media.check_resolved(&parsed).await
    }

    /// [`FalClient::check_media_url`] for every image of a generator's or the upscaler's
    /// output: the check to make before recording a generation as completed.
    pub async fn check_output_images(&self, output: &GeneratorOutput) -> Result<(), FalError> {
        for image in output.output_images() {
            if let Err(error) = self.check_media_url(&image.url).await {
                metrics::counter!("fal_media_refused_total").increment(1);
                tracing::warn!(url = %image.url, %error, "FAL result names an image we do not fetch");
                return Err(error);
            }
        }
        Ok(())
    }

    /// Puts a job in the queue. Not idempotent: repeated only when the connection was never
    /// made. On a timeout the job may exist; the caller must not resubmit blindly.
    pub async fn submit(
        &self,
        endpoint: &str,
        input: &Value,
        webhook_url: Option<&str>,
    ) -> Result<SubmitResponse, FalError> {
        self.submit_with(endpoint, input, webhook_url, None).await
    }

    /// [`FalClient::submit`], asking FAL to delete the files the job produces `results_lifetime`
    /// after it made them (the lifecycle header on the submit, which "applies to all objects
    /// generated during request processing"): a backstop for when deleting the request's
    /// payloads ([`FalClient::delete_payloads`]) never gets through.
    pub async fn submit_expiring(
        &self,
        endpoint: &str,
        input: &Value,
        webhook_url: Option<&str>,
        results_lifetime: Duration,
    ) -> Result<SubmitResponse, FalError> {
        self.submit_with(endpoint, input, webhook_url, Some(results_lifetime))
            .await
    }

    async fn submit_with(
        &self,
        endpoint: &str,
        input: &Value,
        webhook_url: Option<&str>,
        results_lifetime: Option<Duration>,
    ) -> Result<SubmitResponse, FalError> {
        let endpoint = endpoint.trim_matches('/');
        let lifecycle = results_lifetime.map(lifecycle_header);
        let mut url = parse_url(&format!("{}/{}", self.queue_url, endpoint))?;
        if let Some(webhook) = webhook_url {
            url.query_pairs_mut().append_pair("fal_webhook", webhook);
        }
        let body =
            Bytes::from(serde_json::to_vec(input).map_err(|e| FalError::Decode(e.to_string()))?);
        let answer: SubmitResponse = self
            .with_retries("submit", endpoint, Repeat::OnlyIfNotSent, |_| {
                let mut request = self
                    .authorized(Method::POST, url.clone())
                    .timeout(self.timeouts.request)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
                if let Some(lifecycle) = &lifecycle {
                    request = request.header(HEADER_OBJECT_LIFECYCLE_PREFERENCE, lifecycle.clone());
                }
                async move { json_answer(request).await }
            })
            .await?;
        tracing::info!(endpoint, request_id = %answer.request_id, "submitted to FAL");
        Ok(answer)
    }

    /// [`FalClient::submit`] for any serializable input (the `aggregates::presets` inputs).
    pub async fn submit_input<I: Serialize>(
        &self,
        endpoint: &str,
        input: &I,
        webhook_url: Option<&str>,
    ) -> Result<SubmitResponse, FalError> {
        let input = serde_json::to_value(input).map_err(|e| FalError::Decode(e.to_string()))?;
        self.submit(endpoint, &input, webhook_url).await
    }

    /// Where a request stands; `with_logs` asks for its log lines too.
    pub async fn status(&self, status_url: &str, with_logs: bool) -> Result<QueueStatus, FalError> {
        let mut url = parse_url(status_url)?;
        if with_logs {
            url.query_pairs_mut().append_pair("logs", "1");
        }
        self.with_retries("status", status_url, Repeat::Idempotent, |_| {
            let request = self
                .authorized(Method::GET, url.clone())
                .timeout(self.timeouts.request);
            async move { json_answer(request).await }
        })
        .await
    }

    /// The output of a completed request; a failed job comes back as its typed error.
    pub async fn result<T: DeserializeOwned>(&self, response_url: &str) -> Result<T, FalError> {
        let url = parse_url(response_url)?;
        self.with_retries("result", response_url, Repeat::Idempotent, |_| {
            let request = self
                .authorized(Method::GET, url.clone())
                .timeout(self.timeouts.request);
            async move { json_answer(request).await }
        })
        .await
    }

    /// The URLs of a request we know only by id (a submission adopted from its webhook). FAL
    /// builds them on the app id, the model id's first two segments; the submit answer's own
    /// URLs are preferred wherever we have them.
    pub fn request_urls(&self, endpoint: &str, request_id: &str) -> RequestUrls {
        let app: Vec<&str> = endpoint.trim_matches('/').split('/').take(2).collect();
        let base = format!("{}/{}/requests/{request_id}", self.queue_url, app.join("/"));
        RequestUrls {
            status_url: format!("{base}/status"),
            cancel_url: format!("{base}/cancel"),
            response_url: base,
        }
    }

    /// Asks FAL to cancel a request; [`FalError::AlreadyCompleted`] when it is too late.
    pub async fn cancel(&self, cancel_url: &str) -> Result<(), FalError> {
        let url = parse_url(cancel_url)?;
        self.with_retries("cancel", cancel_url, Repeat::Idempotent, |_| {
            let request = self
                .authorized(Method::PUT, url.clone())
                .timeout(self.timeouts.request);
            async move {
                let (status, headers, body) = send(request).await?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(FalError::from_response(status, &headers, &body))
                }
            }
        })
        .await
    }

    /// Deletes a finished request's payloads (its JSON input and output) and the CDN files in its
    /// output, with the Platform API's *Delete request payloads*; files the request read (our
    /// uploads) are not deleted by it. Needs an ADMIN-scope key. A request FAL no longer knows
    /// answers [`FalError::NotFound`]. Repeated on transient failures with the same idempotency
    /// key, the request id: one deletion, however often it is asked for.
    pub async fn delete_payloads(
        &self,
        request_id: &str,
    ) -> Result<DeletePayloadsResponse, FalError> {
        let mut url = parse_url(&format!("{}/models/requests", self.platform_url))?;
        url.path_segments_mut()
            .map_err(|_| FalError::InvalidUrl {
                url: self.platform_url.clone(),
            })?
            .push(request_id)
            .push("payloads");
        let key = HeaderValue::from_str(request_id).map_err(|_| FalError::InvalidUrl {
            url: url.to_string(),
        })?;
        let answer: DeletePayloadsResponse = self
            .with_retries("delete_payloads", url.as_str(), Repeat::Idempotent, |_| {
                let request = self
                    .authorized(Method::DELETE, url.clone())
                    .timeout(self.timeouts.request)
                    .header(HEADER_IDEMPOTENCY_KEY, key.clone());
                async move { json_answer(request).await }
            })
            .await?;
        tracing::info!(
            request_id,
            files = answer.cdn_delete_results.len(),
            failed = answer.failures().count(),
            "FAL request payloads deleted"
        );
        Ok(answer)
    }

    /// Uploads a file to FAL's storage and returns the URL a model can read it from; FAL
    /// deletes it after [`TRAINING_ARCHIVE_LIFETIME`], training archives being all we upload.
    pub async fn upload(
        &self,
        source: impl Into<UploadSource>,
        content_type: &str,
        file_name: &str,
    ) -> Result<String, FalError> {
        self.upload_expiring(source, content_type, file_name, TRAINING_ARCHIVE_LIFETIME)
            .await
    }

    /// [`FalClient::upload`], asking FAL to delete the file `lifetime` after the upload
    /// (whole seconds, at least one: FAL reads 0 as "never").
    pub async fn upload_expiring(
        &self,
        source: impl Into<UploadSource>,
        content_type: &str,
        file_name: &str,
        lifetime: Duration,
    ) -> Result<String, FalError> {
        let source = source.into();
        let lifecycle = lifecycle_header(lifetime);
        let mut initiate_url = parse_url(&format!("{}/storage/upload/initiate", self.rest_url))?;
        initiate_url
            .query_pairs_mut()
            .append_pair("storage_type", STORAGE_TYPE);
        let ticket_body = InitiateUploadRequest {
            content_type: content_type.to_owned(),
            file_name: file_name.to_owned(),
        };
        let ticket: InitiateUploadResponse = self
            .with_retries("upload_initiate", file_name, Repeat::Idempotent, |_| {
                // On the initiation, as FAL's clients do: the ticket is where the file's
                // storage is decided; the pre-signed PUT carries only the bytes.
                let request = self
                    .authorized(Method::POST, initiate_url.clone())
                    .timeout(self.timeouts.request)
                    .header(HEADER_OBJECT_LIFECYCLE, lifecycle.clone())
                    .header(HEADER_OBJECT_LIFECYCLE_PREFERENCE, lifecycle.clone())
                    .json(&ticket_body);
                async move { json_answer(request).await }
            })
            .await?;

        let upload_url = parse_url(&ticket.upload_url)?;
        self.with_retries("upload_put", file_name, Repeat::Idempotent, |_| {
            let source = source.clone();
            // The upload URL is pre-signed storage, not FAL's API: it gets no API key.
            let request = self
                .http
                .put(upload_url.clone())
                .timeout(self.timeouts.transfer)
                .header(CONTENT_TYPE, content_type);
            async move {
                let (body, length) = match source {
                    UploadSource::Bytes(bytes) => {
                        let length = bytes.len() as u64;
                        (reqwest::Body::from(bytes), length)
                    }
                    UploadSource::File(path) => {
                        let file = tokio::fs::File::open(path).await?;
                        let length = file.metadata().await?.len();
                        (reqwest::Body::from(file), length)
                    }
                };
                // Pre-signed storage wants a length, not a chunked stream.
                let request = request.header(CONTENT_LENGTH, length).body(body);
                let (status, headers, body) = send(request).await?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(FalError::from_response(status, &headers, &body))
                }
            }
        })
        .await?;
        tracing::info!(file_name, content_type, "uploaded to FAL storage");
        Ok(ticket.file_url)
    }

    /// Fetches a result file (an image, a LoRA) up to the configured size limit, only from
    /// where the [`MediaPolicy`] allows; redirects are followed by hand (at most
    /// [`MAX_MEDIA_REDIRECTS`]), each target checked like the first URL.
    pub async fn download(&self, url: &str) -> Result<Bytes, FalError> {
        let parsed = self.media.check(url).inspect_err(|error| {
            metrics::counter!("fal_media_refused_total").increment(1);
            tracing::warn!(url, %error, "not fetching a result file");
        })?;
        self.media.check_resolved(&parsed).await?;
        let limit = self.max_download_bytes;
        self.with_retries("download", url, Repeat::Idempotent, |_| {
            let first = parsed.clone();
            async move {
                let mut target = first;
                let mut redirects = 0;
                let mut response = loop {
                    // Result files live on a public CDN: no API key leaves for another host.
                    let response = self
                        .media_http
                        .get(target.clone())
                        .timeout(self.timeouts.transfer)
                        .send()
                        .await
                        .map_err(FalError::from_reqwest)?;
                    if !response.status().is_redirection() {
                        break response;
                    }
                    let Some(next) = redirect_target(&target, response.headers()) else {
                        break response;
                    };
                    redirects += 1;
                    if redirects > MAX_MEDIA_REDIRECTS {
                        return Err(FalError::UnexpectedMediaUrl {
                            url: target.to_string(),
                            reason: format!("more than {MAX_MEDIA_REDIRECTS} redirects"),
                        });
                    }
                    let next = self.media.check(next.as_str()).inspect_err(|error| {
                        metrics::counter!("fal_media_refused_total").increment(1);
                        tracing::warn!(from = %target, to = %next, %error,
                            "not following a result file's redirect");
                    })?;
                    self.media.check_resolved(&next).await?;
                    target = next;
                };
                let status = response.status();
                if !status.is_success() {
                    let headers = response.headers().clone();
                    let body = response.bytes().await.unwrap_or_default();
                    return Err(FalError::from_response(status, &headers, &body));
                }
                if response.content_length().is_some_and(|len| len > limit) {
                    return Err(FalError::TooLarge { limit });
                }
                let mut data = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(FalError::from_reqwest)? {
                    if data.len() as u64 + chunk.len() as u64 > limit {
                        return Err(FalError::TooLarge { limit });
                    }
                    data.extend_from_slice(&chunk);
                }
                Ok(Bytes::from(data))
            }
        })
        .await
    }

    fn authorized(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.auth {
            Some(auth) => request.header(AUTHORIZATION, auth.clone()),
            None => request,
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the policy runs out. Every attempt
    /// is counted in `fal_calls_total` by operation, endpoint and status.
    async fn with_retries<T, F, Fut>(
        &self,
        op: &'static str,
        target: &str,
        repeat: Repeat,
        mut attempt: F,
    ) -> Result<T, FalError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, FalError>>,
    {
        let max_attempts = self.retry.max_attempts.max(1);
        let endpoint = metric_endpoint(target);
        let mut number = 1;
        loop {
            let error = match attempt(number).await {
                Ok(value) => {
                    metrics::counter!("fal_calls_total", "op" => op, "endpoint" => endpoint.clone(),
                        "status" => "ok", "outcome" => "ok")
                    .increment(1);
                    return Ok(value);
                }
                Err(error) => error,
            };
            metrics::counter!("fal_calls_total", "op" => op, "endpoint" => endpoint.clone(),
                "status" => metric_status(&error), "outcome" => "error")
            .increment(1);
            let may_repeat = match repeat {
                Repeat::Idempotent => error.is_transient(),
                Repeat::OnlyIfNotSent => matches!(error, FalError::Connect(_)),
            };
            if !may_repeat || number >= max_attempts {
                tracing::warn!(
                    op,
                    endpoint = target,
                    status = error.http_status(),
                    attempt = number,
                    error = %error,
                    "FAL call failed"
                );
                return Err(error);
            }
            let retry_after = match &error {
                FalError::RateLimited { retry_after } => *retry_after,
                _ => None,
            };
            let delay = self.retry.delay(number, retry_after);
            metrics::counter!("fal_retries_total", "op" => op).increment(1);
            tracing::info!(
                op,
                endpoint = target,
                status = error.http_status(),
                attempt = number,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "FAL call failed, retrying"
            );
            tokio::time::sleep(delay).await;
            number += 1;
        }
    }
}

/// The lifecycle header value for `lifetime`: `{"expiration_duration_seconds":N}`, N ≥ 1.
pub fn lifecycle_header(lifetime: Duration) -> HeaderValue {
    let seconds = lifetime.as_secs().max(1);
    HeaderValue::from_str(
        &serde_json::json!({ "expiration_duration_seconds": seconds }).to_string(),
    )
    .expect("JSON of a number is a valid header value")
}

fn parse_url(url: &str) -> Result<Url, FalError> {
    Url::parse(url).map_err(|_| FalError::InvalidUrl {
        url: url.to_owned(),
    })
}

/// Counts a FAL failure by what it means (FAL's raw types are open-ended, so not a label).
fn count_failure(source: &'static str, error_type: Option<&str>) {
    let kind = error_type.map_or(FailureKind::Other, FailureKind::from_error_type);
    metrics::counter!("fal_failures_total", "source" => source, "kind" => kind.metric_label())
        .increment(1);
}

/// Where result files may come from.
///
/// A URL passes when its host is one of `host_suffixes` or a subdomain of one (`fal.media`
/// admits `v3.fal.media`, not `evilfal.media`), or when it is on the very origin (scheme, host,
/// port) of an API we were configured to call. Unless `allow_private` (simulated mode and
/// tests), suffix-listed URLs must be `https` and their host must not be, or resolve to, a
/// loopback, private, link-local, shared, multicast or otherwise non-public address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPolicy {
    host_suffixes: Vec<String>,
    trusted_origins: Vec<(String, String, u16)>,
    allow_private: bool,
}

impl Default for MediaPolicy {
    /// FAL's media hosts, live rules.
    fn default() -> Self {
        Self::new(DEFAULT_MEDIA_HOSTS.iter().copied(), false)
    }
}

impl MediaPolicy {
    /// A policy admitting `host_suffixes` (normalised: lowercase, no leading `*.` or `.`, no
    /// trailing dot; empty entries dropped). `allow_private` lifts the address and `https`
    /// rules, for simulated mode.
    pub fn new<S: AsRef<str>>(
        host_suffixes: impl IntoIterator<Item = S>,
        allow_private: bool,
    ) -> Self {
        let host_suffixes = host_suffixes
            .into_iter()
            .filter_map(|h| normalise_host(h.as_ref()))
            .collect();
        Self {
            host_suffixes,
            trusted_origins: Vec::new(),
            allow_private,
        }
    }

    /// Live rules for `hosts`, or FAL's media hosts when `hosts` is empty.
    pub fn live(hosts: &[String]) -> Self {
        if hosts.is_empty() {
            Self::default()
        } else {
            Self::new(hosts, false)
        }
    }

    /// Simulated-mode rules: `hosts` (or FAL's) at any address, plus the origins trusted later.
    pub fn simulated(hosts: &[String]) -> Self {
        let mut policy = Self::live(hosts);
        policy.allow_private = true;
        policy
    }

    /// Also admits everything on `base_url`'s exact origin (an API we call anyway).
    pub fn trusting(mut self, base_url: &str) -> Self {
        if let Some(origin) = Url::parse(base_url).ok().as_ref().and_then(origin_of) {
            if !self.trusted_origins.contains(&origin) {
                self.trusted_origins.push(origin);
            }
        }
        self
    }

    pub fn host_suffixes(&self) -> &[String] {
        &self.host_suffixes
    }

    pub fn allows_private_addresses(&self) -> bool {
        self.allow_private
    }

    /// Trusted origins' host names (not literal addresses), which the resolver lets through.
    fn trusted_hostnames(&self) -> Vec<String> {
        self.trusted_origins
            .iter()
            .map(|(_, host, _)| host.clone())
            .filter(|host| host.parse::<IpAddr>().is_err())
            .collect()
    }

    fn is_trusted_origin(&self, url: &Url) -> bool {
        origin_of(url).is_some_and(|origin| self.trusted_origins.contains(&origin))
    }

    /// The checks that need no network: scheme, credentials, host on the list, and a literal
    /// address's kind. Returns the parsed URL to fetch.
    pub fn check(&self, url: &str) -> Result<Url, FalError> {
        let refuse = |reason: String| FalError::UnexpectedMediaUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|_| refuse("not a URL".to_owned()))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(refuse(format!("scheme {:?}", parsed.scheme())));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refuse("the URL carries credentials".to_owned()));
        }
        if self.is_trusted_origin(&parsed) {
            return Ok(parsed);
        }
        let Some(host) = host_of(&parsed) else {
            return Err(refuse("no host".to_owned()));
        };
        let listed = self.host_suffixes.iter().any(|suffix| {
            host == *suffix
                || (host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.')
        });
        if !listed {
            return Err(refuse(format!("host {host} is not a FAL media host")));
        }
        if !self.allow_private {
            if parsed.scheme() != "https" {
                return Err(refuse("not https".to_owned()));
            }
            if let Ok(ip) = host.parse::<IpAddr>() {
                if !is_public_ip(ip) {
                    return Err(refuse(format!("{ip} is not a public address")));
                }
            }
        }
        Ok(parsed)
    }

    /// In live mode, resolves `url`'s host and refuses it if any address is not public. A
    /// failed lookup passes: the fetch resolves again (through a resolver with the same rule).
    pub async fn check_resolved(&self, url: &Url) -> Result<(), FalError> {
        if self.allow_private || self.is_trusted_origin(url) {
            return Ok(());
        }
        let Some(host) = host_of(url).filter(|h| h.parse::<IpAddr>().is_err()) else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs: Vec<IpAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => addrs.map(|a| a.ip()).collect(),
            Err(_) => return Ok(()),
        };
        match addrs.into_iter().find(|ip| !is_public_ip(*ip)) {
            Some(ip) => Err(FalError::UnexpectedMediaUrl {
                url: url.to_string(),
                reason: format!("{host} resolves to {ip}, not a public address"),
            }),
            None => Ok(()),
        }
    }
}

fn normalise_host(host: &str) -> Option<String> {
    let host = host
        .trim()
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// The URL's host, lowercase, without a trailing dot or an IPv6 address's brackets.
fn host_of(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    normalise_host(host)
}

fn origin_of(url: &Url) -> Option<(String, String, u16)> {
    Some((
        url.scheme().to_owned(),
        host_of(url)?,
        url.port_or_known_default()?,
    ))
}

/// Where a redirect answer points, resolved against the URL that answered.
fn redirect_target(from: &Url, headers: &HeaderMap) -> Option<Url> {
    let location = headers.get(LOCATION)?.to_str().ok()?;
    from.join(location.trim()).ok()
}

/// Whether `ip` is an ordinary public unicast address: not loopback, private (10/8,
/// 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16, fe80::/10), shared (100.64/10),
/// unspecified, broadcast, multicast, documentation, benchmarking or reserved; IPv4 addresses
/// carried in IPv6 (mapped, compatible, NAT64, 6to4) are judged as IPv4.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && (c == 0 || c == 2))
        || (a == 192 && b == 88 && c == 99)
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded_v4 =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    match segments {
        // Unspecified, loopback and the deprecated IPv4-compatible block.
        [0, 0, 0, 0, 0, 0, hi, lo] => hi != 0 && is_public_v4(embedded_v4(hi, lo)),
        // NAT64 (64:ff9b::/96) carries an IPv4 address.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => is_public_v4(embedded_v4(hi, lo)),
        // 6to4 (2002::/16) carries one in its next 32 bits.
        [0x2002, hi, lo, ..] => is_public_v4(embedded_v4(hi, lo)),
        // Teredo (2001::/32), documentation (2001:db8::/32), discard-only (100::/64).
        [0x2001, 0, ..] | [0x2001, 0xdb8, ..] | [0x100, 0, 0, 0, ..] => false,
        [first, ..] => {
            !((first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || (first & 0xff00) == 0xff00) // multicast
        }
    }
}

/// The resolver's refusal, found again in a reqwest error's sources.
#[derive(Debug)]
struct NonPublicAddress {
    host: String,
    ip: IpAddr,
}

impl fmt::Display for NonPublicAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} resolves to {}, not a public address",
            self.host, self.ip
        )
    }
}

impl std::error::Error for NonPublicAddress {}

/// Resolves names for result-file fetches in live mode, refusing any name with a non-public
/// address: the connection is made only to what was checked (no re-resolution in between).
struct PublicOnlyResolver {
    exempt: Vec<String>,
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let exempt = self.exempt.contains(&host);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !exempt {
                if let Some(bad) = addrs.iter().find(|a| !is_public_ip(a.ip())) {
                    let refused: Box<dyn std::error::Error + Send + Sync> =
                        Box::new(NonPublicAddress {
                            host: host.clone(),
                            ip: bad.ip(),
                        });
                    return Err(refused);
                }
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The first error of type `E` in `error`'s chain of sources.
fn find_source<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Sends and reads the whole answer.
async fn send(
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, HeaderMap, Bytes), FalError> {
    let response = request.send().await.map_err(FalError::from_reqwest)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(FalError::from_reqwest)?;
    Ok((status, headers, body))
}

/// Sends and decodes a JSON answer; any non-2xx becomes its typed error.
async fn json_answer<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, FalError> {
    let (status, headers, body) = send(request).await?;
    if !status.is_success() {
        return Err(FalError::from_response(status, &headers, &body));
    }
    serde_json::from_slice(&body).map_err(|e| FalError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_ask_fal_to_delete_them_after_their_lifetime() {
        assert_eq!(
            lifecycle_header(TRAINING_ARCHIVE_LIFETIME),
            r#"{"expiration_duration_seconds":10800}"#
        );
        // Zero would mean "keep forever" to FAL.
        assert_eq!(
            lifecycle_header(Duration::from_millis(10)),
            r#"{"expiration_duration_seconds":1}"#
        );
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let config = FalClientConfig::live("secret-key-123");
        assert!(!format!("{config:?}").contains("secret-key-123"));
        let client = FalClient::new(config).unwrap();
        assert!(!format!("{client:?}").contains("secret-key-123"));
    }

    #[test]
    fn error_answers_become_typed_errors() {
        let h = HeaderMap::new();
        let e = FalError::from_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &h,
            br#"{"detail":[{"loc":["body","prompt"],"msg":"Field required","type":"missing"}]}"#,
        );
        assert!(
            matches!(e, FalError::Validation { ref detail } if detail == "body.prompt: Field required [fal error_type=missing]"),
            "{e:?}"
        );
        assert_eq!(e.error_type(), Some("missing"));
        let e = FalError::from_response(
            StatusCode::BAD_REQUEST,
            &h,
            br#"{"status":"ALREADY_COMPLETED"}"#,
        );
        assert!(matches!(e, FalError::AlreadyCompleted));
        let mut h429 = HeaderMap::new();
        h429.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        let e = FalError::from_response(StatusCode::TOO_MANY_REQUESTS, &h429, b"");
        assert!(
            matches!(e, FalError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(3))
        );
        let e = FalError::from_response(StatusCode::BAD_GATEWAY, &h, b"<html>oops</html>");
        assert!(matches!(e, FalError::Server { status: 502, .. }));
        assert!(e.is_transient());
        let e = FalError::from_response(StatusCode::UNAUTHORIZED, &h, b"{}");
        assert!(matches!(e, FalError::Unauthorized { status: 401 }));
        assert!(!e.is_transient());
    }

    #[test]
    fn error_types_come_from_the_body_the_header_or_a_model_error() {
        let mut typed = HeaderMap::new();
        typed.insert(
            HEADER_ERROR_TYPE,
            HeaderValue::from_static("request_timeout"),
        );
        let e = FalError::from_response(
            StatusCode::GATEWAY_TIMEOUT,
            &typed,
            br#"{"detail":"Request timed out"}"#,
        );
        assert_eq!(e.error_type(), Some("request_timeout"));
        assert_eq!(e.failure_kind(), FailureKind::Busy);
        assert!(
            e.to_string().contains("[fal error_type=request_timeout]"),
            "{e}"
        );

        // The body wins over the header, as in FAL's Python client.
        let e = FalError::from_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &typed,
            br#"{"detail":"Runner disconnected","error_type":"runner_disconnected"}"#,
        );
        assert!(
            matches!(&e, FalError::Server { status: 503, error_type: Some(t), .. } if t == "runner_disconnected")
        );

        // A model error the user can act on names its kind, whatever the header says.
        let mut validation = HeaderMap::new();
        validation.insert(
            HEADER_ERROR_TYPE,
            HeaderValue::from_static("validation_error"),
        );
        let e = FalError::from_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            &validation,
            br#"{"detail":[{"loc":["body","prompt"],"msg":"The content was flagged.","type":"content_policy_violation"}]}"#,
        );
        assert!(matches!(e, FalError::Validation { .. }));
        assert_eq!(e.failure_kind(), FailureKind::ContentPolicy);

        let status: QueueStatus = serde_json::from_value(serde_json::json!({
            "status": "COMPLETED", "error": "Runner disconnected", "error_type": "runner_disconnected"
        }))
        .unwrap();
        let e = FalError::from_status(&status).unwrap();
        assert!(
            matches!(&e, FalError::Job { error_type: Some(t), .. } if t == "runner_disconnected")
        );
        assert!(!e.is_transient());
    }

    #[test]
    fn only_public_addresses_are_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:db8::1",
            "::127.0.0.1",
        ] {
            assert!(!is_public_ip(ip.parse().unwrap()), "{ip} counted as public");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_public_ip(ip.parse().unwrap()), "{ip} counted as private");
        }
    }

    #[test]
    fn media_hosts_match_on_a_dot_boundary() {
        let live = MediaPolicy::default();
        for ok in [
            "https://v3.fal.media/files/a/b.png",
            "https://v3b.fal.media/files/b/x.png",
            "https://fal.media/files/x.jpg",
            "https://V3.FAL.MEDIA./files/x.jpg",
        ] {
            live.check(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "https://evilfal.media/x.png",
            "https://fal.media.evil.example/x.png",
            "http://v3.fal.media/x.png",
            "https://user:pw@v3.fal.media/x.png",
            "ftp://v3.fal.media/x.png",
            "https://127.0.0.1/x.png",
            "not a url",
        ] {
            assert!(
                matches!(live.check(bad), Err(FalError::UnexpectedMediaUrl { .. })),
                "{bad} passed"
            );
        }
        // Listed literal addresses are still refused in live mode, and admitted in simulated.
        let listed = ["10.0.0.7".to_owned(), "*.Example.org".to_owned()];
        assert!(MediaPolicy::live(&listed)
            .check("https://10.0.0.7/x")
            .is_err());
        MediaPolicy::live(&listed)
            .check("https://cdn.example.org/x")
            .unwrap();
        MediaPolicy::simulated(&listed)
            .check("http://10.0.0.7/x")
            .unwrap();
        // A configured API's exact origin is trusted; another port on that host is not.
        let trusted = MediaPolicy::default().trusting("http://127.0.0.1:8090/queue");
        trusted.check("http://127.0.0.1:8090/files/x.png").unwrap();
        assert!(trusted.check("http://127.0.0.1:8091/files/x.png").is_err());
    }

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

/// The FAL app a call went to, for metric labels: the model id of a submit, or the app path in
/// front of `/requests/` of a queue URL; other URLs (storage, files) are labelled by host only, so
/// request ids never become label values.
fn metric_endpoint(target: &str) -> String {
    if !target.contains("://") {
        return target.to_owned();
    }
    let Ok(url) = reqwest::Url::parse(target) else {
        return "unknown".to_owned();
    };
    match url.path().split_once("/requests/") {
        Some((app, _)) => app
            .trim_start_matches('/')
            .trim_start_matches("queue/")
            .to_owned(),
        None => url.host_str().unwrap_or("unknown").to_owned(),
    }
}

/// An attempt's outcome as a metric label: the HTTP status, or what went wrong on the wire.
fn metric_status(error: &FalError) -> String {
    match error.http_status() {
        Some(status) => status.to_string(),
        None => match error {
            FalError::Timeout => "timeout".to_owned(),
            FalError::Connect(_) | FalError::Connection(_) => "network".to_owned(),
            _ => "other".to_owned(),
        },
    }
}

#[cfg(test)]
mod metric_label_tests {
    use super::*;

    #[test]
    fn endpoint_labels_never_carry_request_ids() {
        assert_eq!(metric_endpoint("fal-ai/flux-lora"), "fal-ai/flux-lora");
        assert_eq!(
            metric_endpoint("https://queue.fal.run/fal-ai/flux-pro/requests/abc-123/status"),
            "fal-ai/flux-pro"
        );
        assert_eq!(
            metric_endpoint("http://127.0.0.1:9/queue/fal-ai/flux-lora/requests/r1"),
            "fal-ai/flux-lora"
        );
        assert_eq!(
            metric_endpoint("https://v3.fal.media/files/x.png"),
            "v3.fal.media"
        );
        assert_eq!(metric_status(&FalError::Timeout), "timeout");
        assert_eq!(
            metric_status(&FalError::RateLimited { retry_after: None }),
            "429"
        );
    }
}
