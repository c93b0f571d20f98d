//! Telegram's send budgets — about one message a second per chat (twenty a minute in groups) and
//! thirty a second overall — kept by reserving each send a slot and releasing it the moment the
//! slot comes, so a reply far from any limit goes out at once.
//!
//! Each budget is a GCRA ("generic cell rate algorithm") bucket: one instant, the theoretical
//! arrival time, per chat and one overall. Telegram allows short bursts over the per-chat rate,
//! so a chat may take a few sends back to back before the one-a-second spacing applies. A 429's
//! `retry_after` holds the chat back for that long.
//!
//! On PostgreSQL the buckets live in the database ([`SharedBudgets`]), so every instance on it counts
//! against the same budgets; a reservation is one round trip. On SQLite (one instance) they are
//! kept in process memory, as they are on PostgreSQL while the database does not answer.

mod shared;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use teloxide::types::ChatId;
use tokio::time::Instant;

use crate::store::Database;
use crate::telemetry;

pub use shared::{Reservation, SharedBudgetError, SharedBudgets};

/// One budget: a send every `every`, with up to `burst` back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub every: Duration,
    pub burst: u32,
}

impl Rate {
    /// `count` sends per `period`, `burst` of them back to back.
    pub const fn per(count: u32, period: Duration, burst: u32) -> Self {
        Self {
            every: Duration::from_nanos((period.as_nanos() / count as u128) as u64),
            burst,
        }
    }

    /// How far ahead of schedule a send may go.
    fn tolerance(&self) -> Duration {
        self.every * self.burst.saturating_sub(1)
    }
}

/// The budgets the bot keeps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimits {
    /// Private chats.
    pub chat: Rate,
    /// Groups, supergroups and channels (negative chat ids).
    pub group: Rate,
    /// Every chat together.
    pub overall: Rate,
}

impl SendLimits {
    /// Telegram's published limits: one message a second in a chat (short bursts tolerated),
    /// twenty a minute in a group, thirty a second in all.
    pub const fn production() -> Self {
        Self {
            chat: Rate::per(1, Duration::from_secs(1), 3),
            group: Rate::per(20, Duration::from_secs(60), 3),
            overall: Rate::per(30, Duration::from_secs(1), 30),
        }
    }

    /// For tests, the offline demo and load runs, whose fake Bot API has no flood control.
    pub const fn relaxed() -> Self {
        Self {
            chat: Rate::per(100, Duration::from_secs(1), 100),
            group: Rate::per(100, Duration::from_secs(1), 100),
            overall: Rate::per(10_000, Duration::from_secs(1), 10_000),
        }
    }

    /// The budget of `chat`: a group's for negative ids, a private chat's otherwise.
    pub fn for_chat(&self, chat: ChatId) -> Rate {
        if chat.0 < 0 {
            self.group
        } else {
            self.chat
        }
    }
}

/// A chat bucket idle this long carries no history and is dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// The longest a reply waits for the database before this instance keeps the budgets itself.
const SHARED_TIMEOUT: Duration = Duration::from_secs(1);
/// After the shared budgets failed, how long this instance keeps its own before trying again
/// (so a database that is down costs one timeout per period, not one per message).
const SHARED_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Which budgets granted a send, as `telegram_sends_granted_total` labels them.
const SHARED: &str = "shared";
const LOCAL: &str = "local";

/// The shared budgets of one bot (handlers and notifier count against the same ones).
#[derive(Debug)]
pub struct SendLimiter {
    inner: Mutex<Buckets>,
    /// Every instance's budgets, on PostgreSQL.
    shared: Option<Shared>,
    /// Messages granted so far, for load runs to read a rate from.
    granted: AtomicU64,
}

#[derive(Debug)]
struct Buckets {
    limits: SendLimits,
    overall: Option<Instant>,
    chats: HashMap<ChatId, Instant>,
    last_sweep: Instant,
}

