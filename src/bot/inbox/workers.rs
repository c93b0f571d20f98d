//! The workers that handle the inbox: each takes a chat nobody holds, handles its waiting updates
//! in order through the bot's handler tree, and lets it go when none waits. Chats run in parallel
//! (one worker each); a chat whose holder died or stalled past its lease is taken over, and its
//! interrupted update handled again.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use teloxide::dispatching::UpdateHandler;
use teloxide::prelude::*;
use teloxide::types::Update;
use tokio::sync::watch;

use super::intake::Wake;
use super::{scope, Claim, Inbox, Outcome, MAX_WAITING};
use crate::bot::{send, texts, BotDeps, BotError, TgBot};

/// How often one idle worker looks for updates other instances stored (or leases that ran
/// out); the rest look rarely, and are woken by arrivals and by each other.
const IDLE_LOOK: Duration = Duration::from_millis(250);
const IDLE_LOOK_OTHERS: Duration = Duration::from_secs(5);
/// How often a chat held for an album's summary looks for the album's next photo.
const ALBUM_HOLD: Duration = Duration::from_millis(100);
/// Claims one instance runs at once; PostgreSQL flushes their commits together.
const CLAIMS_AT_ONCE: usize = 4;
/// At most one "slow down" per chat in this long.
const SLOW_DOWN_EVERY: Duration = Duration::from_secs(60);
/// How often handled updates older than a day are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// What every worker shares.
pub struct Handling {
    pub inbox: Inbox,
    pub handler: UpdateHandler<BotError>,
    /// The handler tree's dependencies, without the update.
    pub deps: DependencyMap,
    pub bot: TgBot,
    pub bot_deps: Arc<BotDeps>,
    pub wake: Wake,
    told: Mutex<HashMap<i64, Instant>>,
    /// A few claims at a time per instance: idle workers all asking at once would each hold a
    /// database connection for nothing, and one at a time caps the chats taken up a second at
    /// one commit's worth (a busy bot's every update is a chat taken up).
    claiming: tokio::sync::Semaphore,
}

impl Handling {
    pub fn new(
        inbox: Inbox,
        handler: UpdateHandler<BotError>,
        deps: DependencyMap,
        bot: TgBot,
        bot_deps: Arc<BotDeps>,
        wake: Wake,
    ) -> Arc<Self> {
        Arc::new(Self {
            inbox,
            handler,
            deps,
            bot,
            bot_deps,
            wake,
            told: Mutex::new(HashMap::new()),
            claiming: tokio::sync::Semaphore::new(CLAIMS_AT_ONCE),
        })
    }
}

/// Runs `count` workers and the pruner until `stop`; each finishes the update in hand first.
pub fn spawn(
    handling: Arc<Handling>,
    count: usize,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks: Vec<_> = (0..count.max(1))
        .map(|n| {
            let idle = if n == 0 { IDLE_LOOK } else { IDLE_LOOK_OTHERS };
            tokio::spawn(work(handling.clone(), idle, stop.clone()))
        })
        .collect();
    tasks.push(tokio::spawn(prune(handling.inbox.clone(), stop)));
    tasks
}

