//! Telegram's side of webhook delivery, for a bot served by several instances behind one load
//! balancer. Real Telegram pushes each update to the webhook URL and the balancer hands it to
//! one instance; here [`WebhookDelivery`] plays both: it takes the updates queued at the fake
//! and POSTs each to one of the [`Instances`] in turn, retrying on the next one until an
//! instance answers 200, as Telegram keeps retrying an unacknowledged update. One chat's updates
//! go one at a time, as Telegram sends them. Optionally it misbehaves the ways Telegram and
//! networks do: some updates are delivered twice, and some deliveries are given up on the
//! client side too soon, so they are retried although the instance may have stored them.
//!
//! [`HttpProxy`] is the balancer for everything else that reaches the public URL (FAL's
//! webhooks): it forwards any request to an instance that is up.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{FakeTelegram, Shared};

/// The header Telegram repeats the webhook's secret token in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";
/// Telegram takes at most this many updates off the queue at once for a webhook.
const BATCH: usize = 100;
/// How long the dispatcher sleeps between looks when nothing wakes it.
const IDLE_LOOK: Duration = Duration::from_millis(500);
/// The longest pause between two attempts at one update.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The proxy's limit on a forwarded request or response body.
const MAX_PROXIED_BYTES: usize = 64 * 1024 * 1024;

/// The instances behind the balancer: base URLs (`http://127.0.0.1:PORT`), each up or marked
/// down, as a balancer's health checks would. Cheap to clone; clones share the list.
#[derive(Clone)]
pub struct Instances {
    inner: Arc<InstancesInner>,
}

struct InstancesInner {
    list: Mutex<Vec<Instance>>,
    turn: AtomicUsize,
}

struct Instance {
    base: String,
    up: bool,
}

impl Instances {
    /// These instances, all up.
    pub fn new(bases: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let list = bases
            .into_iter()
            .map(|b| Instance {
                base: b.into().trim_end_matches('/').to_owned(),
                up: true,
            })
            .collect();
        Self {
            inner: Arc::new(InstancesInner {
                list: Mutex::new(list),
                turn: AtomicUsize::new(0),
            }),
        }
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        self.inner
            .list
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes instance `index` out of the rotation.
    pub fn mark_down(&self, index: usize) {
        self.set_up(index, false);
    }

    /// Puts instance `index` back into the rotation.
    pub fn mark_up(&self, index: usize) {
        self.set_up(index, true);
    }

    fn set_up(&self, index: usize, up: bool) {
        if let Some(instance) = self.list().get_mut(index) {
            instance.up = up;
        }
    }

    /// Every instance's base URL, in order.
    pub fn bases(&self) -> Vec<String> {
        self.list().iter().map(|i| i.base.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.list().len()
    }

    pub fn is_empty(&self) -> bool {
        self.list().is_empty()
    }

    /// The next instance in turn that is up, other than `avoid` when another is up; `None`
    /// when all are down.
    fn pick(&self, avoid: Option<usize>) -> Option<(usize, String)> {
        let list = self.list();
        let n = list.len();
        if n == 0 {
            return None;
        }
        let start = self.inner.turn.fetch_add(1, Ordering::Relaxed);
        let up = |i: &usize| list[*i].up;
        let order = (0..n).map(|k| (start + k) % n);
        let chosen = order
            .clone()
            .filter(up)
            .find(|i| Some(*i) != avoid)
            .or_else(|| order.clone().find(up))?;
        Some((chosen, list[chosen].base.clone()))
    }
}

/// How [`WebhookDelivery`] behaves.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// How long one POST may take before it counts as failed and is retried elsewhere.
    pub timeout: Duration,
    /// The pause after the first failed attempt; it doubles with each failure, up to 1 s.
    pub backoff: Duration,
    /// Share of updates also POSTed a second time to another instance, at about the same time.
    pub duplicate_share: f64,
    /// Share of first attempts given up after a few milliseconds (up to `impatient_timeout`),
    /// whatever the instance did with the update meanwhile.
    pub impatient_share: f64,
    pub impatient_timeout: Duration,
}

impl Default for DeliveryConfig {
    /// Delivery as a healthy network gives it: each update once, retried only on failure.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            backoff: Duration::from_millis(100),
            duplicate_share: 0.0,
            impatient_share: 0.0,
            impatient_timeout: Duration::from_millis(30),
        }
    }
}

