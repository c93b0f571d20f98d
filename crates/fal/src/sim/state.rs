//! What every handler and job task shares: the state behind the lock, the request log, scripted
//! faults, and FAL's error body.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::webhook::WebhookSigner;

use super::config::{FaultRates, SimConfig};
use super::files::{self, MultipartUpload, PendingUpload, StoredFile};
use super::job::{self, Job};

/// Requests kept in the log; the oldest go first.
pub(super) const MAX_RECORDED_REQUESTS: usize = 100_000;

/// What kind of call a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    Submit,
    Status,
    /// `…/status/stream`.
    StatusStream,
    Result,
    Cancel,
    StorageInitiate,
    /// `POST /rest/storage/auth/token`: a token for the CDN upload endpoints.
    StorageToken,
    Upload,
    /// The CDN's own upload endpoints: `POST /files/upload` and the multipart calls.
    CdnUpload,
    File,
    /// The Platform API's *Delete request payloads*.
    DeletePayloads,
    Jwks,
    Control,
    Other,
}

impl RequestKind {
    pub(super) fn classify(method: &Method, path: &str) -> Self {
        if let Some(rest) = path.strip_prefix("/queue/") {
            return match (method, job::parse_queue_path(rest)) {
                (&Method::POST, job::QueuePath::Model(_)) => Self::Submit,
                (&Method::GET, job::QueuePath::Status { .. }) => Self::Status,
                (&Method::GET, job::QueuePath::StatusStream { .. }) => Self::StatusStream,
                (&Method::GET, job::QueuePath::Result { .. }) => Self::Result,
                (&Method::PUT, job::QueuePath::Cancel { .. }) => Self::Cancel,
                _ => Self::Other,
            };
        }
        if let Some(rest) = path.strip_prefix("/platform/v1/models/requests/") {
            return match rest.split('/').collect::<Vec<_>>().as_slice() {
                [id, "payloads"] if !id.is_empty() && method == Method::DELETE => {
                    Self::DeletePayloads
                }
                _ => Self::Other,
            };
        }
        if path == "/rest/storage/upload/initiate" {
            Self::StorageInitiate
        } else if path == "/rest/storage/auth/token" {
            Self::StorageToken
        } else if path == "/rest/.well-known/jwks.json" {
            Self::Jwks
        } else if files::is_cdn_upload_path(method, path) {
            Self::CdnUpload
        } else if path.starts_with("/files/upload/") && method == Method::PUT {
            Self::Upload
        } else if path.starts_with("/files/") {
            Self::File
        } else if path.starts_with("/_sim/") {
            Self::Control
        } else {
            Self::Other
        }
    }

    /// Calls that carry FAL's API key.
    pub(super) fn needs_auth(self) -> bool {
        matches!(
            self,
            Self::Submit
                | Self::Status
                | Self::StatusStream
                | Self::Result
                | Self::Cancel
                | Self::StorageInitiate
                | Self::StorageToken
                | Self::DeletePayloads
        )
    }
}

/// One request the simulator received. The API key itself is never kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub kind: RequestKind,
    /// The JSON body, when there was one.
    pub body: Option<Value>,
    pub body_bytes: usize,
    /// Whether an `Authorization: Key <something>` header came with it.
    pub authorized: bool,
    /// The fault injected into the answer, if any.
    pub fault: Option<String>,
}

impl RecordedRequest {
    /// The model id of a submission.
    pub fn model_id(&self) -> Option<&str> {
        match self.kind {
            RequestKind::Submit => self.path.strip_prefix("/queue/"),
            _ => None,
        }
    }

    /// A query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query.as_deref()?;
        url_decode_pairs(query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// One webhook delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    pub request_id: String,
    pub url: String,
    pub attempt: u32,
    /// Whether this is a deliberate second delivery.
    pub duplicate: bool,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Dropped on purpose (never sent).
    pub dropped: bool,
}

/// When one job was submitted and when its webhook deliveries started, on this process's
/// monotonic clock: for measuring the time a client spends on either side of FAL's work.
#[derive(Debug, Clone)]
pub struct JobTiming {
    pub request_id: String,
    /// The model id the job was submitted to (`fal-ai/flux-lora`, …).
    pub model_id: String,
    /// The submitted input.
    pub input: Value,
    /// The `fal_webhook` the submission named, decoded.
    pub webhook_url: Option<String>,
    /// When the submission arrived (its body read, the job about to be queued).
    pub submitted_at: std::time::Instant,
    /// When each delivery attempt of its webhook started, duplicates included.
    pub webhooks_sent: Vec<std::time::Instant>,
    /// When the receiver answered each attempt that got an answer.
    pub webhooks_answered: Vec<std::time::Instant>,
}

/// A fault to inject into one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Answer with this status and a FAL-shaped error body, without doing the work.
    Status(u16),
    /// Do the work, then hold the answer back this many milliseconds.
    StallMs(u64),
}

