//! The secrets themselves: data keys in memory (wiped when dropped) and the master keys
//! (`DATA_KEY`, and the previous one during a rotation) that wrap them.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::KeyError;

/// A 256-bit secret; its bytes never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub(super) [u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        // Best effort: a destroyed key should not linger in freed memory either.
        for b in self.0.iter_mut() {
            // SAFETY: a plain volatile write to memory we own.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl SecretKey {
    pub(crate) fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// `nonce ‖ ciphertext`, authenticated together with `context`.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(24 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext, or `None` if `sealed` was not sealed by this key for `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 24 {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(24);
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .ok()
    }
}

/// The master key that wraps every user key, with a short public id so a stored key says which
/// master wrapped it (needed while a rotation is under way).
#[derive(Clone)]
pub struct MasterKey {
    pub(super) key: SecretKey,
    pub(super) id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    /// Reads `DATA_KEY`: 64 hex digits or base64 of 32 bytes.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| B64.decode(text).ok())
            .ok_or(KeyError::BadMasterKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadMasterKey)?;
        Ok(Self::from_bytes(bytes))
    }

    fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"aisha master key id\0")
            .chain_update(bytes)
            .finalize();
        Self {
            key: SecretKey(bytes),
            id: hex::encode(&digest[..8]),
        }
    }

    /// The key used when no `DATA_KEY` is configured (tests, the demo, simulated runs). It is
    /// public, so it protects nothing: `serve` with live FAL refuses to start on it.
    pub fn development() -> Self {
        let digest = Sha256::digest(b"aisha development data key: not a secret");
        Self::from_bytes(digest.into())
    }

    /// A fresh random key, as `DATA_KEY` text.
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        hex::encode(bytes)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn is_development(&self) -> bool {
        self.id == Self::development().id
    }
}

/// The master keys this process holds: the current one, and during a rotation the previous.
#[derive(Debug, Clone)]
pub struct MasterKeys {
    pub current: MasterKey,
    pub previous: Option<MasterKey>,
}

static MASTER_KEYS: OnceLock<MasterKeys> = OnceLock::new();

/// Sets the process's master keys from configuration, once, before any store is opened.
/// Returns false if they were set already (to other keys).
pub fn install_master_keys(keys: MasterKeys) -> bool {
    let id = keys.current.id.clone();
    MASTER_KEYS.set(keys).is_ok() || master_keys().current.id == id
}

/// The installed master keys, or the development key if none were installed.
pub fn master_keys() -> &'static MasterKeys {
    MASTER_KEYS.get_or_init(|| MasterKeys {
        current: MasterKey::development(),
        previous: None,
    })
}