impl DeliveryConfig {
    /// One update in ten delivered twice, one first attempt in twenty cut short.
    pub fn unreliable() -> Self {
        Self {
            duplicate_share: 0.1,
            impatient_share: 0.05,
            ..Self::default()
        }
    }
}

/// What the delivery did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Updates taken from the queue.
    pub taken: u64,
    /// Updates an instance answered 200 for.
    pub acknowledged: u64,
    /// Updates given up after an answer that says retrying cannot help (400, 401, 403).
    pub rejected: u64,
    /// Every POST made, first attempts, retries and duplicates.
    pub posts: u64,
    /// Second deliveries of an update to another instance.
    pub duplicate_posts: u64,
    /// POSTs of an update after an earlier attempt at it failed.
    pub retries: u64,
    /// Attempts that found no instance listening, or lost the connection.
    pub connection_failures: u64,
    /// Attempts that got no answer within the timeout.
    pub timeouts: u64,
    /// First attempts given a few milliseconds only.
    pub impatient: u64,
    /// Impatient attempts that timed out (the instance may have stored the update anyway).
    pub cut_short: u64,
    /// Attempts answered 503 (an instance stopping).
    pub unavailable: u64,
    /// Attempts answered with another 5xx.
    pub server_errors: u64,
    /// Attempts made while every instance was marked down (none was tried).
    pub none_up: u64,
}

impl DeliveryStats {
    /// Updates taken and neither acknowledged nor given up yet.
    pub fn in_flight(&self) -> u64 {
        self.taken - self.acknowledged - self.rejected
    }
}

#[derive(Default)]
struct Counters {
    taken: AtomicU64,
    acknowledged: AtomicU64,
    rejected: AtomicU64,
    posts: AtomicU64,
    duplicate_posts: AtomicU64,
    retries: AtomicU64,
    connection_failures: AtomicU64,
    timeouts: AtomicU64,
    impatient: AtomicU64,
    cut_short: AtomicU64,
    unavailable: AtomicU64,
    server_errors: AtomicU64,
    none_up: AtomicU64,
    acknowledged_ids: Mutex<BTreeSet<i64>>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// How one POST ended.
enum Attempt {
    Acknowledged,
    /// Retrying cannot help (the body or the secret is wrong).
    Rejected,
    Failed,
}

/// Pushes the fake's queued updates to [`Instances`] until dropped or [`WebhookDelivery::stop`].
pub struct WebhookDelivery {
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    dispatcher: Option<JoinHandle<()>>,
}

struct Deliverer {
    shared: Arc<Shared>,
    instances: Instances,
    config: DeliveryConfig,
    http: reqwest::Client,
    counters: Arc<Counters>,
}

impl WebhookDelivery {
    /// Starts delivering what `telegram` queues, once a webhook is set there.
    pub fn spawn(telegram: &FakeTelegram, instances: Instances, config: DeliveryConfig) -> Self {
        let counters = Arc::new(Counters::default());
        let (stop, stopping) = watch::channel(false);
        let deliverer = Arc::new(Deliverer {
            shared: telegram.shared.clone(),
            instances,
            config,
            http: reqwest::Client::new(),
            counters: counters.clone(),
        });
        let dispatcher = tokio::spawn(dispatch(deliverer, stopping));
        Self {
            counters,
            stop,
            dispatcher: Some(dispatcher),
        }
    }

    pub fn stats(&self) -> DeliveryStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DeliveryStats {
            taken: get(&c.taken),
            acknowledged: get(&c.acknowledged),
            rejected: get(&c.rejected),
            posts: get(&c.posts),
            duplicate_posts: get(&c.duplicate_posts),
            retries: get(&c.retries),
            connection_failures: get(&c.connection_failures),
            timeouts: get(&c.timeouts),
            impatient: get(&c.impatient),
            cut_short: get(&c.cut_short),
            unavailable: get(&c.unavailable),
            server_errors: get(&c.server_errors),
            none_up: get(&c.none_up),
        }
    }

