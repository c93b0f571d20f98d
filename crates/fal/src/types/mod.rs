//! FAL's wire types: the JSON of queue answers, model outputs, webhooks and errors, with FAL's own
//! field names. Model *inputs* live in `aggregates::presets`, since events record them.

mod errors;
mod storage;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use errors::{
    error_type_of_reason, pick_error_type, with_error_type, ErrorBody, ErrorDetail, FailureKind,
    ValidationIssue, UNEXPECTED_MEDIA_ADDRESS,
};
pub use storage::{
    CdnDeleteResult, DeletePayloadsResponse, InitiateUploadRequest, InitiateUploadResponse,
};

/// Answer to a queue submission (`POST {queue}/{model_id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// The id the queue API knows the request by; the one to record.
    pub request_id: String,
    /// The last internal attempt's id; equal to `request_id` unless FAL retried the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_request_id: Option<String>,
    #[serde(default = "QueueState::in_queue")]
    pub status: QueueState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u64>,
    pub status_url: String,
    pub response_url: String,
    pub cancel_url: String,
}

/// Where a queued request stands. COMPLETED means finished, not succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueueState {
    InQueue,
    InProgress,
    Completed,
    /// A state this client does not know yet; treated as "not finished".
    #[serde(other)]
    Unknown,
}

impl QueueState {
    fn in_queue() -> Self {
        Self::InQueue
    }

    /// FAL's spelling of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InQueue => "IN_QUEUE",
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Unknown => "UNKNOWN",
        }
    }
}

/// Answer to `GET {status_url}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    pub status: QueueState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Present while IN_QUEUE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u64>,
    /// Present when asked for with `?logs=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Vec<LogEntry>>,
    /// Present when COMPLETED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_url: Option<String>,
    /// On a COMPLETED request that failed: a readable reason (FAL's official clients read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// On a COMPLETED request that failed: the machine-readable category (`request_timeout`,
    /// `runner_disconnected`, …; see [`FailureKind`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
}

impl QueueStatus {
    pub fn is_completed(&self) -> bool {
        self.status == QueueState::Completed
    }

    /// Whether FAL says the finished request failed (its `error` or `error_type` is set).
    pub fn is_failed(&self) -> bool {
        self.is_completed() && (self.error.is_some() || self.error_type.is_some())
    }
}

/// One line of a request's logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// Metrics of a completed request; FAL may add fields, which are kept in `other`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Metrics {
    /// Seconds the model ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_time: Option<f64>,
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// A file FAL stores and serves; real answers leave any of these null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FalFile {
    pub url: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub file_size: Option<u64>,
}

/// Output of `fal-ai/flux-lora-portrait-trainer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortraitTrainerOutput {
    #[serde(default)]
    pub diffusers_lora_file: Option<FalFile>,
    #[serde(default)]
    pub config_file: Option<FalFile>,
}

impl PortraitTrainerOutput {
    /// The LoRA URL, the one thing a portrait avatar must have.
    pub fn lora_url(&self) -> Option<&str> {
        self.diffusers_lora_file.as_ref()?.url.as_deref()
    }

    pub fn config_url(&self) -> Option<&str> {
        self.config_file.as_ref()?.url.as_deref()
    }
}

/// Output of `fal-ai/flux-pro-trainer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StyleTrainerOutput {
    pub finetune_id: String,
}

/// One generated image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputImage {
    pub url: String,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub content_type: Option<String>,
}

/// Output of the generators (`fal-ai/flux-lora`, `fal-ai/flux-pro/v1.1-ultra-finetuned`), which
/// answer an `images` list, and of the upscaler (`fal-ai/seedvr/upscale/image`), which answers
/// one `image`. Read the pictures through [`GeneratorOutput::output_images`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawGeneratorOutput")]
pub struct GeneratorOutput {
    pub images: Vec<OutputImage>,
    /// The upscaler's single result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<OutputImage>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// One flag per image; a flagged image may come back blacked out.
    #[serde(default)]
    pub has_nsfw_concepts: Vec<bool>,
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub timings: Option<Value>,
}

/// [`GeneratorOutput`] as it arrives, before it is known to name a picture at all.
#[derive(Deserialize)]
struct RawGeneratorOutput {
    #[serde(default)]
    images: Option<Vec<OutputImage>>,
    #[serde(default)]
    image: Option<OutputImage>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    has_nsfw_concepts: Vec<bool>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    timings: Option<Value>,
}

impl TryFrom<RawGeneratorOutput> for GeneratorOutput {
    type Error = String;

    // An answer with neither field is no output of ours: it stays a decoding error, as it was
    // when `images` was required, so the callers fail it where they always did.
    fn try_from(raw: RawGeneratorOutput) -> Result<Self, Self::Error> {
        if raw.images.is_none() && raw.image.is_none() {
            return Err("missing field `images` (or `image`)".to_owned());
        }
        Ok(Self {
            images: raw.images.unwrap_or_default(),
            image: raw.image,
            seed: raw.seed,
            has_nsfw_concepts: raw.has_nsfw_concepts,
            prompt: raw.prompt,
            timings: raw.timings,
        })
    }
}

