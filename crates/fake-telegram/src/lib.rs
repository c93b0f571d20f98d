//! A fake Telegram Bot API over real HTTP, for end-to-end tests and the offline demo.
//!
//! [`FakeTelegram::spawn`] serves the Bot API on 127.0.0.1 for a real teloxide bot pointed at
//! [`FakeTelegram::api_url`]; [`FakeUser`] plays a person in a private chat with that bot.
//! Layout: `api` (routes and request bodies), `methods` (the Bot API methods), `markup`
//! (Telegram's formatting and keyboard rules), `world` (state), `transcript` (what a chat shows),
//! `media` (pictures), `payments` (invoices, checkouts and refunds in Telegram Stars), `user`
//! (the person's side), `webhook_delivery` (Telegram pushing updates to a webhook served by
//! several instances behind a load balancer).

mod api;
mod failure;
mod markup;
mod media;
mod methods;
mod params;
mod payments;
mod transcript;
mod user;
pub mod webhook_delivery;
mod world;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};

pub use media::sample_jpeg;
pub use payments::{
    PayOptions, PreCheckout, PreCheckoutState, StarCharge, StarRefund, PRE_CHECKOUT_DEADLINE,
};
pub use transcript::{
    ApiRequest, BotCommand, Button, CallbackAnswer, ChatMessage, Content, Document, Entry, Invoice,
    LabeledPrice, Markup, PhotoSize, PreCheckoutAnswer, RefundedPayment, SuccessfulPayment,
};
pub use user::FakeUser;

use failure::ApiFailure;
use world::World;

/// How long the waiting helpers wait by default: generous, because a rate-limited bot sends about
/// one message per second per chat.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);

/// What can go wrong on the test side of the fake.
#[derive(Debug, thiserror::Error)]
pub enum FakeTelegramError {
    #[error("could not bind the fake Telegram Bot API: {0}")]
    Bind(#[source] std::io::Error),
    #[error("waited {waited:?} for {what}; the chat so far:\n{transcript}")]
    Timeout {
        what: String,
        waited: Duration,
        transcript: String,
    },
    #[error("message {message_id} has no inline button with callback data {callback_data:?}")]
    NoSuchButton {
        message_id: i32,
        callback_data: String,
    },
    #[error("message {message_id} is not an invoice from the bot in this chat")]
    NoSuchInvoice { message_id: i32 },
    #[error("no payment has the charge id {charge_id:?}")]
    NoSuchCharge { charge_id: String },
}

/// A running fake Bot API; it stops when dropped or on [`FakeTelegram::shutdown`].
pub struct FakeTelegram {
    shared: Arc<Shared>,
    addr: SocketAddr,
    api_url: reqwest::Url,
    server: Option<JoinHandle<()>>,
}

/// State shared by the HTTP handlers and the test side.
pub(crate) struct Shared {
    token: String,
    world: Mutex<World>,
    /// Bumped after every change a waiter may care about.
    changes: watch::Sender<u64>,
    /// Bumped after a change to one chat, so a waiting user wakes only for their own chat
    /// (a thousand users must not all wake for every message).
    chat_changes: Mutex<HashMap<i64, watch::Sender<u64>>>,
    shutdown: watch::Sender<bool>,
    http: reqwest::Client,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, World> {
        // A panic elsewhere must not turn every later request into a panic too.
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn read<R>(&self, f: impl FnOnce(&World) -> R) -> R {
        f(&self.lock())
    }

    /// Changes the world and wakes everyone waiting for a change to it or to a chat it touched.
    pub(crate) fn write<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let (result, touched) = {
            let mut world = self.lock();
            let result = f(&mut world);
            (result, std::mem::take(&mut world.touched))
        };
        if !touched.is_empty() {
            let chats = self.chat_signals();
            for chat in touched {
                if let Some(signal) = chats.get(&chat) {
                    signal.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        }
        self.notify();
        result
    }

    fn chat_signals(&self) -> MutexGuard<'_, HashMap<i64, watch::Sender<u64>>> {
        self.chat_changes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the world without waking waiters, for bookkeeping nobody waits on.
    pub(crate) fn write_quietly<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut self.lock())
    }

