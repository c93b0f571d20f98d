//! A FAL simulator: the queue, storage, file and JWKS endpoints of FAL served from one local
//! address, with simulated jobs, signed webhooks, fault injection and a log of what it received.
//!
//! Layout on one address: the queue under `/queue` (so `FAL_QUEUE_URL=http://ADDR/queue`), the REST
//! API under `/rest` (`FAL_REST_URL=http://ADDR/rest`, JWKS at `/rest/.well-known/jwks.json`), the
//! stored files and the CDN upload endpoints under `/files` (so the CDN's base URL is
//! `http://ADDR`), FAL's Platform API under `/platform/v1` (`FAL_PLATFORM_URL`; request payloads
//! are deleted there), and the simulator's own controls under `/_sim`.
//!
//! It follows FAL as it is today: inputs are checked when a job runs (a submit only refuses
//! unknown models, bodies that are not JSON, bad webhook URLs and the deprecated pro trainer),
//! failed jobs carry `error`/`error_type`, statuses can be streamed, and uploads work both ways
//! FAL's official clients upload (CDN token + `POST /files/upload`, multipart for large files,
//! and the storage initiate/PUT flow). Jobs download the inputs they name from wherever they
//! are (see `inputs`), as FAL's runners do.

mod inputs;
mod jobs;
mod output;
mod storage;
mod validate;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::webhook::{Jwks, WebhookSigner};
use jobs::Job;
use storage::StoredFile;

/// How the simulator behaves. `Default` is fast, for tests: a job completes in about 200 ms.
#[derive(Clone)]
pub struct SimConfig {
    /// Time a job spends IN_QUEUE.
    pub queue_time: Duration,
    /// Time a training job spends IN_PROGRESS.
    pub training_time: Duration,
    /// Time a generation job spends IN_PROGRESS.
    pub generation_time: Duration,
    /// Progress log lines written while IN_PROGRESS.
    pub progress_steps: u32,
    /// Queue position a job starts at; it counts down to 0 while IN_QUEUE.
    pub queue_position: u64,
    /// Fraction of jobs that complete with an error.
    pub failure_rate: f64,
    /// HTTP status a failed job's result answers with: 500 (a runner error) unless set; 422
    /// makes the failure look like a refused input.
    pub failure_status: u16,
    pub failure_message: String,
    /// Fraction of jobs whose `gateway_request_id` differs from `request_id` (an internal retry).
    pub gateway_retry_rate: f64,
    /// Fraction of generated images flagged NSFW (and blacked out).
    pub nsfw_rate: f64,
    /// Longest side of served images; reported sizes are those of the served files.
    pub max_image_side: u32,
    /// Longest side of an upscaled image: factor × size when it fits, else scaled down to this
    /// keeping the ratio (FAL goes to 10× any size); the reported size is the served file's.
    pub max_upscaled_side: u32,
    /// Whether LoRA paths, finetune ids and images to upscale must name things this simulator
    /// has; when not, an image to upscale that it does not have is stood in for by a made one.
    pub check_references: bool,
    /// Whether the deprecated `fal-ai/flux-pro-trainer` is served; refused as deprecated when not.
    pub pro_trainer: bool,
    pub webhook: WebhookBehaviour,
    /// Faults injected at random into queue, storage and file calls.
    pub faults: FaultRates,
    /// Whether FAL API calls need an `Authorization: Key …` header.
    pub require_auth: bool,
    /// When set, the only key accepted; otherwise any non-empty key is.
    pub accepted_key: Option<String>,
    /// The user id put in webhook headers.
    pub user_id: String,
    /// Seed of the webhook signing key; random when `None`.
    pub signing_seed: Option<[u8; 32]>,
    /// Whether the JWKS writes `x` with `=` padding (FAL's live document has done both).
    pub jwks_padded: bool,
    /// Extra unrelated keys listed in the JWKS before the real one.
    pub jwks_decoy_keys: usize,
    /// Base URL written into answers; `http://ADDR` of the bound socket when `None`.
    pub public_url: Option<String>,
    /// Largest request body accepted (uploads included).
    pub max_body_bytes: usize,
    /// Whether jobs start held: none moves on until [`FalSimulator::step_jobs`] or
    /// [`FalSimulator::resume_jobs`], which makes tests independent of timing.
    pub start_paused: bool,
}

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookBehaviour {
    /// Wait between a job completing and its webhook being sent.
    pub delay: Duration,
    /// Fraction of delivered webhooks sent a second time.
    pub duplicate_rate: f64,
    /// Fraction of webhooks never sent.
    pub drop_rate: f64,
    /// Delivery attempts while the receiver does not answer 2xx.
    pub attempts: u32,
    pub retry_delay: Duration,
    /// How long one delivery waits for an answer (FAL waits about 15 s).
    pub timeout: Duration,
}

