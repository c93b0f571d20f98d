//! Signing webhooks the way FAL does, so the simulator and tests exercise the real check; it is
//! compiled only for tests and the `sim` feature, so a production build cannot mint webhooks.

use std::fmt;

use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use super::jwks::Jwk;
use super::signing::{signed_message, WebhookHeaders};

/// Signs webhooks the way FAL does; used by the simulator and by tests.
pub struct WebhookSigner {
    key: SigningKey,
    user_id: String,
}

// By hand: the private key stays out of debug output.
impl fmt::Debug for WebhookSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSigner")
            .field("user_id", &self.user_id)
            .field(
                "public_key",
                &hex::encode(self.key.verifying_key().as_bytes()),
            )
            .finish()
    }
}

impl WebhookSigner {
    /// A signer with a fresh random key.
    pub fn generate(user_id: impl Into<String>) -> Self {
        Self {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
            user_id: user_id.into(),
        }
    }

    /// A signer with a fixed key, for reproducible setups.
    pub fn from_seed(seed: [u8; 32], user_id: impl Into<String>) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
            user_id: user_id.into(),
        }
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as a JWKS entry; `padded` writes `x` with `=` padding.
    pub fn jwk(&self, padded: bool) -> Jwk {
        let bytes = self.key.verifying_key().to_bytes();
        let x = if padded {
            base64::engine::general_purpose::URL_SAFE.encode(bytes)
        } else {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        };
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x,
            kid: Some(hex::encode(&bytes[..8])),
        }
    }

    /// The headers for `body` about `request_id`, stamped with `timestamp` (Unix seconds).
    pub fn sign(&self, request_id: &str, timestamp: i64, body: &[u8]) -> WebhookHeaders {
        let timestamp = timestamp.to_string();
        let message = signed_message(request_id, &self.user_id, &timestamp, body);
        let signature = self.key.sign(&message);
        WebhookHeaders {
            request_id: request_id.to_owned(),
            user_id: self.user_id.clone(),
            timestamp,
            signature: hex::encode(signature.to_bytes()),
        }
    }
}
