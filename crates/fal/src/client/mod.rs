//! The FAL HTTP client: queue submit/status/result/cancel, storage uploads, result downloads and
//! the Platform API's deletion of a request's payloads, with timeouts, typed errors, and retries
//! only where a repeat cannot start a second paid job.

mod config;
mod error;
mod media;
mod queue;
mod transfer;
mod wire;

pub use config::{
    FalClientConfig, RetryPolicy, Timeouts, UploadSource, DEFAULT_JWKS_URL, DEFAULT_PLATFORM_URL,
    DEFAULT_QUEUE_URL, DEFAULT_REST_URL,
};
pub use error::{FalError, HEADER_ERROR_TYPE};
pub use media::{is_public_ip, MediaPolicy, DEFAULT_MEDIA_HOSTS};
pub use queue::{FalClient, RequestUrls};
pub use transfer::{MAX_MEDIA_REDIRECTS, STORAGE_TYPE, TRAINING_ARCHIVE_LIFETIME};
pub use wire::{
    lifecycle_header, HEADER_IDEMPOTENCY_KEY, HEADER_OBJECT_LIFECYCLE,
    HEADER_OBJECT_LIFECYCLE_PREFERENCE,
};
