//! Data keys for crypto-shredding: one key per user and one per avatar, each stored wrapped (an
//! avatar's by its owner's key, a user's by the master key `DATA_KEY`). Deleting a key's row
//! makes everything sealed with it unreadable for good, whatever copies of the events exist.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use db::Tx;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

mod secret;

pub use secret::{install_master_keys, master_keys, MasterKey, MasterKeys, SecretKey};

use super::{Database, StoreError};

/// Why `DATA_KEY` (or a stored key) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("DATA_KEY must be 32 bytes, written as 64 hex digits or in base64 (generate one with `aisha keys generate`)")]
    BadMasterKey,
    #[error("data key `{key_id}` is wrapped by a master key this process does not have (master {master_id}); set DATA_KEY, or DATA_KEY_PREVIOUS during a rotation")]
    UnknownMaster { key_id: String, master_id: String },
    #[error("data key `{key_id}` does not open with its wrapping key: the key table or DATA_KEY is wrong")]
    Unwrap { key_id: String },
}

impl From<KeyError> for StoreError {
    fn from(e: KeyError) -> Self {
        StoreError::Keys(e)
    }
}

/// Where a key sits in the hierarchy.
const USER_PREFIX: &str = "user:";
const AVATAR_PREFIX: &str = "avatar:";
/// The HMAC secret behind pseudonyms: a root key of its own, so rotating `DATA_KEY` rewraps it
/// and pseudonyms stay the same.
const PSEUDONYM_KEY_ID: &str = "pseudonyms";

/// How long a key read from the table is trusted without reading it again: bounds how long
/// another instance may still open data after a key was destroyed here.
const CACHE_FOR: Duration = Duration::from_secs(30);
/// Keys held in memory at most; past it the cache starts afresh.
const CACHE_CAPACITY: usize = 20_000;

/// The data keys of one database: creates, opens (with a short-lived cache) and destroys them.
#[derive(Clone)]
pub struct DataKeys {
    db: Database,
    cache: Arc<Mutex<HashMap<String, (Option<Arc<SecretKey>>, Instant)>>>,
    pseudonyms: Arc<OnceLock<SecretKey>>,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKeys(..)")
    }
}

/// A stored key row.
struct KeyRow {
    parent_id: Option<String>,
    master_id: Option<String>,
    wrapped: String,
}

pub fn avatar_key_id(avatar_id: &str) -> String {
    format!("{AVATAR_PREFIX}{avatar_id}")
}