impl GeneratorOutput {
    /// Every picture of the output: the generators' list, then the upscaler's one image; the
    /// position of each is its index for [`GeneratorOutput::is_nsfw`].
    pub fn output_images(&self) -> impl Iterator<Item = &OutputImage> {
        self.images.iter().chain(self.image.as_ref())
    }

    /// Whether image `index` was flagged as NSFW.
    pub fn is_nsfw(&self, index: usize) -> bool {
        self.has_nsfw_concepts.get(index).copied().unwrap_or(false)
    }
}

/// Outcome field of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WebhookStatus {
    Ok,
    Error,
}

/// The JSON FAL POSTs to a `fal_webhook` URL when a request finishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookPayload {
    pub request_id: String,
    #[serde(default)]
    pub gateway_request_id: Option<String>,
    pub status: WebhookStatus,
    /// The output on OK; `{"detail": …}` or null on ERROR.
    #[serde(default)]
    pub payload: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
    /// The machine-readable category of an ERROR, when FAL sends one (as on statuses and error
    /// answers; not confirmed for webhooks, so it is optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Why `payload` is null although the request produced an output.
    #[serde(default)]
    pub payload_error: Option<String>,
}

impl WebhookPayload {
    /// The output, typed, when the request succeeded and its payload was delivered.
    pub fn output<T: serde::de::DeserializeOwned>(&self) -> Option<Result<T, serde_json::Error>> {
        match (self.status, &self.payload) {
            (WebhookStatus::Ok, Some(payload)) => Some(T::deserialize(payload)),
            _ => None,
        }
    }

    /// A readable reason for an ERROR webhook (or an OK one whose payload was lost).
    pub fn error_message(&self) -> Option<String> {
        match self.status {
            WebhookStatus::Ok => self.payload_error.clone(),
            WebhookStatus::Error => {
                let detail = self
                    .payload
                    .as_ref()
                    .and_then(|p| p.get("detail"))
                    .map(|d| ErrorDetail::from_value(d.clone()).to_human());
                let parts: Vec<String> = [self.error.clone(), detail, self.payload_error.clone()]
                    .into_iter()
                    .flatten()
                    .collect();
                let message = if parts.is_empty() {
                    "FAL reported an error without details".to_owned()
                } else {
                    parts.join(": ")
                };
                Some(with_error_type(message, self.failure_type().as_deref()))
            }
        }
    }

