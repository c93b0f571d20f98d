//! How the simulator behaves: timings, failure and fault rates, webhooks, keys, and what it
//! checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