impl Fault {
    pub const TOO_MANY_REQUESTS: Fault = Fault::Status(429);
    pub const SERVER_ERROR: Fault = Fault::Status(500);

    pub fn stall(duration: Duration) -> Self {
        Self::StallMs(duration.as_millis() as u64)
    }

    pub(super) fn describe(self) -> String {
        match self {
            Self::Status(code) => format!("status {code}"),
            Self::StallMs(ms) => format!("stall {ms} ms"),
        }
    }
}

/// The mutable part of the simulator.
#[derive(Default)]
pub(super) struct Inner {
    pub(super) jobs: HashMap<String, Job>,
    pub(super) files: HashMap<String, StoredFile>,
    /// Upload token → (file id, file name, content type), until the bytes arrive.
    pub(super) uploads: HashMap<String, PendingUpload>,
    /// CDN tokens handed out, with when each stops working.
    pub(super) cdn_tokens: HashMap<String, DateTime<Utc>>,
    /// Multipart uploads under way, by upload id.
    pub(super) multipart: HashMap<String, MultipartUpload>,
    pub(super) finetunes: HashSet<String>,
    pub(super) requests: Vec<RecordedRequest>,
    pub(super) deliveries: Vec<WebhookDelivery>,
    pub(super) scripted_faults: VecDeque<(Option<RequestKind>, Fault)>,
    pub(super) fault_rates: FaultRates,
    pub(super) failing_jobs: u32,
    pub(super) next_seq: u64,
    /// Answers to payload deletions by idempotency key, with when each was given.
    pub(super) deletions: HashMap<String, (DateTime<Utc>, Value)>,
}

/// Whether jobs may move on freely; when paused, each job moves only on its allowance.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Gate {
    pub(super) paused: bool,
}

/// Shared state behind every handler and job task.
pub(super) struct SimState {
    pub(super) config: SimConfig,
    pub(super) base_url: String,
    pub(super) signer: RwLock<Arc<WebhookSigner>>,
    pub(super) decoys: Vec<WebhookSigner>,
    pub(super) inner: Mutex<Inner>,
    pub(super) http: reqwest::Client,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) gate: watch::Sender<Gate>,
}

impl SimState {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn signer(&self) -> Arc<WebhookSigner> {
        self.signer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Waits until job `id` may make its next move (at once unless jobs are paused).
    pub(super) async fn gate_open(&self, id: &str) {
        let mut gate = self.gate.subscribe();
        loop {
            // Seen before the allowance is read, so a step granted in between still wakes us.
            let paused = gate.borrow_and_update().paused;
            if !paused {
                return;
            }
            {
                let mut inner = self.lock();
                match inner.jobs.get_mut(id) {
                    Some(job) if job.allowance > 0 => {
                        job.allowance -= 1;
                        return;
                    }
                    Some(_) => {}
                    None => return,
                }
            }
            if gate.changed().await.is_err() {
                return;
            }
        }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Resolves after the simulator is shut down.
    pub(super) async fn stopped(&self) {
        let mut shutdown = self.shutdown.clone();
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
    }
}

/// FAL's error body: `{"detail": …}`.
pub(super) fn error_response(status: StatusCode, detail: Value) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

impl SimState {
    pub(super) fn record(&self, mut request: RecordedRequest) {
        let mut inner = self.lock();
        inner.next_seq += 1;
        request.seq = inner.next_seq;
        // A long-running standalone simulator keeps the most recent requests only.
        if inner.requests.len() >= MAX_RECORDED_REQUESTS {
            inner.requests.drain(..MAX_RECORDED_REQUESTS / 10);
        }
        inner.requests.push(request);
    }

    pub(super) fn pick_fault(&self, kind: RequestKind) -> Option<Fault> {
        let mut inner = self.lock();
        let scripted = inner
            .scripted_faults
            .iter()
            .position(|(target, _)| target.is_none_or(|t| t == kind));
        if let Some(index) = scripted {
            return inner.scripted_faults.remove(index).map(|(_, fault)| fault);
        }
        if kind == RequestKind::Jwks {
            return None;
        }
        let rates = inner.fault_rates;
        drop(inner);
        let roll: f64 = rand::thread_rng().gen();
        if roll < rates.too_many_requests {
            Some(Fault::TOO_MANY_REQUESTS)
        } else if roll < rates.too_many_requests + rates.server_error {
            Some(Fault::SERVER_ERROR)
        } else if roll < rates.too_many_requests + rates.server_error + rates.stall {
            Some(Fault::stall(rates.stall_for))
        } else {
            None
        }
    }

    pub(super) fn roll(&self, rate: f64) -> bool {
        rate > 0.0 && rand::thread_rng().gen::<f64>() < rate
    }
}

/// `application/x-www-form-urlencoded` pairs, decoded.
pub(super) fn url_decode_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|url| url.query_pairs().into_owned().collect())
        .unwrap_or_default()
}
