//! The files a simulated job reads from elsewhere, downloaded as FAL's runner downloads them.
//! Before a job's input is checked, every input URL that is not FAL's own storage (a file of
//! this simulator or of FAL's media hosts) nor a `data:` URI is fetched over HTTP — the signed
//! URLs Aisha serves its own copies under among them — so a file its owner has deleted fails
//! the job here just as it would fail FAL's.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::files;
use super::state::SimState;
use super::validate::Endpoint;

/// How long one download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What was downloaded for one job, by URL: the bytes, or why there are none.
#[derive(Debug, Default)]
pub(super) struct Fetched(HashMap<String, Result<Bytes, String>>);

impl Fetched {
    /// The download of `url`, if it was one to download.
    pub(super) fn get(&self, url: &str) -> Option<&Result<Bytes, String>> {
        self.0.get(url)
    }
}

/// Downloads the files `input` names from elsewhere: the training archive, LoRA weights and
/// the image to upscale.
pub(super) async fn fetch(state: &SimState, endpoint: Endpoint, input: &Value) -> Fetched {
    let mut fetched = Fetched::default();
    for url in input_urls(endpoint, input) {
        if !downloaded(&url) || fetched.0.contains_key(&url) {
            continue;
        }
        let result = download(state, &url).await;
        if let Err(why) = &result {
            tracing::debug!(url = %url, why, "FAL simulator could not download an input");
        }
        fetched.0.insert(url, result);
    }
    fetched
}

/// The input URLs the runner of `endpoint` reads.
fn input_urls(endpoint: Endpoint, input: &Value) -> Vec<String> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let mut urls = Vec::new();
    if let Some(field) = endpoint.archive_field() {
        urls.extend(text(input.get(field)));
    }
    if endpoint == Endpoint::PortraitGenerator {
        let loras = input.get("loras").and_then(Value::as_array);
        urls.extend(
            loras
                .into_iter()
                .flatten()
                .filter_map(|l| text(l.get("path"))),
        );
    }
    if endpoint == Endpoint::Upscaler {
        urls.extend(text(input.get("image_url")));
    }
    urls
}

/// Whether the runner downloads `url` over HTTP rather than reading FAL's own storage.
fn downloaded(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && files::file_id_from_url(url).is_none()
}

async fn download(state: &SimState, url: &str) -> Result<Bytes, String> {
    let limit = state.config.max_body_bytes;
    let mut response = state
        .http
        .get(url)
        .timeout(DOWNLOAD_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("could not reach {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let mut data = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if data.len() + chunk.len() > limit {
            return Err(format!("larger than {limit} bytes"));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(data))
}

/// Whether `bytes` are a safetensors file: an 8-byte little-endian header length, then a JSON
/// object of that length (what loading LoRA weights reads first).
pub(super) fn is_safetensors(bytes: &[u8]) -> bool {
    let Some(head) = bytes.get(..8) else {
        return false;
    };
    let len = u64::from_le_bytes(head.try_into().unwrap_or_default());
    let Some(header) = usize::try_from(len)
        .ok()
        .and_then(|len| bytes.get(8..8usize.checked_add(len)?))
    else {
        return false;
    };
    serde_json::from_slice::<Value>(header).is_ok_and(|h| h.is_object())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_urls_off_fals_storage_are_downloaded() {
        assert!(downloaded(
            "http://127.0.0.1:8080/fal-inputs/avatars/x/lora.safetensors?s=1"
        ));
        assert!(!downloaded("http://127.0.0.1:9/files/abc/lora.safetensors"));
        assert!(!downloaded("https://v3.fal.media/files/a/in.png"));
        assert!(!downloaded("data:image/png;base64,AAAA"));
        assert!(!downloaded(""));
        let input = json!({"loras": [{"path": "http://a/x"}, {"path": "http://b/y"}]});
        assert_eq!(
            input_urls(Endpoint::PortraitGenerator, &input),
            ["http://a/x", "http://b/y"]
        );
        assert_eq!(
            input_urls(
                Endpoint::PortraitTrainer,
                &json!({"images_data_url": "http://z"})
            ),
            ["http://z"]
        );
    }

    #[test]
    fn safetensors_are_recognised_by_their_header() {
        let mut file = 2u64.to_le_bytes().to_vec();
        file.extend_from_slice(b"{}");
        assert!(is_safetensors(&file));
        assert!(!is_safetensors(b"{}"));
        assert!(!is_safetensors(&u64::MAX.to_le_bytes()));
        let mut not_json = 2u64.to_le_bytes().to_vec();
        not_json.extend_from_slice(b"no");
        assert!(!is_safetensors(&not_json));
    }
}