impl Buckets {
    fn sweep(&mut self, now: Instant) {
        if now.duration_since(self.last_sweep) >= SWEEP_EVERY {
            // A bucket whose schedule is behind `now` is as good as a new one.
            self.chats.retain(|_, tat| *tat > now);
            self.last_sweep = now;
        }
    }
}

#[derive(Debug)]
struct Shared {
    budgets: SharedBudgets,
    health: Mutex<Health>,
}

#[derive(Debug)]
struct Health {
    /// Set when the database failed: until then this instance keeps its own budgets.
    unavailable_until: Option<Instant>,
    last_prune: Instant,
}

impl Shared {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn available(&self, now: Instant) -> bool {
        self.health()
            .unavailable_until
            .is_none_or(|until| now >= until)
    }

    fn answered(&self) {
        let back = self.health().unavailable_until.take().is_some();
        if back {
            tracing::info!("shared Telegram send budgets answer again");
        }
        self.prune_if_due();
    }

    fn failed(&self, op: &'static str, error: &SharedBudgetError) {
        let first = self
            .health()
            .unavailable_until
            .replace(Instant::now() + SHARED_RETRY_AFTER)
            .is_none();
        let error = telemetry::chain(error);
        if first {
            // Until the database answers, each instance keeps the budgets alone: together they
            // may then send more than Telegram allows the bot.
            tracing::warn!(op, %error, retry_in = ?SHARED_RETRY_AFTER, "shared Telegram send budgets unavailable; this instance keeps its own");
        } else {
            tracing::debug!(op, %error, "shared Telegram send budgets still unavailable");
        }
    }

    /// Now and then, deletes the chat rows no longer ahead of the clock (off the send's path).
    fn prune_if_due(&self) {
        {
            let mut health = self.health();
            if health.last_prune.elapsed() < SWEEP_EVERY {
                return;
            }
            health.last_prune = Instant::now();
        }
        let budgets = self.budgets.clone();
        tokio::spawn(async move {
            match budgets.prune().await {
                Ok(pruned) => tracing::debug!(pruned, "idle chats pruned from the send budgets"),
                Err(e) => {
                    tracing::debug!(error = %telemetry::chain(&e), "pruning the send budgets failed")
                }
            }
        });
    }
}

/// Schedules one send of `cost` on a bucket whose theoretical arrival time is `tat`; returns
/// when it may go. (GCRA, virtual scheduling: a send may go `tolerance` ahead of schedule.)
fn schedule(tat: &mut Option<Instant>, rate: Rate, cost: u32, now: Instant) -> Instant {
    let current = tat.map_or(now, |t| t.max(now));
    let cost = cost.max(1);
    let earliest = (current + rate.every * (cost - 1))
        .checked_sub(rate.tolerance())
        .map_or(now, |t| t.max(now));
    *tat = Some(current + rate.every * cost);
    earliest
}

