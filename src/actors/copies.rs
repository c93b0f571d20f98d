//! What must last is our copy. The files FAL made for an avatar that are still needed — its
//! model's LoRA weights and config, the images the bot shows — are copied into the photo store
//! under the avatar's prefix before FAL is asked to delete them (see `forget`). Whenever FAL needs
//! one again (the LoRA for every generation, an image to upscale), it is handed our copy: by a
//! signed URL of ours that expires with the job's deadline when FAL can reach us
//! (`FAL_WEBHOOK_BASE_URL` / `PUBLIC_BASE_URL`), else as an upload to FAL's storage that FAL
//! deletes at that deadline.

use std::collections::HashSet;
use std::time::Duration;

use aggregates::{Avatar, TrainedModel};
use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use super::Services;
use crate::fal::FalError;
use crate::photos::store::copy_key;
use crate::photos::StorageError;

/// How much longer than its deadline FAL is asked to keep what a job produces: room for our
/// copy to be made even when our store is down for a while. It is a backstop only: once we hold
/// our copy, the request's payloads and files are deleted at FAL (`forget`).
pub const RESULTS_MARGIN: Duration = Duration::from_secs(24 * 3600);

/// The lifetime asked for the files of a job whose result is no use after `deadline`.
pub fn results_lifetime(deadline: Duration) -> Duration {
    deadline + RESULTS_MARGIN
}

/// Why a copy could not be made or handed to FAL.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("FAL: {0}")]
    Fal(#[from] FalError),
    #[error("photo store: {0}")]
    Storage(#[from] StorageError),
    /// FAL no longer has a file we hold no copy of: it cannot be copied, ever.
    #[error("FAL no longer serves {url}, and we hold no copy of it")]
    Gone { url: String },
}

impl CopyError {
    /// Whether trying again later may work.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Fal(e) => e.is_transient(),
            Self::Storage(StorageError::Io { .. } | StorageError::Remote { .. }) => true,
            Self::Storage(_) | Self::Gone { .. } => false,
        }
    }
}

/// The files of a model that must outlive FAL's copies: LoRA weights and config.
pub fn model_files(model: &TrainedModel) -> Vec<&str> {
    match model {
        TrainedModel::Portrait {
            lora_file_url,
            config_file_url,
            ..
        }
        | TrainedModel::StyleLora {
            lora_file_url,
            config_file_url,
            ..
        } => std::iter::once(lora_file_url.as_str())
            .chain(config_file_url.as_deref())
            .collect(),
        TrainedModel::ProFinetune { .. } => Vec::new(),
    }
}

