//! FAL webhook signatures: checking them against FAL's published keys (JWKS), and making them,
//! for the simulator and tests.
//!
//! The signed message is `request_id \n user_id \n timestamp \n hex(sha256(raw body))`, ED25519,
//! the signature sent hex-encoded; a webhook is genuine if any published key verifies it.

mod config;
mod error;
mod jwks;
#[cfg(any(test, feature = "sim"))]
mod signer;
mod signing;
mod verifier;

pub use config::{VerifierConfig, DEFAULT_MAX_KEY_WAIT, MAX_KEY_AGE};
pub use error::{WebhookError, MAX_CLOCK_SKEW_SECS};
pub use jwks::{parse_jwks, parse_jwks_counting, Jwk, Jwks};
#[cfg(any(test, feature = "sim"))]
pub use signer::WebhookSigner;
pub use signing::{
    check_timestamp, parse_payload, signed_message, verify_signature, WebhookHeaders,
    HEADER_REQUEST_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_USER_ID,
};
pub use verifier::WebhookVerifier;

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000;

    fn body(request_id: &str) -> Vec<u8> {
        format!(
            r#"{{"request_id":"{request_id}","gateway_request_id":"{request_id}","status":"OK","payload":{{"finetune_id":"f"}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_signed_webhook_verifies_with_its_key_among_others() {
        let signer = WebhookSigner::from_seed([7; 32], "user");
        let other = WebhookSigner::from_seed([8; 32], "user");
        let body = body("r1");
        let headers = signer.sign("r1", NOW, &body);
        let keys = [other.verifying_key(), signer.verifying_key()];
        verify_signature(&keys, &headers, &body, NOW + 10).unwrap();
        let payload = parse_payload(&headers, &body).unwrap();
        assert_eq!(payload.request_id, "r1");
    }

    #[test]
    fn forged_tampered_stale_and_garbled_webhooks_are_refused() {
        let signer = WebhookSigner::from_seed([7; 32], "user");
        let forger = WebhookSigner::from_seed([9; 32], "user");
        let keys = [signer.verifying_key()];
        let body = body("r1");

        let forged = forger.sign("r1", NOW, &body);
        assert!(matches!(
            verify_signature(&keys, &forged, &body, NOW),
            Err(WebhookError::InvalidSignature)
        ));

        let headers = signer.sign("r1", NOW, &body);
        let mut tampered = body.clone();
        tampered[5] ^= 1;
        assert!(matches!(
            verify_signature(&keys, &headers, &tampered, NOW),
            Err(WebhookError::InvalidSignature)
        ));

        assert!(matches!(
            verify_signature(&keys, &headers, &body, NOW + 301),
            Err(WebhookError::StaleTimestamp)
        ));
        assert!(matches!(
            verify_signature(&keys, &headers, &body, NOW - 301),
            Err(WebhookError::StaleTimestamp)
        ));
        verify_signature(&keys, &headers, &body, NOW + 300).unwrap();

        let mut garbled = headers.clone();
        garbled.signature = "zz".repeat(64);
        assert!(matches!(
            verify_signature(&keys, &garbled, &body, NOW),
            Err(WebhookError::BadSignatureEncoding)
        ));
        garbled.signature = headers.signature[..100].to_owned();
        assert!(matches!(
            verify_signature(&keys, &garbled, &body, NOW),
            Err(WebhookError::BadSignatureEncoding)
        ));

        // Another request's headers must not vouch for this body.
        let other = signer.sign("r2", NOW, &body);
        verify_signature(&keys, &other, &body, NOW).unwrap();
        assert!(matches!(
            parse_payload(&other, &body),
            Err(WebhookError::RequestIdMismatch)
        ));
    }

    #[test]
    fn missing_headers_are_named() {
        let signer = WebhookSigner::from_seed([7; 32], "user");
        let mut map = signer.sign("r1", NOW, b"{}").to_header_map();
        map.remove(HEADER_TIMESTAMP);
        assert!(matches!(
            WebhookHeaders::from_headers(&map),
            Err(WebhookError::MissingHeader(HEADER_TIMESTAMP))
        ));
    }

    #[test]
    fn jwks_keys_decode_with_or_without_padding() {
        let signer = WebhookSigner::from_seed([7; 32], "user");
        for padded in [true, false] {
            let jwk = signer.jwk(padded);
            assert_eq!(jwk.x.ends_with('='), padded);
            let doc = serde_json::to_vec(&Jwks { keys: vec![jwk] }).unwrap();
            assert_eq!(parse_jwks(&doc).unwrap(), vec![signer.verifying_key()]);
        }
        let doc = br#"{"keys":[{"kty":"RSA","crv":"","x":"AQAB"}]}"#;
        assert!(matches!(
            parse_jwks(doc),
            Err(WebhookError::KeysUnavailable(_))
        ));
        assert!(matches!(
            parse_jwks(b"not json"),
            Err(WebhookError::KeysUnavailable(_))
        ));
    }

    #[test]
    fn keys_of_other_types_are_skipped_not_fatal() {
        let signer = WebhookSigner::from_seed([7; 32], "user");
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256", "n": "sXch", "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "x": "f83O", "y": "x_FE"},
            {"kty": "OKP", "crv": "X25519", "x": signer.jwk(false).x},
            {"kty": "OKP", "crv": "Ed25519", "x": "not base64!"},
            serde_json::to_value(signer.jwk(true)).unwrap(),
        ]});
        let (keys, skipped) = parse_jwks_counting(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys, vec![signer.verifying_key()]);
        assert_eq!(skipped, 4);
    }

    #[test]
    fn the_signer_debug_output_has_no_private_key() {
        let signer = WebhookSigner::from_seed([7; 32], "user");
        assert!(!format!("{signer:?}").contains(&hex::encode([7u8; 32])));
    }
}
