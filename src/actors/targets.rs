//! The webhook URLs we hand to FAL. Each names its target (a training of an avatar, or one
//! generation) and carries a token — an HMAC of the target under this deployment's secret — so
//! a webhook can only ever finish a job we submitted, whoever signs it. Under the same base URL
//! and key, FAL fetches the files we keep for it (training archives, LoRA weights, images to
//! upscale) by signed URLs that expire.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;

use crate::store::{Database, StoreError};

const SECRET_NAME: &str = "webhook_token_key";
/// Where FAL fetches the files we serve it, under the webhook base URL.
pub const FILE_ROUTE: &str = "/fal-inputs";

/// Builds and checks the tokens of our webhook URLs.
#[derive(Clone)]
pub struct WebhookTargets {
    base: Option<String>,
    key: std::sync::Arc<[u8; 32]>,
}

impl std::fmt::Debug for WebhookTargets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTargets")
            .field("base", &self.base)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl WebhookTargets {
    /// Loads the deployment's key from the database, creating it on first use; every instance
    /// on the database shares it.
    pub async fn load(db: &Database, base: Option<String>) -> Result<Self, StoreError> {
        let mut fresh = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut fresh);
        let mut conn = db.acquire().await?;
        let mut tx = conn.tx();
        tx.execute(
            "INSERT INTO server_secrets (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING",
            vec![SECRET_NAME.into(), hex::encode(fresh).into()],
        )
        .await?;
        let stored: String = tx
            .fetch_optional(
                "SELECT value FROM server_secrets WHERE name = $1",
                vec![SECRET_NAME.into()],
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("the webhook key vanished".into()))?
            .get("value")?;
        let key: [u8; 32] = hex::decode(stored.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| StoreError::Corrupt("the stored webhook key is malformed".into()))?;
        Ok(Self::with_key(base, key))
    }

    /// Targets under a known key (tests, benchmarks).
    pub fn with_key(base: Option<String>, key: [u8; 32]) -> Self {
        Self {
            base: base.map(|b| b.trim_end_matches('/').to_owned()),
            key: std::sync::Arc::new(key),
        }
    }

    /// Whether webhooks can reach us at all (without a public URL, jobs are polled).
    pub fn enabled(&self) -> bool {
        self.base.is_some()
    }

    /// The webhook URL for the training of `avatar_id`.
    pub fn training(&self, avatar_id: Uuid) -> Option<String> {
        let base = self.base.as_ref()?;
        let token = self.token(&Target::Training { avatar_id });
        Some(format!(
            "{base}/webhooks/fal?avatar_id={avatar_id}&token={token}"
        ))
    }

    /// The webhook URL for one generation.
    pub fn generation(&self, avatar_id: Uuid, generation_id: Uuid) -> Option<String> {
        let base = self.base.as_ref()?;
        let token = self.token(&Target::Generation {
            avatar_id,
            generation_id,
        });
        Some(format!(
            "{base}/webhooks/fal?avatar_id={avatar_id}&generation_id={generation_id}&token={token}"
        ))
    }

    /// The URL FAL fetches our stored file `key` at until `expires`:
    /// `{base}/fal-inputs/<key>?expires=<unix seconds>&token=<HMAC of key and expiry>`;
    /// `None` without a base URL (FAL cannot reach us).
    pub fn file_url(&self, key: &str, expires: chrono::DateTime<chrono::Utc>) -> Option<String> {
        let base = self.base.as_ref()?;
        let expires = expires.timestamp();
        let token = hex::encode(self.file_mac(key, expires).finalize().into_bytes());
        Some(format!(
            "{base}{FILE_ROUTE}/{key}?expires={expires}&token={token}"
        ))
    }

    /// Whether `token` signs `key` until `expires` (checked in constant time; the expiry is the
    /// caller's to check).
    pub fn verify_file(&self, key: &str, expires: i64, token: &str) -> bool {
        match hex::decode(token) {
            Ok(bytes) => self.file_mac(key, expires).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    fn file_mac(&self, key: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key[..]).expect("HMAC takes any key length");
        mac.update(format!("file:{key}:{expires}").as_bytes());
        mac
    }

    /// The token for a target, as it appears in the URL.
    pub fn token(&self, target: &Target) -> String {
        hex::encode(self.mac(target).finalize().into_bytes())
    }

    /// Checks a token from a URL in constant time.
    pub fn verify(&self, target: &Target, token: &str) -> bool {
        match hex::decode(token) {
            Ok(bytes) => self.mac(target).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    fn mac(&self, target: &Target) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key[..]).expect("HMAC takes any key length");
        mac.update(target.to_string().as_bytes());
        mac
    }
}

/// What a webhook URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Training {
        avatar_id: Uuid,
    },
    Generation {
        avatar_id: Uuid,
        generation_id: Uuid,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Training { avatar_id } => write!(f, "training:{avatar_id}"),
            Self::Generation {
                avatar_id,
                generation_id,
            } => write!(f, "generation:{avatar_id}:{generation_id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_fits_only_its_own_target_and_key() {
        let targets = WebhookTargets::with_key(Some("http://x".into()), [7; 32]);
        let other_key = WebhookTargets::with_key(Some("http://x".into()), [8; 32]);
        let a = Target::Training {
            avatar_id: Uuid::new_v4(),
        };
        let b = Target::Training {
            avatar_id: Uuid::new_v4(),
        };
        let token = targets.token(&a);
        assert!(targets.verify(&a, &token));
        assert!(!targets.verify(&b, &token));
        assert!(!other_key.verify(&a, &token));
        assert!(!targets.verify(&a, "not hex"));
        assert!(!targets.verify(&a, ""));
    }

    #[test]
    fn a_file_url_is_signed_for_its_key_and_expiry_only() {
        let targets = WebhookTargets::with_key(Some("http://x/".into()), [7; 32]);
        let until = chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let url = targets.file_url("avatars/a/archives/t.zip", until).unwrap();
        let token = url.rsplit_once("token=").unwrap().1;
        assert!(url.starts_with("http://x/fal-inputs/avatars/a/archives/t.zip?expires=1900000000&"));
        assert!(targets.verify_file("avatars/a/archives/t.zip", 1_900_000_000, token));
        assert!(!targets.verify_file("avatars/a/archives/u.zip", 1_900_000_000, token));
        assert!(!targets.verify_file("avatars/a/archives/t.zip", 1_900_000_001, token));
        assert!(
            !WebhookTargets::with_key(Some("http://x".into()), [8; 32]).verify_file(
                "avatars/a/archives/t.zip",
                1_900_000_000,
                token
            )
        );
        assert!(WebhookTargets::with_key(None, [7; 32])
            .file_url("k", until)
            .is_none());
    }
}