impl Default for WebhookBehaviour {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            duplicate_rate: 0.0,
            drop_rate: 0.0,
            attempts: 3,
            retry_delay: Duration::from_millis(200),
            timeout: Duration::from_secs(15),
        }
    }
}

/// Random fault injection rates (each a fraction of calls).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct FaultRates {
    pub too_many_requests: f64,
    pub server_error: f64,
    /// Calls answered only after `stall_for`.
    pub stall: f64,
    pub stall_for: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            queue_time: Duration::from_millis(50),
            training_time: Duration::from_millis(150),
            generation_time: Duration::from_millis(100),
            progress_steps: 3,
            queue_position: 2,
            failure_rate: 0.0,
            failure_status: 500,
            failure_message: "The job failed (simulated)".to_owned(),
            gateway_retry_rate: 0.0,
            nsfw_rate: 0.0,
            max_image_side: 128,
            max_upscaled_side: 1024,
            check_references: true,
            pro_trainer: false,
            webhook: WebhookBehaviour::default(),
            faults: FaultRates::default(),
            require_auth: true,
            accepted_key: None,
            user_id: "sim-user".to_owned(),
            signing_seed: None,
            jwks_padded: false,
            jwks_decoy_keys: 0,
            public_url: None,
            max_body_bytes: 256 * 1024 * 1024,
            start_paused: false,
        }
    }
}

// By hand, so that the accepted key and the signing seed stay out of logs.
impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |set: bool| if set { Some("<redacted>") } else { None };
        f.debug_struct("SimConfig")
            .field("queue_time", &self.queue_time)
            .field("training_time", &self.training_time)
            .field("generation_time", &self.generation_time)
            .field("progress_steps", &self.progress_steps)
            .field("queue_position", &self.queue_position)
            .field("failure_rate", &self.failure_rate)
            .field("failure_status", &self.failure_status)
            .field("failure_message", &self.failure_message)
            .field("gateway_retry_rate", &self.gateway_retry_rate)
            .field("nsfw_rate", &self.nsfw_rate)
            .field("max_image_side", &self.max_image_side)
            .field("max_upscaled_side", &self.max_upscaled_side)
            .field("check_references", &self.check_references)
            .field("pro_trainer", &self.pro_trainer)
            .field("webhook", &self.webhook)
            .field("faults", &self.faults)
            .field("require_auth", &self.require_auth)
            .field("accepted_key", &redacted(self.accepted_key.is_some()))
            .field("user_id", &self.user_id)
            .field("signing_seed", &redacted(self.signing_seed.is_some()))
            .field("jwks_padded", &self.jwks_padded)
            .field("jwks_decoy_keys", &self.jwks_decoy_keys)
            .field("public_url", &self.public_url)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("start_paused", &self.start_paused)
            .finish()
    }
}

impl SimConfig {
    /// Timings that feel like FAL when watched by a person (offline demos).
    pub fn demo() -> Self {
        Self {
            queue_time: Duration::from_secs(2),
            training_time: Duration::from_secs(20),
            generation_time: Duration::from_secs(5),
            progress_steps: 10,
            max_image_side: 512,
            max_upscaled_side: 2048,
            ..Self::default()
        }
    }

    pub fn with_times(mut self, queue: Duration, training: Duration, generation: Duration) -> Self {
        self.queue_time = queue;
        self.training_time = training;
        self.generation_time = generation;
        self
    }

    pub fn with_failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    pub fn with_failure_status(mut self, status: u16) -> Self {
        self.failure_status = status;
        self
    }

    pub fn with_gateway_retry_rate(mut self, rate: f64) -> Self {
        self.gateway_retry_rate = rate;
        self
    }

    pub fn with_nsfw_rate(mut self, rate: f64) -> Self {
        self.nsfw_rate = rate;
        self
    }

    pub fn with_webhook(mut self, webhook: WebhookBehaviour) -> Self {
        self.webhook = webhook;
        self
    }

    pub fn with_faults(mut self, faults: FaultRates) -> Self {
        self.faults = faults;
        self
    }

    pub fn with_accepted_key(mut self, key: impl Into<String>) -> Self {
        self.accepted_key = Some(key.into());
        self
    }