impl DataKeys {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            cache: Arc::default(),
            pseudonyms: Arc::default(),
        }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The keyed pseudonym of a Telegram user: stable, and useless without the key table.
    pub async fn pseudonym(&self, telegram_id: i64) -> Result<String, StoreError> {
        let key = self.pseudonym_key().await?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("any key length");
        mac.update(format!("telegram:{telegram_id}").as_bytes());
        Ok(hex::encode(&mac.finalize().into_bytes()[..16]))
    }

    pub async fn user_key_id(&self, telegram_id: i64) -> Result<String, StoreError> {
        Ok(format!(
            "{USER_PREFIX}{}",
            self.pseudonym(telegram_id).await?
        ))
    }

    async fn pseudonym_key(&self) -> Result<&SecretKey, StoreError> {
        if let Some(key) = self.pseudonyms.get() {
            return Ok(key);
        }
        let key = self
            .root_or_create(PSEUDONYM_KEY_ID)
            .await?
            .expect("a root key is created when missing");
        let _ = self.pseudonyms.set(SecretKey(key.0));
        Ok(self.pseudonyms.get().expect("just set"))
    }

    /// The key a new avatar's events are sealed with, created with (and under) its owner's key.
    pub async fn create_avatar_key(
        &self,
        avatar_id: &str,
        owner: i64,
    ) -> Result<Arc<SecretKey>, StoreError> {
        let user_id = self.user_key_id(owner).await?;
        let user = self
            .root_or_create(&user_id)
            .await?
            .expect("a root key is created when missing");
        let key_id = avatar_key_id(avatar_id);
        let fresh = SecretKey::random();
        let wrapped = B64.encode(user.seal(&fresh.0, key_id.as_bytes()));
        self.insert(&key_id, Some(&user_id), None, &wrapped).await?;
        // Another writer may have created it first: the stored one is the key.
        self.forget(&key_id);
        Ok(self
            .open_one(&key_id)
            .await?
            .expect("the avatar key was just stored"))
    }

    /// The key of `key_id`, or `None` if it never existed or was destroyed.
    pub async fn open_one(&self, key_id: &str) -> Result<Option<Arc<SecretKey>>, StoreError> {
        Ok(self
            .open(&[key_id.to_owned()])
            .await?
            .remove(key_id)
            .flatten())
    }

    /// Opens many keys at once (one query for those not cached): what a batch of events needs.
    pub async fn open(
        &self,
        key_ids: &[String],
    ) -> Result<HashMap<String, Option<Arc<SecretKey>>>, StoreError> {
        let mut found = HashMap::with_capacity(key_ids.len());
        let mut missing = Vec::new();
        {
            let cache = self.cache.lock().expect("key cache poisoned");
            for id in key_ids {
                match cache.get(id) {
                    Some((key, at)) if at.elapsed() < CACHE_FOR => {
                        found.insert(id.clone(), key.clone());
                    }
                    _ => {
                        if !missing.contains(id) {
                            missing.push(id.clone());
                        }
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let opened = {
            let mut conn = self.db.acquire().await?;
            open_on(&mut conn.tx(), &missing).await?
        };
        let mut cache = self.cache.lock().expect("key cache poisoned");
        if cache.len() + opened.len() > CACHE_CAPACITY {
            cache.clear();
        }
        let now = Instant::now();
        for (id, key) in opened {
            cache.insert(id.clone(), (key.clone(), now));
            found.insert(id, key);
        }
        Ok(found)
    }

    /// A root key (user or pseudonym secret), created under the current master if missing.
    async fn root_or_create(&self, key_id: &str) -> Result<Option<Arc<SecretKey>>, StoreError> {
        if let Some(key) = self.open_one(key_id).await? {
            return Ok(Some(key));
        }
        let master = &master_keys().current;
        let fresh = SecretKey::random();
        let wrapped = B64.encode(master.key.seal(&fresh.0, key_id.as_bytes()));
        self.insert(key_id, None, Some(master.id()), &wrapped)
            .await?;
        self.forget(key_id);
        self.open_one(key_id).await
    }

    async fn insert(
        &self,
        key_id: &str,
        parent_id: Option<&str>,
        master_id: Option<&str>,
        wrapped: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.db.acquire().await?;
        conn.tx()
            .execute(
                "INSERT INTO data_keys (key_id, parent_id, master_id, wrapped, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_id) DO NOTHING",
                vec![
                    key_id.into(),
                    parent_id.map(str::to_owned).into(),
                    master_id.map(str::to_owned).into(),
                    wrapped.into(),
                    chrono::Utc::now().into(),
                ],
            )
            .await?;
        Ok(())
    }

    fn forget(&self, key_id: &str) {
        self.cache
            .lock()
            .expect("key cache poisoned")
            .remove(key_id);
    }

    /// Destroys an avatar's key: its sealed data can never be read again. Idempotent.
    pub async fn destroy_avatar_key(&self, avatar_id: Uuid) -> Result<bool, StoreError> {
        let key_id = avatar_key_id(&avatar_id.to_string());
        let mut conn = self.db.acquire().await?;
        // Its snapshot goes first: sealed with the key, it could never be opened again, and
        // leaving it would stop the next snapshot from being written.
        conn.tx()
            .execute(
                "DELETE FROM snapshots WHERE aggregate_type = 'Avatar' AND aggregate_id = $1",
                vec![avatar_id.to_string().into()],
            )
            .await?;
        let gone = conn
            .tx()
            .execute(
                "DELETE FROM data_keys WHERE key_id = $1",
                vec![key_id.as_str().into()],
            )
            .await?;
        self.forget(&key_id);
        tracing::info!(%avatar_id, destroyed = gone > 0, "avatar data key destroyed");
        Ok(gone > 0)
    }

    /// Destroys a user's key and every avatar key under it. Returns how many keys went.
    pub async fn destroy_user_keys(&self, telegram_id: i64) -> Result<u64, StoreError> {
        let key_id = self.user_key_id(telegram_id).await?;
        let mut conn = self.db.acquire().await?;
        conn.tx()
            .execute(
                "DELETE FROM snapshots WHERE aggregate_type = 'Avatar' AND aggregate_id IN
                   (SELECT substr(key_id, 8) FROM data_keys WHERE parent_id = $1)",
                vec![key_id.as_str().into()],
            )
            .await?;
        let gone = conn
            .tx()
            .execute(
                "DELETE FROM data_keys WHERE key_id = $1 OR parent_id = $1",
                vec![key_id.as_str().into()],
            )
            .await?;
        // Children may be cached under their own ids: start afresh.
        self.cache.lock().expect("key cache poisoned").clear();
        Ok(gone)
    }

    /// Rewraps every root key under the current master key (those wrapped by the previous one),
    /// so the previous `DATA_KEY` can be retired. Returns how many were rewrapped.
    pub async fn rotate(&self) -> Result<u64, StoreError> {
        let masters = master_keys();
        let current = &masters.current;
        let mut conn = self.db.acquire().await?;
        let stale = conn
            .tx()
            .fetch_all(
                "SELECT key_id, parent_id, master_id, wrapped FROM data_keys
                 WHERE parent_id IS NULL AND master_id <> $1",
                vec![current.id().into()],
            )
            .await?;
        let mut done = 0;
        for row in stale {
            let id: String = row.get("key_id")?;
            let key_row = KeyRow {
                parent_id: None,
                master_id: row.get("master_id")?,
                wrapped: row.get("wrapped")?,
            };
            let key = unwrap_root(&id, &key_row)?;
            let wrapped = B64.encode(current.key.seal(&key.0, id.as_bytes()));
            done += conn
                .tx()
                .execute(
                    "UPDATE data_keys SET wrapped = $1, master_id = $2
                     WHERE key_id = $3 AND master_id = $4",
                    vec![
                        wrapped.into(),
                        current.id().into(),
                        id.as_str().into(),
                        key_row.master_id.unwrap_or_default().into(),
                    ],
                )
                .await?;
        }
        self.cache.lock().expect("key cache poisoned").clear();
        Ok(done)
    }
}

/// Opens `key_ids` on an open connection or transaction, without any cache: what the feed uses,
/// so a key destroyed a moment ago is never used again by a reader. Absent or destroyed keys (or
/// keys whose parent was destroyed) are `None`.
pub async fn open_on(
    tx: &mut Tx<'_>,
    key_ids: &[String],
) -> Result<HashMap<String, Option<Arc<SecretKey>>>, StoreError> {
    let rows = fetch_rows(tx, key_ids).await?;
    let mut roots: HashMap<&str, Arc<SecretKey>> = HashMap::new();
    let mut opened = HashMap::with_capacity(key_ids.len());
    for id in key_ids {
        let key = match rows.get(id) {
            None => None,
            Some(row) => match &row.parent_id {
                None => Some(Arc::new(unwrap_root(id, row)?)),
                Some(parent) => match rows.get(parent) {
                    // The parent was destroyed: so is this key, in effect.
                    None => None,
                    Some(parent_row) => {
                        let wrapping = match roots.get(parent.as_str()) {
                            Some(k) => k.clone(),
                            None => {
                                let k = Arc::new(unwrap_root(parent, parent_row)?);
                                roots.insert(parent.as_str(), k.clone());
                                k
                            }
                        };
                        Some(Arc::new(unwrap_with(&wrapping, id, row)?))
                    }
                },
            },
        };
        opened.insert(id.clone(), key);
    }
    Ok(opened)
}

/// Destroys an avatar's key (and its snapshot, sealed with it) inside the caller's transaction:
/// the reactor does it when it takes in the avatar's deletion, after queueing what the deletion
/// still needs, so nothing that must read the avatar's data comes after it.
pub async fn shred_avatar_in(tx: &mut Tx<'_>, avatar_id: Uuid) -> Result<bool, sqlx::Error> {
    tx.execute(
        "DELETE FROM snapshots WHERE aggregate_type = 'Avatar' AND aggregate_id = $1",
        vec![avatar_id.to_string().into()],
    )
    .await?;
    let gone = tx
        .execute(
            "DELETE FROM data_keys WHERE key_id = $1",
            vec![avatar_key_id(&avatar_id.to_string()).into()],
        )
        .await?;
    Ok(gone > 0)
}

/// The rows of `key_ids` and of their parents, in one query per 500 ids.
async fn fetch_rows(
    tx: &mut Tx<'_>,
    key_ids: &[String],
) -> Result<HashMap<String, KeyRow>, StoreError> {
    let mut rows = HashMap::with_capacity(key_ids.len() + 1);
    for chunk in key_ids.chunks(500) {
        let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let list = list.join(", ");
        // The keys and their parents, each found through the primary key. (One `WHERE … OR
        // key_id IN (subquery)` read the whole table for every batch of the feed.)
        let sql = format!(
            "SELECT key_id, parent_id, master_id, wrapped FROM data_keys
              WHERE key_id IN ({list})
             UNION
             SELECT p.key_id, p.parent_id, p.master_id, p.wrapped
               FROM data_keys c JOIN data_keys p ON p.key_id = c.parent_id
              WHERE c.key_id IN ({list})"
        );
        let args = chunk.iter().map(|id| id.as_str().into()).collect();
        for row in tx.fetch_all(&sql, args).await? {
            let id: String = row.get("key_id")?;
            rows.insert(
                id,
                KeyRow {
                    parent_id: row.get("parent_id")?,
                    master_id: row.get("master_id")?,
                    wrapped: row.get("wrapped")?,
                },
            );
        }
    }
    Ok(rows)
}

fn unwrap_root(key_id: &str, row: &KeyRow) -> Result<SecretKey, StoreError> {
    let masters = master_keys();
    let master_id = row.master_id.clone().unwrap_or_default();
    let master = [Some(&masters.current), masters.previous.as_ref()]
        .into_iter()
        .flatten()
        .find(|m| m.id == master_id)
        .ok_or_else(|| KeyError::UnknownMaster {
            key_id: key_id.to_owned(),
            master_id: master_id.clone(),
        })?;
    unwrap_with(&master.key, key_id, row)
}

fn unwrap_with(wrapping: &SecretKey, key_id: &str, row: &KeyRow) -> Result<SecretKey, StoreError> {
    let bytes = B64
        .decode(&row.wrapped)
        .ok()
        .and_then(|sealed| wrapping.open(&sealed, key_id.as_bytes()))
        .ok_or_else(|| KeyError::Unwrap {
            key_id: key_id.to_owned(),
        })?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Unwrap {
        key_id: key_id.to_owned(),
    })?;
    Ok(SecretKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_context() {
        let key = SecretKey::random();
        let sealed = key.seal(b"Alice's prompt", b"avatar:1|3");
        assert_eq!(
            key.open(&sealed, b"avatar:1|3").as_deref(),
            Some(&b"Alice's prompt"[..])
        );
        assert_eq!(
            key.open(&sealed, b"avatar:1|4"),
            None,
            "moved to another event"
        );
        assert_eq!(SecretKey::random().open(&sealed, b"avatar:1|3"), None);
    }

    #[test]
    fn the_master_key_reads_hex_or_base64_and_nothing_else() {
        let hex_text = MasterKey::generate();
        let from_hex = MasterKey::parse(&hex_text).unwrap();
        let b64 = B64.encode(hex::decode(&hex_text).unwrap());
        assert_eq!(MasterKey::parse(&b64).unwrap().id(), from_hex.id());
        assert!(MasterKey::parse("too short").is_err());
        assert!(MasterKey::parse(&"ab".repeat(31)).is_err());
        assert!(!format!("{from_hex:?}").contains(&hex_text));
    }
}
