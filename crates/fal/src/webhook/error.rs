//! Why a webhook is refused: one error type for every check, so the HTTP layer answers by kind
//! (a forgery, a stale replay, or keys we could not get and FAL should retry for).

/// Webhooks stamped further than this from now (either way) are refused, against replays.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

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
    /// [`VerifierConfig::expected_user_id`](super::VerifierConfig::expected_user_id)).
    #[error("signed for FAL user {user_id:?}, not ours")]
    ForeignUser { user_id: String, request_id: String },
}