    pub fn without_auth(mut self) -> Self {
        self.require_auth = false;
        self
    }

    pub fn with_signing_seed(mut self, seed: [u8; 32]) -> Self {
        self.signing_seed = Some(seed);
        self
    }

    pub fn with_jwks_padded(mut self, padded: bool) -> Self {
        self.jwks_padded = padded;
        self
    }

    pub fn with_jwks_decoy_keys(mut self, count: usize) -> Self {
        self.jwks_decoy_keys = count;
        self
    }

    pub fn with_max_upscaled_side(mut self, side: u32) -> Self {
        self.max_upscaled_side = side;
        self
    }

    pub fn with_check_references(mut self, check: bool) -> Self {
        self.check_references = check;
        self
    }

    /// Serves the deprecated `fal-ai/flux-pro-trainer` (FAL: "This endpoint is deprecated. This
    /// model is no longer supported."), for accounts where FAL still runs it.
    pub fn with_pro_trainer(mut self, serve: bool) -> Self {
        self.pro_trainer = serve;
        self
    }

    pub fn paused(mut self) -> Self {
        self.start_paused = true;
        self
    }

    pub fn with_public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }
}

/// Requests kept in the log; the oldest go first.
const MAX_RECORDED_REQUESTS: usize = 100_000;

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
    fn classify(method: &Method, path: &str) -> Self {
        if let Some(rest) = path.strip_prefix("/queue/") {
            return match (method, jobs::parse_queue_path(rest)) {
                (&Method::POST, jobs::QueuePath::Model(_)) => Self::Submit,
                (&Method::GET, jobs::QueuePath::Status { .. }) => Self::Status,
                (&Method::GET, jobs::QueuePath::StatusStream { .. }) => Self::StatusStream,
                (&Method::GET, jobs::QueuePath::Result { .. }) => Self::Result,
                (&Method::PUT, jobs::QueuePath::Cancel { .. }) => Self::Cancel,
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
        } else if storage::is_cdn_upload_path(method, path) {
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
    fn needs_auth(self) -> bool {
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

    fn describe(self) -> String {
        match self {
            Self::Status(code) => format!("status {code}"),
            Self::StallMs(ms) => format!("stall {ms} ms"),
        }
    }
}

/// The mutable part of the simulator.
#[derive(Default)]
struct Inner {
    jobs: HashMap<String, Job>,
    files: HashMap<String, StoredFile>,
    /// Upload token → (file id, file name, content type), until the bytes arrive.
    uploads: HashMap<String, storage::PendingUpload>,
    /// CDN tokens handed out, with when each stops working.
    cdn_tokens: HashMap<String, DateTime<Utc>>,
    /// Multipart uploads under way, by upload id.
    multipart: HashMap<String, storage::MultipartUpload>,
    finetunes: HashSet<String>,
    requests: Vec<RecordedRequest>,
    deliveries: Vec<WebhookDelivery>,
    scripted_faults: VecDeque<(Option<RequestKind>, Fault)>,
    fault_rates: FaultRates,
    failing_jobs: u32,
    next_seq: u64,
    /// Answers to payload deletions by idempotency key, with when each was given.
    deletions: HashMap<String, (DateTime<Utc>, Value)>,
}

/// Whether jobs may move on freely; when paused, each job moves only on its allowance.
#[derive(Debug, Clone, Copy, Default)]
struct Gate {
    paused: bool,
}

/// Shared state behind every handler and job task.
struct SimState {
    config: SimConfig,
    base_url: String,
    signer: RwLock<Arc<WebhookSigner>>,
    decoys: Vec<WebhookSigner>,
    inner: Mutex<Inner>,
    http: reqwest::Client,
    shutdown: watch::Receiver<bool>,
    gate: watch::Sender<Gate>,
}

impl SimState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn signer(&self) -> Arc<WebhookSigner> {
        self.signer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Waits until job `id` may make its next move (at once unless jobs are paused).
    async fn gate_open(&self, id: &str) {
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

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Resolves after the simulator is shut down.
    async fn stopped(&self) {
        let mut shutdown = self.shutdown.clone();
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A running simulator. Dropping it stops the server and its jobs.
pub struct FalSimulator {
    state: Arc<SimState>,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for FalSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FalSimulator")
            .field("base_url", &self.state.base_url)
            .finish_non_exhaustive()
    }
}

impl FalSimulator {
    /// Starts a simulator on `127.0.0.1` at a free port.
    pub async fn spawn(config: SimConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::start(listener, config)
    }

    /// Starts a simulator on an already bound listener.
    pub fn start(listener: TcpListener, config: SimConfig) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = build_state(addr, config, shutdown_rx.clone());
        let app = router(state.clone());
        let server = tokio::spawn(async move {
            let mut rx = shutdown_rx;
            let stop = async move {
                while !*rx.borrow_and_update() {
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(%error, "FAL simulator stopped with an error");
            }
        });
        Ok(Self {
            state,
            addr,
            shutdown,
            server: Some(server),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (or the configured public URL).
    pub fn base_url(&self) -> &str {
        &self.state.base_url
    }

    /// The value for `FAL_QUEUE_URL`.
    pub fn queue_url(&self) -> String {
        self.state.url("/queue")
    }

    /// The value for `FAL_REST_URL`.
    pub fn rest_url(&self) -> String {
        self.state.url("/rest")
    }

    /// The value for `FAL_JWKS_URL`.
    pub fn jwks_url(&self) -> String {
        self.state.url("/rest/.well-known/jwks.json")
    }

    /// The value for `FAL_PLATFORM_URL`.
    pub fn platform_url(&self) -> String {
        self.state.url("/platform/v1")
    }

    /// Whether the payloads of request `request_id` were deleted; `None` for a request it never
    /// had.
    pub fn payloads_deleted(&self, request_id: &str) -> Option<bool> {
        self.state
            .lock()
            .jobs
            .get(request_id)
            .map(|job| job.payloads_deleted)
    }

    /// The user id written in webhook headers.
    pub fn user_id(&self) -> &str {
        &self.state.config.user_id
    }

    /// The public key webhooks are currently signed with.
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.state.signer().verifying_key()
    }

    /// Replaces the webhook signing key (as a key rotation on FAL's side would).
    pub fn rotate_signing_key(&self) {
        let signer = Arc::new(WebhookSigner::generate(self.state.config.user_id.clone()));
        *self
            .state
            .signer
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = signer;
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.lock().requests.clone()
    }

    /// The requests of one kind.
    pub fn requests_of(&self, kind: RequestKind) -> Vec<RecordedRequest> {
        self.state
            .lock()
            .requests
            .iter()
            .filter(|r| r.kind == kind)
            .cloned()
            .collect()
    }

    /// Every queue submission received (including ones answered with an injected fault).
    pub fn submissions(&self) -> Vec<RecordedRequest> {
        self.requests_of(RequestKind::Submit)
    }

    /// Every webhook delivery attempt so far.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.state.lock().deliveries.clone()
    }

    /// The request ids of every job accepted, in no particular order.
    pub fn request_ids(&self) -> Vec<String> {
        self.state.lock().jobs.keys().cloned().collect()
    }

    /// Every job accepted, with its submission and webhook times, in no particular order.
    pub fn job_timings(&self) -> Vec<JobTiming> {
        self.state
            .lock()
            .jobs
            .values()
            .map(|job| JobTiming {
                request_id: job.request_id.clone(),
                model_id: job.model_id.clone(),
                input: job.input.clone(),
                submitted_at: job.submitted_at.into_std(),
                webhooks_sent: job.webhooks_sent.clone(),
                webhooks_answered: job.webhooks_answered.clone(),
            })
            .collect()
    }

    /// Number of jobs accepted.
    pub fn job_count(&self) -> usize {
        self.state.lock().jobs.len()
    }

    /// Every file the simulator's storage still holds (uploads and results), by id: what a
    /// test searches to prove that something is no longer kept at FAL.
    pub fn stored_files(&self) -> Vec<(String, bytes::Bytes)> {
        self.state
            .lock()
            .files
            .iter()
            .map(|(id, f)| (id.to_string(), f.bytes.clone()))
            .collect()
    }

    /// The bytes of a stored file (uploaded or produced), by its URL.
    pub fn file_bytes(&self, url: &str) -> Option<bytes::Bytes> {
        let id = storage::file_id_from_url(url)?;
        self.state.lock().files.get(&id).map(|f| f.bytes.clone())
    }

    /// Makes a finetune id known, as one trained on this account before (say, on the pro
    /// trainer before FAL deprecated it): the ultra endpoint then finds it.
    pub fn import_finetune(&self, finetune_id: impl Into<String>) {
        self.state.lock().finetunes.insert(finetune_id.into());
    }

    /// Injects `faults`, in order, into the next requests of `kind`.
    pub fn fail_next(&self, kind: RequestKind, faults: &[Fault]) {
        let mut inner = self.state.lock();
        inner
            .scripted_faults
            .extend(faults.iter().map(|f| (Some(kind), *f)));
    }

    /// Injects `faults`, in order, into the next FAL calls of any kind.
    pub fn fail_next_any(&self, faults: &[Fault]) {
        let mut inner = self.state.lock();
        inner
            .scripted_faults
            .extend(faults.iter().map(|f| (None, *f)));
    }

    /// Replaces the random fault rates.
    pub fn set_fault_rates(&self, rates: FaultRates) {
        self.state.lock().fault_rates = rates;
    }

    /// Makes the next `count` submitted jobs fail, whatever the failure rate.
    pub fn fail_next_jobs(&self, count: u32) {
        self.state.lock().failing_jobs += count;
    }

    /// Holds every job where it is (each job finishes the move it is making).
    pub fn pause_jobs(&self) {
        for job in self.state.lock().jobs.values_mut() {
            job.allowance = 0;
        }
        self.state.gate.send_modify(|gate| gate.paused = true);
    }

    /// Lets every job run freely again.
    pub fn resume_jobs(&self) {
        self.state.gate.send_modify(|gate| gate.paused = false);
    }

    /// While paused, lets every job make one more move: leave the queue, log one progress step,
    /// or (after the last step) complete.
    pub fn step_jobs(&self) {
        for job in self.state.lock().jobs.values_mut() {
            job.allowance += 1;
        }
        // Wakes the waiting jobs; the allowance is already in place.
        self.state.gate.send_modify(|_| {});
    }

    /// Stops the server and every job; pending webhooks are not sent.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for FalSimulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Serves a simulator at `addr` until Ctrl-C, for `aisha fal-sim --addr`.
pub async fn run_standalone(addr: SocketAddr, config: SimConfig) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let sim = FalSimulator::start(listener, config)?;
    tracing::info!(
        queue_url = %sim.queue_url(),
        rest_url = %sim.rest_url(),
        jwks_url = %sim.jwks_url(),
        platform_url = %sim.platform_url(),
        "FAL simulator listening"
    );
    tokio::signal::ctrl_c().await?;
    tracing::info!("FAL simulator stopping");
    sim.shutdown().await;
    Ok(())
}

fn build_state(
    addr: SocketAddr,
    config: SimConfig,
    shutdown: watch::Receiver<bool>,
) -> Arc<SimState> {
    // A wildcard address cannot be dialled; answers point at loopback instead.
    let reachable = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let base_url = config
        .public_url
        .clone()
        .map(|url| url.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| format!("http://{reachable}"));
    let signer = match config.signing_seed {
        Some(seed) => WebhookSigner::from_seed(seed, config.user_id.clone()),
        None => WebhookSigner::generate(config.user_id.clone()),
    };
    let decoys = (0..config.jwks_decoy_keys)
        .map(|_| WebhookSigner::generate("decoy"))
        .collect();
    let inner = Inner {
        fault_rates: config.faults,
        ..Inner::default()
    };
    let (gate, _) = watch::channel(Gate {
        paused: config.start_paused,
    });
    Arc::new(SimState {
        base_url,
        signer: RwLock::new(Arc::new(signer)),
        decoys,
        inner: Mutex::new(inner),
        http: reqwest::Client::new(),
        shutdown,
        gate,
        config,
    })
}

fn router(state: Arc<SimState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/queue/{*path}", any(jobs::queue))
        .route("/rest/storage/upload/initiate", post(storage::initiate))
        .route("/rest/storage/auth/token", post(storage::cdn_token))
        .route("/rest/.well-known/jwks.json", get(jwks))
        .route(
            "/platform/v1/models/requests/{id}/payloads",
            delete(jobs::delete_payloads),
        )
        .route("/files/upload", post(storage::cdn_upload))
        .route("/files/upload/multipart", post(storage::multipart_create))
        .route("/files/upload/{token}", put(storage::upload))
        .route("/files/{id}/{name}", get(storage::download))
        .route(
            "/files/{id}/{name}/multipart/{upload_id}/complete",
            post(storage::multipart_complete),
        )
        .route(
            "/files/{id}/{name}/multipart/{upload_id}/{part}",
            put(storage::multipart_part),
        )
        .route("/_sim/requests", get(list_requests))
        .route("/_sim/webhooks", get(list_deliveries))
        .route("/_sim/fail-next", post(script_faults))
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, json!("Not Found")) })
        .layer(middleware::from_fn_with_state(state.clone(), gatekeeper))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// FAL's error body: `{"detail": …}`.
fn error_response(status: StatusCode, detail: Value) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

/// Records the request, checks the key, and injects faults, before the handler runs.
async fn gatekeeper(State(state): State<Arc<SimState>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let kind = RequestKind::classify(&parts.method, parts.uri.path());
    let bytes = match axum::body::to_bytes(body, state.config.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!("Request body too large"),
            )
        }
    };
    let authorized = presented_key(&parts.headers).is_some();
    let accepted = !state.config.require_auth
        || !kind.needs_auth()
        || match (presented_key(&parts.headers), &state.config.accepted_key) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(given), Some(expected)) => given == expected,
        };
    // Refused calls consume no injected fault: faults are for calls FAL would have served.
    let fault = if !accepted || matches!(kind, RequestKind::Control | RequestKind::Other) {
        None
    } else {
        state.pick_fault(kind)
    };
    state.record(RecordedRequest {
        seq: 0,
        at: Utc::now(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        kind,
        // Uploads are file bytes, not worth keeping twice.
        body: (!matches!(kind, RequestKind::Upload | RequestKind::CdnUpload))
            .then(|| serde_json::from_slice(&bytes).ok())
            .flatten(),
        body_bytes: bytes.len(),
        authorized,
        fault: fault.map(Fault::describe),
    });
    if !accepted {
        return error_response(
            StatusCode::UNAUTHORIZED,
            json!("Invalid or missing API key"),
        );
    }

    let request = Request::from_parts(parts, Body::from(bytes));
    match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let detail = match code {
                429 => "Rate limit exceeded",
                _ => status.canonical_reason().unwrap_or("Simulated fault"),
            };
            tracing::debug!(?kind, code, "FAL simulator injecting an error");
            error_response(status, json!(detail))
        }
        Some(Fault::StallMs(ms)) => {
            // The work is done first: a client that gave up still caused it, as with FAL.
            let response = next.run(request).await;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            response
        }
        None => next.run(request).await,
    }
}

