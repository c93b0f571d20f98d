//! FAL's published keys: a JWKS document read leniently, since it has listed foreign key types
//! and both padded and unpadded base64url over time.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::error::WebhookError;

/// base64url that takes `x` with or without `=` padding: FAL's live document has carried both.
const BASE64URL_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

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
