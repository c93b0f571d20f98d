//! The FAL HTTP client: queue submit/status/result/cancel, storage uploads and result downloads,
//! with timeouts, typed errors, and retries only where a repeat cannot start a second paid job.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::types::{
    ErrorDetail, InitiateUploadRequest, InitiateUploadResponse, QueueStatus, SubmitResponse,
};

/// FAL's queue host.
pub const DEFAULT_QUEUE_URL: &str = "https://queue.fal.run";
/// FAL's REST host (storage, keys), as the current official clients use it.
pub const DEFAULT_REST_URL: &str = "https://rest.fal.ai";
/// Where FAL publishes the keys that sign its webhooks.
pub const DEFAULT_JWKS_URL: &str = "https://rest.fal.ai/.well-known/jwks.json";
/// Storage backend asked for when initiating uploads.
pub const STORAGE_TYPE: &str = "fal-cdn-v3";

/// Everything that can go wrong talking to FAL.
#[derive(Debug, thiserror::Error)]
pub enum FalError {
    #[error("FAL refused the API key (HTTP {status})")]
    Unauthorized { status: u16 },
    #[error("FAL rejected the input: {detail}")]
    Validation { detail: String },
    #[error("FAL's rate or concurrency limit was reached")]
    RateLimited { retry_after: Option<Duration> },
    #[error("FAL server error (HTTP {status}): {detail}")]
    Server { status: u16, detail: String },
    #[error("FAL found no such request or file: {detail}")]
    NotFound { detail: String },
    #[error("the request had already completed and cannot be cancelled")]
    AlreadyCompleted,
    #[error("FAL answered HTTP {status}: {detail}")]
    Http { status: u16, detail: String },
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
            },
            code => Self::Http {
                status: code,
                detail,
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
    /// The API key; without one, FAL answers 401.
    pub key: Option<String>,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    /// Largest file [`FalClient::download`] accepts.
    pub max_download_bytes: u64,
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
            key,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            max_download_bytes: 50 * 1024 * 1024,
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

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn with_max_download_bytes(mut self, limit: u64) -> Self {
        self.max_download_bytes = limit;
        self
    }
}

// By hand, so that the key can never reach a log line through `{:?}`.
impl fmt::Debug for FalClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FalClientConfig")
            .field("queue_url", &self.queue_url)
            .field("rest_url", &self.rest_url)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .field("max_download_bytes", &self.max_download_bytes)
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
    auth: Option<HeaderValue>,
    timeouts: Timeouts,
    retry: RetryPolicy,
    max_download_bytes: u64,
}

impl fmt::Debug for FalClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FalClient")
            .field("queue_url", &self.queue_url)
            .field("rest_url", &self.rest_url)
            .field("key", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
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
        Ok(Self {
            http,
            queue_url: config.queue_url.trim_end_matches('/').to_owned(),
            rest_url: config.rest_url.trim_end_matches('/').to_owned(),
            auth,
            timeouts: config.timeouts,
            retry: config.retry,
            max_download_bytes: config.max_download_bytes,
        })
    }

    /// Puts a job in the queue. Not idempotent: repeated only when the connection was never
    /// made. On a timeout the job may exist; the caller must not resubmit blindly.
    pub async fn submit(
        &self,
        endpoint: &str,
        input: &Value,
        webhook_url: Option<&str>,
    ) -> Result<SubmitResponse, FalError> {
        let endpoint = endpoint.trim_matches('/');
        let mut url = parse_url(&format!("{}/{}", self.queue_url, endpoint))?;
        if let Some(webhook) = webhook_url {
            url.query_pairs_mut().append_pair("fal_webhook", webhook);
        }
        let body =
            Bytes::from(serde_json::to_vec(input).map_err(|e| FalError::Decode(e.to_string()))?);
        let answer: SubmitResponse = self
            .with_retries("submit", endpoint, Repeat::OnlyIfNotSent, |_| {
                let request = self
                    .authorized(Method::POST, url.clone())
                    .timeout(self.timeouts.request)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
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

    /// Uploads a file to FAL's storage and returns the URL a model can read it from.
    pub async fn upload(
        &self,
        source: impl Into<UploadSource>,
        content_type: &str,
        file_name: &str,
    ) -> Result<String, FalError> {
        let source = source.into();
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
                let request = self
                    .authorized(Method::POST, initiate_url.clone())
                    .timeout(self.timeouts.request)
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

    /// Fetches a result file (an image, a LoRA) up to the configured size limit.
    pub async fn download(&self, url: &str) -> Result<Bytes, FalError> {
        let parsed = parse_url(url)?;
        let limit = self.max_download_bytes;
        self.with_retries("download", url, Repeat::Idempotent, |_| {
            // Result files live on a public CDN: no API key leaves for another host.
            let request = self
                .http
                .get(parsed.clone())
                .timeout(self.timeouts.transfer);
            async move {
                let mut response = request.send().await.map_err(FalError::from_reqwest)?;
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

fn parse_url(url: &str) -> Result<Url, FalError> {
    Url::parse(url).map_err(|_| FalError::InvalidUrl {
        url: url.to_owned(),
    })
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
            matches!(e, FalError::Validation { ref detail } if detail == "body.prompt: Field required")
        );
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