    pub(crate) fn notify(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Polls `check` after every change until it yields a value or `timeout` passes.
    pub(crate) async fn wait_for<T>(
        &self,
        timeout: Duration,
        check: impl FnMut(&mut World) -> Option<T>,
    ) -> Option<T> {
        self.wait_on(self.subscribe(), timeout, check).await
    }

    /// Polls `check` after every change to chat `chat_id` until it yields a value or `timeout`
    /// passes.
    pub(crate) async fn wait_for_chat<T>(
        &self,
        chat_id: i64,
        timeout: Duration,
        check: impl FnMut(&mut World) -> Option<T>,
    ) -> Option<T> {
        let changes = self
            .chat_signals()
            .entry(chat_id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        self.wait_on(changes, timeout, check).await
    }

    async fn wait_on<T>(
        &self,
        mut changes: watch::Receiver<u64>,
        timeout: Duration,
        mut check: impl FnMut(&mut World) -> Option<T>,
    ) -> Option<T> {
        let waiting = async {
            loop {
                if let Some(found) = check(&mut self.lock()) {
                    return Some(found);
                }
                if changes.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, waiting).await.ok().flatten()
    }
}

impl FakeTelegram {
    /// Serves a fake Bot API on 127.0.0.1 (a free port) that accepts only `token`.
    pub async fn spawn(token: &str) -> Result<Self, FakeTelegramError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(FakeTelegramError::Bind)?;
        let addr = listener.local_addr().map_err(FakeTelegramError::Bind)?;
        let api_url = reqwest::Url::parse(&format!("http://{addr}/"))
            .map_err(|e| FakeTelegramError::Bind(std::io::Error::other(e)))?;
        // A bot token starts with the bot's user id.
        let bot_id = token
            .split(':')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or(1);
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            world: Mutex::new(World::new(bot_id)),
            changes: watch::channel(0).0,
            chat_changes: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
            http: reqwest::Client::new(),
        });
        let app = api::router(shared.clone());
        let mut stop = shared.shutdown.subscribe();
        let server = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::warn!(%error, "fake Telegram Bot API stopped with an error");
            }
        });
        tracing::debug!(%addr, "fake Telegram Bot API listening");
        Ok(Self {
            shared,
            addr,
            api_url,
            server: Some(server),
        })
    }

    /// The base URL to give teloxide: `Bot::new(token).set_api_url(fake.api_url())`.
    pub fn api_url(&self) -> reqwest::Url {
        self.api_url.clone()
    }

    /// The address the fake listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bot's user id (the number before the colon in the token).
    pub fn bot_id(&self) -> i64 {
        self.shared.read(|w| w.bot.id)
    }

    /// Adds a Telegram user with a private chat with the bot, and returns their side of it.
    pub fn user(&self, id: i64, first_name: &str, language_code: &str) -> FakeUser {
        let language = (!language_code.is_empty()).then_some(language_code);
        self.shared.write(|w| w.add_user(id, first_name, language));
        FakeUser::new(self.shared.clone(), id, first_name)
    }

    /// Adds a group chat (`supergroup` if asked) with the bot in it; returns its id, which is
    /// negative as Telegram's group ids are. Users write in it through [`FakeUser::in_group`].
    pub fn group(&self, id: i64, title: &str, supergroup: bool) -> i64 {
        let id = -id.abs();
        let kind = if supergroup { "supergroup" } else { "group" };
        self.shared.write(|w| w.add_group(id, title, kind));
        id
    }

    /// Makes the next call of `method` fail with this error instead of running; e.g.
    /// `fail_next("sendMessage", 429, "Too Many Requests: retry after 1", Some(1))`.
    pub fn fail_next(
        &self,
        method: &str,
        error_code: u16,
        description: &str,
        retry_after: Option<u32>,
    ) {
        let name = methods::canonical_name(method).unwrap_or(method);
        let failure = ApiFailure {
            code: error_code,
            description: description.to_owned(),
            retry_after,
        };
        self.shared.write_quietly(|w| w.add_fault(name, failure));
    }

    /// Every request the bot made, in order (including the long polls).
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.shared.read(|w| w.requests.clone())
    }

    /// The requests of one method, matched regardless of case.
    pub fn requests_of(&self, method: &str) -> Vec<ApiRequest> {
        self.shared.read(|w| {
            w.requests
                .iter()
                .filter(|r| r.method.eq_ignore_ascii_case(method))
                .cloned()
                .collect()
        })
    }

    /// Waits until the bot has called `method` at least `count` times; returns those calls.
    pub async fn wait_for_requests(
        &self,
        method: &str,
        count: usize,
    ) -> Result<Vec<ApiRequest>, FakeTelegramError> {
        let found = self
            .shared
            .wait_for(DEFAULT_WAIT, |w| {
                let calls: Vec<ApiRequest> = w
                    .requests
                    .iter()
                    .filter(|r| r.method.eq_ignore_ascii_case(method))
                    .cloned()
                    .collect();
                (calls.len() >= count).then_some(calls)
            })
            .await;
        found.ok_or_else(|| FakeTelegramError::Timeout {
            what: format!("{count} call(s) of {method}"),
            waited: DEFAULT_WAIT,
            transcript: String::new(),
        })
    }

    /// Waits until the bot has made `more` Bot API calls beyond those it has made so far, or
    /// `at_most` has passed; says whether it made them. Chaos tests time their blows by the
    /// bot's own activity rather than by the clock.
    pub async fn wait_for_more_requests(&self, more: usize, at_most: Duration) -> bool {
        let target = self.shared.read(|w| w.requests.len()) + more;
        self.shared
            .wait_for(at_most, |w| (w.requests.len() >= target).then_some(()))
            .await
            .is_some()
    }

    /// How many distinct updates `getUpdates` has handed to the bot.
    pub fn updates_delivered(&self) -> u64 {
        self.shared.read(|w| w.updates_delivered)
    }

    /// Long polls ended with 409 because another `getUpdates` came: more than zero means two
    /// pollers were running at once.
    pub fn polls_terminated(&self) -> u64 {
        self.shared.read(|w| w.polls_terminated)
    }

    /// Updates queued and not yet confirmed by the bot.
    pub fn updates_pending(&self) -> usize {
        self.shared.read(|w| w.pending_updates())
    }

    /// The webhook URL set with `setWebhook`, if any.
    pub fn webhook_url(&self) -> Option<String> {
        self.shared.read(|w| w.webhook.clone())
    }

    /// The `secret_token` set with the webhook, which each delivery carries in the
    /// `X-Telegram-Bot-Api-Secret-Token` header.
    pub fn webhook_secret_token(&self) -> Option<String> {
        self.shared.read(|w| w.webhook_secret.clone())
    }

    /// Every update queued since the start, in order, as the bot receives it.
    pub fn sent_updates(&self) -> Vec<serde_json::Value> {
        self.shared.read(World::sent_updates)
    }

    /// Every update queued since the start, whether delivered yet or not.
    pub fn updates_queued(&self) -> u64 {
        self.shared.read(World::updates_queued)
    }

    /// Takes up to `limit` queued updates for pushing to the webhook, as Telegram's delivery
    /// side does: they leave the queue (and count as delivered), and whoever took them retries
    /// until the webhook acknowledges each. None while no webhook is set.
    /// [`webhook_delivery::WebhookDelivery`] does this in a loop.
    pub fn take_updates_for_webhook(&self, limit: usize) -> Vec<serde_json::Value> {
        self.shared.write_quietly(|w| w.take_for_webhook(limit))
    }

    /// Waits until a webhook is set and an update waits for it; `false` after `timeout`.
    pub async fn wait_for_webhook_updates(&self, timeout: Duration) -> bool {
        wait_for_webhook_updates(&self.shared, timeout).await
    }

    /// The commands set for the default scope and this language (`""` for all languages).
    pub fn my_commands(&self, language_code: &str) -> Vec<BotCommand> {
        self.shared.read(|w| {
            w.commands
                .get(&format!("default|{language_code}"))
                .cloned()
                .unwrap_or_default()
        })
    }

    /// How long the bot has to answer a pre-checkout query before the payment is cancelled;
    /// Telegram's [`PRE_CHECKOUT_DEADLINE`] unless a test shortens it. Applies to queries sent
    /// from now on and to answers still to come.
    pub fn set_pre_checkout_deadline(&self, deadline: Duration) {
        self.shared
            .write_quietly(|w| w.payments.deadline = deadline);
    }

    /// Every pre-checkout query sent so far, in order, with what became of it.
    pub fn pre_checkouts(&self) -> Vec<PreCheckout> {
        self.shared.read(|w| w.payments.pre_checkouts.clone())
    }

    /// Every payment in Stars that went through, in order.
    pub fn charges(&self) -> Vec<StarCharge> {
        self.shared.read(|w| w.payments.charges.clone())
    }

    /// Every refund the bot made, in order.
    pub fn refunds(&self) -> Vec<StarRefund> {
        self.shared.read(|w| w.payments.refunds.clone())
    }

    /// The bot's Stars: paid minus refunded.
    pub fn star_balance(&self) -> i64 {
        self.shared.read(|w| w.payments.balance())
    }

    /// Delivers the `successful_payment` message of charge `charge_id` once more, in a new
    /// update, as Telegram may: the bot must not credit it twice.
    pub fn redeliver_successful_payment(&self, charge_id: &str) -> Result<(), FakeTelegramError> {
        self.shared
            .write(|w| w.redeliver_successful_payment(charge_id))
    }

    /// Stops serving and waits for open requests (including long polls) to finish.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

pub(crate) async fn wait_for_webhook_updates(shared: &Shared, timeout: Duration) -> bool {
    shared
        .wait_for(timeout, |w| {
            (w.webhook.is_some() && w.pending_updates() > 0).then_some(())
        })
        .await
        .is_some()
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}
