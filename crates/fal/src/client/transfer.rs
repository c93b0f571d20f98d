//! Files to and from FAL: uploads to its storage with a lifetime, and result downloads that
//! follow only checked redirects.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;

use crate::types::{InitiateUploadRequest, InitiateUploadResponse};

use super::config::UploadSource;
use super::error::FalError;
use super::media::redirect_target;
use super::queue::FalClient;
use super::wire::{
    json_answer, lifecycle_header, parse_url, send, Repeat, HEADER_OBJECT_LIFECYCLE,
    HEADER_OBJECT_LIFECYCLE_PREFERENCE,
};

/// Storage backend asked for when initiating uploads.
pub const STORAGE_TYPE: &str = "fal-cdn-v3";
/// How long FAL keeps a training archive (users' photos) we upload. The trainer reads it when
/// the job starts — after an unknown queue wait — and, we must assume, again on each of FAL's
/// automatic retries (up to 10), so it has to outlive queue and training (up to about 30
/// minutes); but nothing needs it once we give up on the job, and at the training deadline
/// (`TRAINING_DEADLINE_SECS`, 3 hours by default) we cancel it. So: 3 hours.
pub const TRAINING_ARCHIVE_LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// Redirects followed when fetching a result file, each checked like the first URL.
pub const MAX_MEDIA_REDIRECTS: usize = 3;

impl FalClient {
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
}
