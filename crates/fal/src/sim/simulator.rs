//! [`FalSimulator`]: starting and stopping the server, and what tests read from and set on it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::webhook::WebhookSigner;

use super::config::{FaultRates, SimConfig};
use super::files::file_id_from_url;
use super::routes::router;
use super::state::{
    Fault, Gate, Inner, JobTiming, RecordedRequest, RequestKind, SimState, WebhookDelivery,
};
use super::storage::live_file;

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
                webhook_url: job.webhook_url.clone(),
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
        let id = file_id_from_url(url)?;
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

pub(super) fn build_state(
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

impl FalSimulator {
    /// Moves the storage clock on by `by`: every stored file is that much older, so one whose
    /// lifetime ends within `by` answers 404 from now on — without a test having to wait.
    pub fn advance_storage_clock(&self, by: std::time::Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        for file in self.state.lock().files.values_mut() {
            if let Some(at) = file.expires_at.as_mut() {
                *at = at
                    .checked_sub_signed(by)
                    .unwrap_or(DateTime::<Utc>::MIN_UTC);
            }
        }
    }

    /// When the file at `url` expires: `Some(None)` if it is kept, `None` if nothing is stored
    /// there (any more).
    pub fn file_expires_at(&self, url: &str) -> Option<Option<DateTime<Utc>>> {
        let id = file_id_from_url(url)?;
        live_file(&self.state, &id).map(|file| file.expires_at)
    }
}
