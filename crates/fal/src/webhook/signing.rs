//! The pure signature check, free of key fetching, so it can be tested with fixed keys and
//! clocks; the message is `request_id \n user_id \n timestamp \n hex(sha256(raw body))`.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use super::error::{WebhookError, MAX_CLOCK_SKEW_SECS};
use crate::types::WebhookPayload;

pub const HEADER_REQUEST_ID: &str = "x-fal-webhook-request-id";
pub const HEADER_USER_ID: &str = "x-fal-webhook-user-id";
pub const HEADER_TIMESTAMP: &str = "x-fal-webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "x-fal-webhook-signature";

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

pub(super) fn decode_signature(signature_hex: &str) -> Result<Signature, WebhookError> {
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

pub(super) fn any_key_verifies(
    keys: &[VerifyingKey],
    message: &[u8],
    signature: &Signature,
) -> bool {
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
