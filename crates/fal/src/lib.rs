//! Everything between Aisha and FAL.ai: typed client, webhook verification, and a simulator.
//!
//! - [`types`] — FAL's JSON shapes (queue answers, outputs, webhooks, errors);
//! - [`client`] — [`FalClient`]: submit, status, result, cancel, upload, download, and deleting
//!   a request's payloads;
//! - [`webhook`] — [`WebhookVerifier`] (signatures against FAL's JWKS) and, with the `sim`
//!   feature, `WebhookSigner`;
//! - `sim` (feature `sim`) — `FalSimulator`: the same HTTP protocol served locally, for tests,
//!   the demo and `FAL_MODE=simulated`.

pub mod client;
pub mod progress;
#[cfg(feature = "sim")]
pub mod sim;
pub mod types;
pub mod webhook;

pub use client::{
    FalClient, FalClientConfig, FalError, MediaPolicy, RetryPolicy, Timeouts, UploadSource,
    DEFAULT_MEDIA_HOSTS,
};
#[cfg(feature = "sim")]
pub use sim::{FalSimulator, SimConfig};
pub use types::FailureKind;
#[cfg(feature = "sim")]
pub use webhook::WebhookSigner;
pub use webhook::{VerifierConfig, WebhookError, WebhookVerifier};