async fn sleep(wait: Duration) {
    // A slot that has come needs no timer (whose tick would cost up to a millisecond).
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

impl SendLimiter {
    /// Budgets kept in process memory: one instance's.
    pub fn new(limits: SendLimits) -> Self {
        Self {
            inner: Mutex::new(Buckets {
                limits,
                overall: None,
                chats: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            shared: None,
            granted: AtomicU64::new(0),
        }
    }

    /// Budgets kept in `pool`'s database, shared with every instance using it.
    pub fn shared(limits: SendLimits, pool: sqlx::PgPool) -> Self {
        Self {
            shared: Some(Shared {
                budgets: SharedBudgets::new(pool),
                health: Mutex::new(Health {
                    unavailable_until: None,
                    last_prune: Instant::now(),
                }),
            }),
            ..Self::new(limits)
        }
    }

    /// Shared budgets on PostgreSQL (several instances), in-process ones on SQLite (one).
    pub fn for_database(limits: SendLimits, db: &Database) -> Self {
        match db {
            Database::Postgres(pool) => Self::shared(limits, pool.clone()),
            Database::Sqlite(_) => Self::new(limits),
        }
    }

    /// The database's budgets, when they are shared.
    pub fn shared_budgets(&self) -> Option<&SharedBudgets> {
        self.shared.as_ref().map(|s| &s.budgets)
    }

    /// Messages this limiter has let go so far (an album counts as its messages).
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }

    fn buckets(&self) -> std::sync::MutexGuard<'_, Buckets> {
        // The state is a handful of instants, valid whatever a panicking holder left.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the budgets; sends already scheduled keep their slots.
    pub fn set_limits(&self, limits: SendLimits) {
        self.buckets().limits = limits;
    }

    /// The budgets in force.
    pub fn limits(&self) -> SendLimits {
        self.buckets().limits
    }

    /// Reserves a slot for `cost` messages to `chat` in the chat's in-process budget; returns
    /// when it comes.
    pub fn reserve_chat(&self, chat: ChatId, cost: u32, now: Instant) -> Instant {
        let mut b = self.buckets();
        b.sweep(now);
        let rate = b.limits.for_chat(chat);
        let mut tat = b.chats.get(&chat).copied();
        let at = schedule(&mut tat, rate, cost, now);
        if let Some(tat) = tat {
            b.chats.insert(chat, tat);
        }
        at
    }

    /// Reserves a slot for `cost` messages in the in-process overall budget; returns when it
    /// comes.
    pub fn reserve_overall(&self, cost: u32, now: Instant) -> Instant {
        let mut b = self.buckets();
        let rate = b.limits.overall;
        schedule(&mut b.overall, rate, cost, now)
    }

    /// Runs `op` on the shared budgets, if there are any and they are answering; `None` means
    /// this instance is to use its own.
    async fn on_shared<'a, T, Fut>(
        &'a self,
        op: &'static str,
        call: impl FnOnce(&'a SharedBudgets) -> Fut,
    ) -> Option<T>
    where
        Fut: Future<Output = Result<T, SharedBudgetError>>,
    {
        let shared = self.shared.as_ref()?;
        if !shared.available(Instant::now()) {
            return None;
        }
        let outcome = tokio::time::timeout(SHARED_TIMEOUT, call(&shared.budgets))
            .await
            .unwrap_or(Err(SharedBudgetError::Timeout(SHARED_TIMEOUT)));
        match outcome {
            Ok(value) => {
                shared.answered();
                Some(value)
            }
            Err(error) => {
                shared.failed(op, &error);
                None
            }
        }
    }

    /// Waits until `cost` messages may go to `chat`: first the chat's slot, then — at that
    /// moment, so a chat queued behind its own budget does not hold a place in everyone
    /// else's — the overall one. On shared budgets a chat whose slot has come takes both in
    /// the same round trip.
    pub async fn acquire(&self, chat: ChatId, cost: u32) {
        let asked = Instant::now();
        let limits = self.limits();
        let reserved = self
            .on_shared("reserve", |b| b.reserve(chat, cost, &limits))
            .await;
        let (chat_wait, overall_wait) = match reserved {
            Some(r) => (r.chat_wait(), r.overall_wait()),
            None => (
                self.reserve_chat(chat, cost, asked).duration_since(asked),
                None,
            ),
        };
        sleep(chat_wait).await;
        let (overall_wait, budgets) = match overall_wait {
            Some(wait) => (wait, SHARED),
            None => match self
                .on_shared("reserve_overall", |b| {
                    b.reserve_overall(cost, limits.overall)
                })
                .await
            {
                Some(r) => (r.overall_wait().unwrap_or_default(), SHARED),
                None => {
                    let now = Instant::now();
                    (self.reserve_overall(cost, now).duration_since(now), LOCAL)
                }
            },
        };
        sleep(overall_wait).await;
        if !chat_wait.is_zero() || !overall_wait.is_zero() {
            telemetry::telegram_send_delayed(asked.elapsed().as_secs_f64());
        }
        self.granted.fetch_add(u64::from(cost), Ordering::Relaxed);
        sends_granted(budgets, cost);
    }

    /// Telegram answered 429 for `chat`: nothing more goes there for `wait` from `now`, from
    /// this instance.
    pub fn hold_off(&self, chat: ChatId, wait: Duration, now: Instant) {
        let mut b = self.buckets();
        b.sweep(now);
        let rate = b.limits.for_chat(chat);
        // The next send is allowed at `tat - tolerance`; put that at `now + wait`.
        let until = now + wait + rate.tolerance();
        let tat = b.chats.entry(chat).or_insert(until);
        *tat = (*tat).max(until);
    }

    /// Telegram answered 429 for `chat`: no instance sends there for `wait` from now. Kept in
    /// process memory too, for the time the database might not answer.
    pub async fn flood_wait(&self, chat: ChatId, wait: Duration) {
        self.hold_off(chat, wait, Instant::now());
        let rate = self.limits().for_chat(chat);
        self.on_shared("hold_off", |b| b.hold_off(chat, wait, rate))
            .await;
    }
}

/// Counts `cost` messages let go by the `budgets` (`shared` or `local`).
fn sends_granted(budgets: &'static str, cost: u32) {
    metrics::counter!("telegram_sends_granted_total", "budgets" => budgets)
        .increment(u64::from(cost));
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: ChatId = ChatId(1001);
    const BORIS: ChatId = ChatId(1002);
    const GROUP: ChatId = ChatId(-100_500);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends `n` messages to `chat` at `now`; the delays from `now` at which each may go. As in
    /// `acquire`, a message due later takes its overall slot only when it is due, which this
    /// leaves out: the overall budget sees only the messages that go at once.
    fn sends(limiter: &SendLimiter, chat: ChatId, n: usize, now: Instant) -> Vec<Duration> {
        (0..n)
            .map(|_| {
                let at = limiter.reserve_chat(chat, 1, now);
                if at == now {
                    limiter.reserve_overall(1, now).duration_since(now)
                } else {
                    at.duration_since(now)
                }
            })
            .collect()
    }

    #[test]
    fn a_chat_far_from_its_budget_sends_at_once() {
        let limiter = SendLimiter::new(SendLimits::production());
        let now = Instant::now();
        assert_eq!(sends(&limiter, ALICE, 1, now), [Duration::ZERO]);
        // A second later the budget has recovered.
        assert_eq!(sends(&limiter, ALICE, 1, now + ms(1000)), [Duration::ZERO]);
    }

    #[test]
    fn a_burst_in_one_chat_is_allowed_then_spaced_a_second_apart() {
        let limiter = SendLimiter::new(SendLimits::production());
        let now = Instant::now();
        assert_eq!(
            sends(&limiter, ALICE, 6, now),
            [
                Duration::ZERO,
                Duration::ZERO,
                Duration::ZERO,
                ms(1000),
                ms(2000),
                ms(3000)
            ]
        );
    }

    #[test]
    fn chats_do_not_wait_for_each_other() {
        let limiter = SendLimiter::new(SendLimits::production());
        let now = Instant::now();
        sends(&limiter, ALICE, 5, now);
        assert_eq!(sends(&limiter, BORIS, 1, now), [Duration::ZERO]);
    }

    #[test]
    fn groups_get_twenty_a_minute() {
        let limiter = SendLimiter::new(SendLimits::production());
        let now = Instant::now();
        let delays = sends(&limiter, GROUP, 23, now);
        assert_eq!(delays[2], Duration::ZERO);
        assert_eq!(delays[3], ms(3000));
        // 3 at once, then one every 3 s: the 23rd goes at 60 s.
        assert_eq!(delays[22], ms(60_000));
    }

    #[test]
    fn thirty_a_second_overall_whatever_the_chats() {
        let limiter = SendLimiter::new(SendLimits::production());
        let now = Instant::now();
        let delays: Vec<Duration> = (0..40)
            .map(|i| {
                let chat = ChatId(2000 + i);
                let at = limiter.reserve_chat(chat, 1, now);
                limiter.reserve_overall(1, at).duration_since(now)
            })
            .collect();
        assert!(delays[..30].iter().all(|d| d.is_zero()), "{delays:?}");
        // From the 31st, one every 1/30 s.
        let every = Rate::per(30, Duration::from_secs(1), 30).every;
        assert_eq!(delays[30], every);
        assert_eq!(delays[39], every * 10);
    }

    #[test]
    fn a_chat_waiting_for_its_own_budget_keeps_no_place_in_the_overall_one() {
        let limiter = SendLimiter::new(SendLimits::production());
        let now = Instant::now();
        // Alice sends three at once; her fourth is due at +1 s and, as `acquire` does, asks
        // for its overall slot only then.
        assert_eq!(sends(&limiter, ALICE, 3, now), [Duration::ZERO; 3]);
        assert_eq!(
            limiter.reserve_chat(ALICE, 1, now).duration_since(now),
            ms(1000)
        );
        // So the other 27 of this second's 30 overall go at once.
        let others: Vec<Duration> = (0..27)
            .map(|i| {
                let chat = ChatId(3000 + i);
                let at = limiter.reserve_chat(chat, 1, now);
                limiter.reserve_overall(1, at).duration_since(now)
            })
            .collect();
        assert!(others.iter().all(|d| d.is_zero()), "{others:?}");
        // And at +1 s Alice's fourth finds the overall budget recovered.
        assert_eq!(limiter.reserve_overall(1, now + ms(1000)), now + ms(1000));
    }

    #[test]
    fn an_album_counts_as_its_messages() {
        let limiter = SendLimiter::new(SendLimits::production());
        let now = Instant::now();
        // Four photos: one more than the burst, so the album waits one interval.
        assert_eq!(
            limiter.reserve_chat(ALICE, 4, now).duration_since(now),
            ms(1000)
        );
        // And the chat's next message waits for the whole album.
        assert_eq!(
            limiter.reserve_chat(ALICE, 1, now).duration_since(now),
            ms(2000)
        );
    }

    #[test]
    fn a_flood_wait_holds_the_chat_back_and_no_other() {
        let limiter = SendLimiter::new(SendLimits::production());
        let now = Instant::now();
        sends(&limiter, ALICE, 1, now);
        limiter.hold_off(ALICE, Duration::from_secs(5), now);
        assert_eq!(sends(&limiter, ALICE, 1, now), [ms(5000)]);
        assert_eq!(sends(&limiter, BORIS, 1, now), [Duration::ZERO]);
        // A shorter wait later never shortens a longer one.
        limiter.hold_off(ALICE, Duration::from_secs(1), now);
        assert!(sends(&limiter, ALICE, 1, now)[0] >= ms(5000));
    }

    #[test]
    fn idle_chats_are_forgotten() {
        let limiter = SendLimiter::new(SendLimits::production());
        let now = Instant::now();
        for i in 0..100 {
            sends(&limiter, ChatId(4000 + i), 1, now);
        }
        assert_eq!(limiter.buckets().chats.len(), 100);
        sends(&limiter, ALICE, 1, now + SWEEP_EVERY + ms(1));
        assert_eq!(limiter.buckets().chats.len(), 1);
    }

    #[test]
    fn relaxed_limits_let_a_test_conversation_run_unhindered() {
        let limiter = SendLimiter::new(SendLimits::production());
        limiter.set_limits(SendLimits::relaxed());
        assert_eq!(limiter.limits(), SendLimits::relaxed());
        let now = Instant::now();
        assert!(sends(&limiter, ALICE, 50, now).iter().all(|d| d.is_zero()));
    }
}
