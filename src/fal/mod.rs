//! Everything between Aisha and FAL.ai: typed client, webhook verification, and a simulator.
//!
//! - [`types`] — FAL's JSON shapes (queue answers, outputs, webhooks, errors);
//! - [`client`] — [`FalClient`]: submit, status, result, cancel, upload, download;
//! - [`webhook`] — [`WebhookVerifier`] (signatures against FAL's JWKS) and [`WebhookSigner`];
//! - [`sim`] — [`FalSimulator`]: the same HTTP protocol served locally, for tests and offline runs.

pub mod client;
pub mod progress;
pub mod sim;
pub mod types;
pub mod webhook;

pub use client::{
    FalClient, FalClientConfig, FalError, MediaPolicy, RetryPolicy, Timeouts, UploadSource,
    DEFAULT_MEDIA_HOSTS,
};
pub use sim::{FalSimulator, SimConfig};
pub use types::FailureKind;
pub use webhook::{VerifierConfig, WebhookError, WebhookSigner, WebhookVerifier};