async fn work(h: Arc<Handling>, idle: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let claimed = {
            let _few_at_a_time = h.claiming.acquire().await;
            h.inbox.claim().await
        };
        match claimed {
            Ok(Some(claim)) => {
                // More chats may be waiting: let another worker look while this one works.
                h.wake.arrived(1);
                run_chat(&h, claim, &stop).await
            }
            Ok(None) => {
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => return,
                    () = h.wake.wait(idle) => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::chain(&e), "could not look for Telegram updates");
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Handles the held chat's updates until none waits, the fence is lost, or the instance stops.
async fn run_chat(h: &Arc<Handling>, claim: Claim, stop: &watch::Receiver<bool>) {
    let lost = Arc::new(AtomicBool::new(false));
    let keeper = tokio::spawn(keep_lease(h.inbox.clone(), claim, lost.clone()));
    let result = chat_loop(h, claim, stop, &lost).await;
    keeper.abort();
    if let Err(e) = result {
        tracing::warn!(chat = claim.chat, error = %crate::telemetry::chain(&e),
            "a chat's updates could not be handled; its lease runs out and another worker goes on");
    }
}

async fn chat_loop(
    h: &Arc<Handling>,
    claim: Claim,
    stop: &watch::Receiver<bool>,
    lost: &AtomicBool,
) -> Result<(), super::InboxError> {
    loop {
        if lost.load(Ordering::Acquire) {
            tracing::warn!(
                chat = claim.chat,
                fence = claim.fence,
                "another instance holds this chat now"
            );
            return Ok(());
        }
        if *stop.borrow() {
            // Stopping: whatever waits is handed to another instance at once.
            return h.inbox.release(claim).await;
        }
        let skipped = skip_excess(h, claim).await?;
        let Some(taken) = h.inbox.take(claim).await? else {
            if h.bot_deps.albums.open_in(claim.chat) {
                // The rest of an album is on its way: keep the chat, so its summary is one.
                tokio::time::sleep(ALBUM_HOLD).await;
                continue;
            }
            if h.inbox.release_if_idle(claim).await? || !h.inbox.renew(claim).await? {
                return Ok(());
            }
            continue;
        };
        let update: Update = match serde_json::from_str(&taken.body) {
            Ok(update) => update,
            Err(e) => {
                tracing::error!(update_id = taken.update_id, chat = claim.chat, error = %crate::telemetry::chain(&e),
                    "a stored update is not readable; it is dropped");
                h.inbox
                    .finish(claim, taken.update_id, Outcome::Failed, false)
                    .await?;
                continue;
            }
        };
        if skipped > 0 {
            slow_down(h, claim.chat, &update, skipped);
        }
        if taken.attempt > 1 {
            tracing::warn!(
                update_id = taken.update_id,
                chat = claim.chat,
                attempt = taken.attempt,
                "an interrupted update is handled again"
            );
            metrics::counter!("telegram_updates_handled_again_total").increment(1);
        }
        let outcome = dispatch(h, update, taken.update_id, taken.attempt).await;
        metrics::counter!("telegram_updates_total", "outcome" => outcome.as_str()).increment(1);
        if h.inbox
            .finish(claim, taken.update_id, outcome, false)
            .await?
            == 0
        {
            // Another holder (after a pause past the lease), or the chat was erased meanwhile.
            tracing::warn!(
                update_id = taken.update_id,
                chat = claim.chat,
                "an update finished here was no longer ours to mark"
            );
            return Ok(());
        }
    }
}

/// Runs one update through the handler tree, in its own task so a panic costs only the update.
async fn dispatch(h: &Arc<Handling>, update: Update, update_id: i64, attempt: i32) -> Outcome {
    let mut deps = h.deps.clone();
    deps.insert(update);
    let handling = h.clone();
    let task = tokio::spawn(scope::within(update_id, attempt, async move {
        handling.handler.dispatch(deps).await
    }));
    match task.await {
        Ok(ControlFlow::Break(Ok(()))) | Ok(ControlFlow::Continue(_)) => Outcome::Handled,
        Ok(ControlFlow::Break(Err(e))) => {
            // The handler has told the user already where it could.
            tracing::error!(update_id, error = %crate::telemetry::chain(&e),
                "Telegram update handling failed");
            Outcome::Handled
        }
        Err(e) => {
            tracing::error!(update_id, error = %crate::telemetry::chain(&e), "a Telegram update's handler panicked");
            Outcome::Failed
        }
    }
}

/// Marks a flooding chat's updates beyond the one in hand and [`MAX_WAITING`] behind it as
/// skipped; returns how many.
async fn skip_excess(h: &Handling, claim: Claim) -> Result<u64, super::InboxError> {
    let waiting = h.inbox.waiting(claim, MAX_WAITING + 2).await?;
    if waiting.len() <= MAX_WAITING + 1 {
        return Ok(0);
    }
    let last_kept = waiting[MAX_WAITING];
    let skipped = h
        .inbox
        .finish(claim, last_kept, Outcome::Skipped, true)
        .await?;
    metrics::counter!("telegram_updates_total", "outcome" => Outcome::Skipped.as_str())
        .increment(skipped);
    Ok(skipped)
}

/// Tells a flooding user, at most once a minute, that some of what they sent was not handled.
fn slow_down(h: &Arc<Handling>, chat: i64, update: &Update, skipped: u64) {
    let due = {
        let mut told = h.told.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        told.retain(|_, at| now.duration_since(*at) < SLOW_DOWN_EVERY);
        match told.entry(chat) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(now);
                true
            }
        }
    };
    tracing::warn!(
        chat,
        skipped,
        "a chat is flooding the bot; dropping its excess updates"
    );
    if !due {
        return;
    }
    let lang = texts::Lang::from_code(update.from().and_then(|u| u.language_code.as_deref()));
    let (bot, deps) = (h.bot.clone(), h.bot_deps.clone());
    let chat = ChatId(chat);
    tokio::spawn(async move {
        let text = lang.texts().slow_down();
        let _ = send::sending(&deps.limiter, chat, 1, "sendMessage", || {
            bot.send_message(chat, text.clone()).send()
        })
        .await;
    });
}

/// Renews the lease while the chat is held; sets `lost` when another holder took it.
async fn keep_lease(inbox: Inbox, claim: Claim, lost: Arc<AtomicBool>) {
    let every = (inbox.lease() / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        match inbox.renew(claim).await {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::Release);
                return;
            }
            Err(e) => {
                tracing::warn!(chat = claim.chat, error = %crate::telemetry::chain(&e),
                    "could not renew a chat's lease")
            }
        }
    }
}

async fn prune(inbox: Inbox, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
        match inbox.prune().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "old handled Telegram updates pruned"),
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::chain(&e), "could not prune the Telegram inbox")
            }
        }
    }
}