    /// The ids of the updates an instance acknowledged.
    pub fn acknowledged_ids(&self) -> BTreeSet<i64> {
        self.counters
            .acknowledged_ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Stops taking and retrying updates (those in flight are abandoned).
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(dispatcher) = self.dispatcher.take() {
            let _ = dispatcher.await;
        }
    }
}

impl Drop for WebhookDelivery {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Takes updates off the queue and hands each to its chat's line; each line delivers its
/// updates one after another.
async fn dispatch(deliverer: Arc<Deliverer>, mut stopping: watch::Receiver<bool>) {
    let mut lines: HashMap<i64, mpsc::UnboundedSender<Value>> = HashMap::new();
    let mut lanes = Vec::new();
    loop {
        if *stopping.borrow() {
            break;
        }
        let updates = deliverer
            .shared
            .write_quietly(|w| w.take_for_webhook(BATCH));
        if updates.is_empty() {
            tokio::select! {
                _ = super::wait_for_webhook_updates(&deliverer.shared, IDLE_LOOK) => {}
                _ = stopping.changed() => {}
            }
            continue;
        }
        deliverer
            .counters
            .taken
            .fetch_add(updates.len() as u64, Ordering::Relaxed);
        for update in updates {
            let chat = chat_of(&update);
            let line = lines.entry(chat).or_insert_with(|| {
                let (line, queue) = mpsc::unbounded_channel();
                lanes.push(tokio::spawn(lane(
                    deliverer.clone(),
                    queue,
                    stopping.clone(),
                )));
                line
            });
            let _ = line.send(update);
        }
    }
    drop(lines);
    for lane in lanes {
        lane.abort();
    }
}

/// One chat's updates, each delivered (retried as long as it takes) before the next.
async fn lane(
    deliverer: Arc<Deliverer>,
    mut queue: mpsc::UnboundedReceiver<Value>,
    mut stopping: watch::Receiver<bool>,
) {
    while let Some(update) = queue.recv().await {
        tokio::select! {
            () = deliverer.deliver(update) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

impl Deliverer {
    async fn deliver(self: &Arc<Self>, update: Value) {
        let id = update["update_id"].as_i64().unwrap_or_default();
        let body = bytes::Bytes::from(update.to_string());
        let c = &self.counters;
        let (duplicate, impatient) = {
            let mut rng = rand::thread_rng();
            (
                rng.gen_bool(self.config.duplicate_share.clamp(0.0, 1.0)),
                rng.gen_bool(self.config.impatient_share.clamp(0.0, 1.0)),
            )
        };
        let mut backoff = self.config.backoff;
        let mut last = None;
        for attempt in 0u32.. {
            let Some((index, base)) = self.instances.pick(last) else {
                bump(&c.none_up);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            };
            if attempt > 0 {
                bump(&c.retries);
            }
            if attempt == 0 && duplicate {
                self.clone().send_duplicate(body.clone(), index);
            }
            let timeout = if attempt == 0 && impatient {
                bump(&c.impatient);
                let most = self.config.impatient_timeout.as_micros().max(1000) as u64;
                Some(Duration::from_micros(
                    rand::thread_rng().gen_range(1000..=most),
                ))
            } else {
                None
            };
            match self.post(&base, body.clone(), timeout).await {
                Attempt::Acknowledged => {
                    bump(&c.acknowledged);
                    c.acknowledged_ids
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .insert(id);
                    return;
                }
                Attempt::Rejected => {
                    bump(&c.rejected);
                    return;
                }
                Attempt::Failed => {
                    last = Some(index);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The same update to another instance, once, a moment after the first delivery set off.
    fn send_duplicate(self: Arc<Self>, body: bytes::Bytes, first: usize) {
        tokio::spawn(async move {
            let pause = rand::thread_rng().gen_range(0..20);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            if let Some((_, base)) = self.instances.pick(Some(first)) {
                bump(&self.counters.duplicate_posts);
                self.post(&base, body, None).await;
            }
        });
    }

    /// One POST of `body`, with the configured timeout unless an impatient one is given.
    async fn post(&self, base: &str, body: bytes::Bytes, impatient: Option<Duration>) -> Attempt {
        let c = &self.counters;
        let (webhook, secret) = self
            .shared
            .read(|w| (w.webhook.clone(), w.webhook_secret.clone()));
        // The instance gets the path of the URL the bot set; the host is the balancer's.
        let path = webhook
            .as_deref()
            .and_then(|u| reqwest::Url::parse(u).ok())
            .map_or_else(|| "/".to_owned(), |u| u.path().to_owned());
        let mut request = self
            .http
            .post(format!("{base}{path}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(impatient.unwrap_or(self.config.timeout));
        if let Some(secret) = secret {
            request = request.header(SECRET_HEADER, secret);
        }
        bump(&c.posts);
        match request.send().await {
            Ok(response) => match response.status().as_u16() {
                200 => Attempt::Acknowledged,
                400 | 401 | 403 => Attempt::Rejected,
                503 => {
                    bump(&c.unavailable);
                    Attempt::Failed
                }
                _ => {
                    bump(&c.server_errors);
                    Attempt::Failed
                }
            },
            Err(e) if e.is_timeout() => {
                bump(if impatient.is_some() {
                    &c.cut_short
                } else {
                    &c.timeouts
                });
                Attempt::Failed
            }
            Err(_) => {
                bump(&c.connection_failures);
                Attempt::Failed
            }
        }
    }
}

/// The chat an update belongs to, as Telegram orders deliveries: the message's chat, else the
/// sender's (a pre-checkout query has no chat).
pub fn chat_of(update: &Value) -> i64 {
    let Some(body) = update
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| *k != "update_id"))
        .map(|(_, v)| v)
    else {
        return 0;
    };
    body["chat"]["id"]
        .as_i64()
        .or_else(|| body["message"]["chat"]["id"].as_i64())
        .or_else(|| body["from"]["id"].as_i64())
        .unwrap_or(0)
}

/// The balancer for the rest of the public URL: forwards any request to an instance that is up,
/// the next in turn if one cannot be reached, and answers 502 when none can.
pub struct HttpProxy {
    url: String,
    counters: Arc<ProxyCounters>,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct ProxyCounters {
    forwarded: AtomicU64,
    unreachable: AtomicU64,
}

#[derive(Clone)]
struct Proxy {
    instances: Instances,
    http: reqwest::Client,
    counters: Arc<ProxyCounters>,
}

impl HttpProxy {
    /// Listens on a free port of 127.0.0.1.
    pub async fn spawn(instances: Instances) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let counters = Arc::new(ProxyCounters::default());
        let proxy = Proxy {
            instances,
            http: reqwest::Client::new(),
            counters: counters.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(proxy);
        let (stop, mut stopping) = watch::channel(false);
        let server = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await;
        });
        Ok(Self {
            url,
            counters,
            stop,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`: the public base URL the instances are told.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests an instance answered (whatever the status).
    pub fn forwarded(&self) -> u64 {
        self.counters.forwarded.load(Ordering::Relaxed)
    }

    /// Requests answered 502 because no instance could be reached.
    pub fn unreachable(&self) -> u64 {
        self.counters.unreachable.load(Ordering::Relaxed)
    }

    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, MAX_PROXIED_BYTES).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut headers = parts.headers.clone();
    headers.remove(axum::http::header::HOST);
    headers.remove(axum::http::header::CONTENT_LENGTH);
    let mut last = None;
    for _ in 0..2 * proxy.instances.len().max(1) {
        let Some((index, base)) = proxy.instances.pick(last) else {
            break;
        };
        let sent = proxy
            .http
            .request(parts.method.clone(), format!("{base}{path}"))
            .headers(headers.clone())
            .body(body.clone())
            .send()
            .await;
        // Only a request that never got an answer goes to another instance: an answer, even
        // an error, is the instance's to give.
        let Ok(response) = sent else {
            last = Some(index);
            continue;
        };
        proxy.counters.forwarded.fetch_add(1, Ordering::Relaxed);
        let status = response.status();
        let mut answer = Response::builder().status(status);
        for (name, value) in response.headers() {
            if name != axum::http::header::CONTENT_LENGTH
                && name != axum::http::header::TRANSFER_ENCODING
            {
                answer = answer.header(name, value);
            }
        }
        let bytes = response.bytes().await.unwrap_or_default();
        return answer
            .body(Body::from(bytes))
            .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response());
    }
    proxy.counters.unreachable.fetch_add(1, Ordering::Relaxed);
    StatusCode::BAD_GATEWAY.into_response()
}