/// Makes sure we hold a copy of the file FAL serves at `url` for `avatar_id`, fetching it from
/// FAL if we do not; returns its key. FAL's result files are fetched by the same rules as ever
/// (FAL's media hosts only, public addresses only in live mode).
pub async fn keep(s: &Services, avatar_id: Uuid, url: &str) -> Result<String, CopyError> {
    let key = copy_key(avatar_id, url);
    if s.photos.exists(&key).await? {
        return Ok(key);
    }
    let bytes = match s.fal.download(url).await {
        Ok(bytes) => bytes,
        Err(FalError::NotFound { .. }) => {
            return Err(CopyError::Gone {
                url: url.to_owned(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let size = bytes.len();
    s.photos.put(&key, bytes).await?;
    metrics::counter!("fal_files_copied_total").increment(1);
    tracing::info!(%avatar_id, key, bytes = size, "kept our copy of a file FAL made");
    Ok(key)
}

/// A URL FAL can read our stored file `key` at for `lifetime`: our signed URL when FAL can
/// reach us, else an upload to FAL's storage that FAL deletes after `lifetime`.
pub async fn fal_url(s: &Services, key: &str, lifetime: Duration) -> Result<String, CopyError> {
    let until = Utc::now() + chrono::Duration::from_std(lifetime).unwrap_or_default();
    if let Some(url) = s.webhooks.file_url(key, until) {
        return Ok(url);
    }
    let bytes = s.photos.get(key).await?;
    let name = key.rsplit('/').next().unwrap_or("file");
    Ok(s.fal
        .upload_expiring(bytes, content_type_of(name), name, lifetime)
        .await?)
}

fn content_type_of(name: &str) -> &'static str {
    match name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
    {
        Some(ext) if ext == "png" => "image/png",
        Some(ext) if ext == "jpg" || ext == "jpeg" => "image/jpeg",
        Some(ext) if ext == "webp" => "image/webp",
        Some(ext) if ext == "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// A generation's arguments as FAL gets them: every URL of a file FAL made for this avatar
/// (the model's LoRA weights, an image to upscale) replaced by a URL of our copy that works
/// for `lifetime`. FAL's own copies may be gone by now (we asked FAL to delete them), and are
/// not relied on while we can make one. The arguments recorded in the event keep FAL's URL,
/// which names the copy. A file we can never copy (FAL let it expire, or its URL is one we do
/// not fetch, as for a model imported from elsewhere) is left as recorded, for FAL to load or
/// to refuse in its own words; only a transient failure is an error.
pub async fn with_our_copies(
    s: &Services,
    avatar_id: Uuid,
    avatar: &Avatar,
    arguments: &Value,
    lifetime: Duration,
) -> Result<Value, CopyError> {
    let mut ours: HashSet<&str> = HashSet::new();
    if let Some(model) = &avatar.model {
        ours.extend(model_files(model));
    }
    for record in avatar.generations.values() {
        ours.extend(record.images.iter().map(|image| image.url.as_str()));
    }
    let mut rewritten = arguments.clone();
    let mut pending = vec![&mut rewritten];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) if ours.contains(text.as_str()) => {
                let key = match keep(s, avatar_id, text).await {
                    Ok(key) => key,
                    Err(e) if e.is_transient() => return Err(e),
                    Err(e) => {
                        tracing::warn!(%avatar_id, error = %crate::telemetry::chain(&e),
                            "no copy of a file FAL made; FAL gets the URL it was made at");
                        continue;
                    }
                };
                *text = fal_url(s, &key, lifetime).await?;
            }
            Value::Array(items) => pending.extend(items.iter_mut()),
            Value::Object(fields) => pending.extend(fields.values_mut()),
            _ => {}
        }
    }
    Ok(rewritten)
}

/// The bytes of an image FAL generated for `avatar_id`, served at `url`: our copy when we hold
/// one, else FAL's — and our copy once more if FAL's is gone meanwhile (FAL is asked to delete
/// its copy only after ours is made). For the bot, which shows and sends our copy.
pub async fn image_bytes(
    photos: &crate::photos::PhotoStore,
    fal: &crate::fal::FalClient,
    avatar_id: Uuid,
    url: &str,
) -> Result<bytes::Bytes, FalError> {
    let key = copy_key(avatar_id, url);
    if let Ok(bytes) = photos.get(&key).await {
        return Ok(bytes);
    }
    match fal.download(url).await {
        Err(gone @ FalError::NotFound { .. }) => photos.get(&key).await.map_err(|_| gone),
        fetched => fetched,
    }
}

/// The key of a file of ours that `url` (one of our signed URLs) serves, if it is one.
pub fn stored_key_of(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let key = parsed
        .path()
        .split_once(super::targets::FILE_ROUTE)?
        .1
        .strip_prefix('/')?;
    crate::photos::store::validate_key(key)
        .ok()
        .map(|()| key.to_owned())
}

/// How long FAL may keep files we upload to it, whatever we delete: `None` when FAL reads
/// our copies from us and nothing is uploaded; else the longest lifetime we ask for, the
/// training archive's (the training deadline). For the deletion warning.
pub fn uploads_kept_for(fal_reaches_us: bool, training_deadline: Duration) -> Option<Duration> {
    (!fal_reaches_us).then_some(training_deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_signed_urls_lead_back_to_their_keys() {
        let targets =
            super::super::WebhookTargets::with_key(Some("http://x:1/base".into()), [1; 32]);
        let url = targets
            .file_url("avatars/a/archives/training-5.zip", Utc::now())
            .unwrap();
        assert_eq!(
            stored_key_of(&url).as_deref(),
            Some("avatars/a/archives/training-5.zip")
        );
        assert_eq!(stored_key_of("http://fal/files/abc/photos.zip"), None);
        assert_eq!(stored_key_of("http://x/fal-inputs/../etc"), None);
    }

    #[test]
    fn a_portrait_keeps_its_weights_and_config_and_a_finetune_nothing() {
        let portrait = TrainedModel::Portrait {
            lora_file_url: "http://f/l.safetensors".into(),
            config_file_url: Some("http://f/c.json".into()),
            trigger_phrase: "P".into(),
        };
        assert_eq!(
            model_files(&portrait),
            ["http://f/l.safetensors", "http://f/c.json"]
        );
        let finetune = TrainedModel::ProFinetune {
            finetune_id: "ft".into(),
            trigger_word: "S".into(),
        };
        assert!(model_files(&finetune).is_empty());
        assert_eq!(
            uploads_kept_for(false, Duration::from_secs(10800)),
            Some(Duration::from_secs(10800))
        );
        assert_eq!(uploads_kept_for(true, Duration::from_secs(10800)), None);
    }
}
