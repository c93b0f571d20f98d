//! [`FalClient`] and FAL's queue: submit, status, result, cancel, and the Platform API's
//! deletion of a request's payloads; every call goes through the retry policy here.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::types::{DeletePayloadsResponse, GeneratorOutput, QueueStatus, SubmitResponse};

use super::config::{FalClientConfig, RetryPolicy, Timeouts};
use super::error::FalError;
use super::media::{MediaPolicy, PublicOnlyResolver};
use super::wire::{
    json_answer, lifecycle_header, metric_endpoint, metric_status, parse_url, send, Repeat,
    HEADER_IDEMPOTENCY_KEY, HEADER_OBJECT_LIFECYCLE_PREFERENCE,
};

/// A client for FAL's queue and storage APIs.
#[derive(Clone)]
pub struct FalClient {
    pub(super) http: reqwest::Client,
    pub(super) queue_url: String,
    pub(super) rest_url: String,
    pub(super) platform_url: String,
    pub(super) auth: Option<HeaderValue>,
    pub(super) timeouts: Timeouts,
    pub(super) retry: RetryPolicy,
    pub(super) max_download_bytes: u64,
    pub(super) media: Arc<MediaPolicy>,
    /// Fetches result files: no redirects followed by itself, and in live mode a resolver that
    /// refuses private addresses (so a checked host cannot be re-resolved elsewhere).
    pub(super) media_http: reqwest::Client,
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
}

impl FalClient {
    pub(super) fn authorized(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.auth {
            Some(auth) => request.header(AUTHORIZATION, auth.clone()),
            None => request,
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the policy runs out. Every attempt
    /// is counted in `fal_calls_total` by operation, endpoint and status.
    pub(super) async fn with_retries<T, F, Fut>(
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
}