    /// The failure's category: a model error's `type` that means something to the user
    /// (`content_policy_violation`, …), else `error_type` (of the webhook, or of the error body
    /// in its payload), else the first `type` in `detail`.
    pub fn failure_type(&self) -> Option<String> {
        if self.status == WebhookStatus::Ok {
            return None;
        }
        let payload = self.payload.as_ref();
        let explicit = self
            .error_type
            .clone()
            .or_else(|| payload?.get("error_type")?.as_str().map(str::to_owned));
        let detail = payload
            .and_then(|p| p.get("detail"))
            .map(|d| ErrorDetail::from_value(d.clone()));
        pick_error_type(
            explicit.as_deref(),
            detail.as_ref().and_then(ErrorDetail::error_type),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detail_is_read_as_a_sentence_or_a_list() {
        let text: ErrorBody = serde_json::from_value(json!({"detail": "Internal error"})).unwrap();
        assert_eq!(text.detail.to_human(), "Internal error");

        let list: ErrorBody = serde_json::from_value(json!({"detail": [
            {"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"},
            {"loc": ["body", "loras", 0, "path"], "msg": "Input should be a valid string", "type": "string_type"}
        ]}))
        .unwrap();
        assert_eq!(
            list.detail.to_human(),
            "body.prompt: Field required; body.loras.0.path: Input should be a valid string"
        );

        let odd = ErrorDetail::from_value(json!({"weird": true}));
        assert_eq!(odd.to_human(), r#"{"weird":true}"#);
    }

    #[test]
    fn portrait_output_accepts_null_file_fields() {
        // The shape of a real answer (seed 003): the LoRA file has only a URL.
        let out: PortraitTrainerOutput = serde_json::from_value(json!({
            "diffusers_lora_file": {"url": "https://x/a.safetensors", "content_type": null,
                                    "file_name": null, "file_size": null},
            "config_file": {"url": "https://x/config.json", "content_type": "application/octet-stream",
                            "file_name": "config.json", "file_size": 420}
        }))
        .unwrap();
        assert_eq!(out.lora_url(), Some("https://x/a.safetensors"));
        assert_eq!(out.config_file.unwrap().file_size, Some(420));
    }

    #[test]
    fn generator_output_reads_the_generators_list() {
        let out: GeneratorOutput = serde_json::from_value(json!({
            "images": [
                {"url": "https://v3.fal.media/files/a.jpg", "width": 1024, "height": 768,
                 "content_type": "image/jpeg"},
                {"url": "https://v3.fal.media/files/b.jpg", "width": 1024, "height": 768,
                 "content_type": "image/jpeg"}
            ],
            "seed": 42, "has_nsfw_concepts": [false, true], "prompt": "a cat",
            "timings": {"inference": 1.2}
        }))
        .unwrap();
        let urls: Vec<&str> = out.output_images().map(|i| i.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://v3.fal.media/files/a.jpg",
                "https://v3.fal.media/files/b.jpg"
            ]
        );
        assert!(out.image.is_none());
        assert!(out.is_nsfw(1) && !out.is_nsfw(0));
    }

    #[test]
    fn generator_output_reads_the_upscalers_single_image() {
        // The upscaler's documented shape: one `ImageFile` (any field but `url` may be null)
        // and the seed.
        let out: GeneratorOutput = serde_json::from_value(json!({
            "image": {
                "url": "https://v3.fal.media/files/penguin/out.png",
                "content_type": "image/png", "file_name": "out.png", "file_size": 2494064,
                "width": 2048, "height": 1536
            },
            "seed": 1234
        }))
        .unwrap();
        let images: Vec<&OutputImage> = out.output_images().collect();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].url, "https://v3.fal.media/files/penguin/out.png");
        assert_eq!(
            (images[0].width, images[0].height),
            (Some(2048), Some(1536))
        );
        assert_eq!(images[0].content_type.as_deref(), Some("image/png"));
        assert_eq!(out.seed, Some(1234));
        assert!(!out.is_nsfw(0));

        let bare: GeneratorOutput = serde_json::from_value(json!({
            "image": {"url": "https://v3.fal.media/files/x.jpg", "content_type": null,
                      "file_name": null, "file_size": null, "width": null, "height": null}
        }))
        .unwrap();
        assert_eq!(bare.output_images().count(), 1);

        // What it writes, it reads back.
        let again: GeneratorOutput =
            serde_json::from_value(serde_json::to_value(&out).unwrap()).unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn generator_output_without_any_image_is_not_an_output() {
        for body in [
            json!({}),
            json!({"seed": 1}),
            json!({"image": null}),
            json!({"images": null, "image": null}),
        ] {
            let error = serde_json::from_value::<GeneratorOutput>(body.clone()).unwrap_err();
            assert!(
                error.to_string().contains("missing field"),
                "{body}: {error}"
            );
        }
        // An empty list still decodes, as it always did.
        let empty: GeneratorOutput = serde_json::from_value(json!({"images": []})).unwrap();
        assert_eq!(empty.output_images().count(), 0);
    }

    #[test]
    fn unknown_queue_states_do_not_break_decoding() {
        let status: QueueStatus =
            serde_json::from_value(json!({"status": "SOMETHING_NEW"})).unwrap();
        assert_eq!(status.status, QueueState::Unknown);
        assert!(!status.is_completed());
    }

    #[test]
    fn error_webhooks_explain_themselves() {
        let hook: WebhookPayload = serde_json::from_value(json!({
            "request_id": "r", "gateway_request_id": "r", "status": "ERROR",
            "error": "Invalid status code: 422",
            "payload": {"detail": [{"loc": ["body", "x"], "msg": "bad", "type": "value_error"}]}
        }))
        .unwrap();
        assert_eq!(
            hook.error_message().unwrap(),
            "Invalid status code: 422: body.x: bad [fal error_type=value_error]"
        );
        assert!(hook.output::<StyleTrainerOutput>().is_none());

        let typed: WebhookPayload = serde_json::from_value(json!({
            "request_id": "r", "status": "ERROR", "error": "Request timed out",
            "error_type": "request_timeout", "payload": null
        }))
        .unwrap();
        let reason = typed.error_message().unwrap();
        assert_eq!(reason, "Request timed out [fal error_type=request_timeout]");
        assert_eq!(error_type_of_reason(&reason), Some("request_timeout"));
        assert_eq!(FailureKind::from_reason(&reason), FailureKind::Busy);
    }

    #[test]
    fn failed_statuses_and_error_types_are_read() {
        let status: QueueStatus = serde_json::from_value(json!({
            "status": "COMPLETED", "logs": [], "metrics": {},
            "error": "Runner disconnected", "error_type": "runner_disconnected"
        }))
        .unwrap();
        assert!(status.is_failed());
        assert_eq!(status.error_type.as_deref(), Some("runner_disconnected"));
        let fine: QueueStatus =
            serde_json::from_value(json!({"status": "COMPLETED", "metrics": {}})).unwrap();
        assert!(!fine.is_failed());

        assert_eq!(
            FailureKind::from_error_type("content_policy_violation"),
            FailureKind::ContentPolicy
        );
        assert_eq!(
            FailureKind::from_error_type("startup_timeout"),
            FailureKind::Busy
        );
        assert_eq!(
            FailureKind::from_error_type("bad_request"),
            FailureKind::Rejected
        );
        assert_eq!(
            FailureKind::from_error_type("something_new"),
            FailureKind::Other
        );
        assert_eq!(
            FailureKind::from_reason("no marker here"),
            FailureKind::Other
        );
        // A reason is tagged once, however often it passes through.
        let once = with_error_type("x".into(), Some("request_timeout"));
        assert_eq!(with_error_type(once.clone(), Some("internal_error")), once);
        assert_eq!(with_error_type("x".into(), None), "x");
    }
}