/// The key of an `Authorization: Key <key>` header, if well-formed.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let key = value.strip_prefix("Key ")?.trim();
    (!key.is_empty()).then_some(key)
}

impl SimState {
    fn record(&self, mut request: RecordedRequest) {
        let mut inner = self.lock();
        inner.next_seq += 1;
        request.seq = inner.next_seq;
        // A long-running standalone simulator keeps the most recent requests only.
        if inner.requests.len() >= MAX_RECORDED_REQUESTS {
            inner.requests.drain(..MAX_RECORDED_REQUESTS / 10);
        }
        inner.requests.push(request);
    }

    fn pick_fault(&self, kind: RequestKind) -> Option<Fault> {
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

    fn roll(&self, rate: f64) -> bool {
        rate > 0.0 && rand::thread_rng().gen::<f64>() < rate
    }
}

async fn jwks(State(state): State<Arc<SimState>>) -> Json<Jwks> {
    let padded = state.config.jwks_padded;
    let mut keys: Vec<_> = state.decoys.iter().map(|d| d.jwk(padded)).collect();
    keys.push(state.signer().jwk(padded));
    Json(Jwks { keys })
}

async fn list_requests(State(state): State<Arc<SimState>>) -> Json<Vec<RecordedRequest>> {
    Json(state.lock().requests.clone())
}

async fn list_deliveries(State(state): State<Arc<SimState>>) -> Json<Vec<WebhookDelivery>> {
    Json(state.lock().deliveries.clone())
}

/// Body of `POST /_sim/fail-next`, for tests driving a standalone simulator.
#[derive(Debug, Deserialize)]
struct ScriptFaults {
    #[serde(default)]
    kind: Option<RequestKind>,
    faults: Vec<Fault>,
}

async fn script_faults(State(state): State<Arc<SimState>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<ScriptFaults>(&body) {
        Ok(script) => {
            let mut inner = state.lock();
            let count = script.faults.len();
            inner
                .scripted_faults
                .extend(script.faults.into_iter().map(|f| (script.kind, f)));
            Json(json!({ "queued": count })).into_response()
        }
        Err(e) => error_response(StatusCode::UNPROCESSABLE_ENTITY, json!(e.to_string())),
    }
}

/// `application/x-www-form-urlencoded` pairs, decoded.
fn url_decode_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|url| url.query_pairs().into_owned().collect())
        .unwrap_or_default()
}
