//! Telegram's send budgets shared by the instances on one PostgreSQL database: two limiters, as
//! two instances would have, keep the overall and the per-chat budget together, a 429 seen by one
//! holds the other back, idle chats are pruned, and SQLite keeps its in-process budgets.
//!
//! The budgets are checked on the schedule the database hands out, in its own clock: in no span
//! of it are more slots than the rate allows (GCRA's promise), however slow this machine is.

use std::time::{Duration, Instant};

use aisha::bot::limiter::{Rate, Reservation};
use aisha::bot::send::sending;
use aisha::bot::{SendLimiter, SendLimits};
use aisha::store::Database;
use fake_telegram::FakeTelegram;
use futures::future::join_all;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use teloxide::prelude::*;

const TOKEN: &str = "626262:shared-budgets-token";
const ALICE: ChatId = ChatId(918_000_001);
const BORIS: ChatId = ChatId(918_000_002);
const GROUP: ChatId = ChatId(-100_918_000_003);

/// Two limiters on the database of `pool`, each with a pool of its own, as two instances have.
async fn two_instances(pool: PgPool, limits: SendLimits) -> (SendLimiter, SendLimiter) {
    let db = Database::Postgres(pool.clone());
    db.migrate().await.expect("migrate postgres");
    let other = PgPoolOptions::new()
        .max_connections(8)
        .connect_with((*pool.connect_options()).clone())
        .await
        .expect("a second pool");
    (
        SendLimiter::for_database(limits, &db),
        SendLimiter::for_database(limits, &Database::Postgres(other)),
    )
}

/// `n` reservations from each limiter, all at once: chat `chat(i)` for the i-th of each.
async fn reserve_from_both(
    a: &SendLimiter,
    b: &SendLimiter,
    n: usize,
    chat: impl Fn(usize) -> ChatId,
) -> Vec<Reservation> {
    let calls = (0..n).flat_map(|i| {
        [a, b].map(|limiter| {
            let chat = chat(i);
            async move {
                limiter
                    .shared_budgets()
                    .expect("shared on PostgreSQL")
                    .reserve(chat, 1, &limiter.limits())
                    .await
                    .expect("reserved")
            }
        })
    });
    join_all(calls).await
}

/// Asserts that no span of `slots` (microseconds) holds more of them than `rate` allows: its
/// burst, and one more for every interval the span is long.
fn assert_within(mut slots: Vec<i64>, rate: Rate, what: &str) {
    slots.sort_unstable();
    let every = rate.every.as_nanos() as i64;
    for (i, first) in slots.iter().enumerate() {
        for (j, last) in slots.iter().enumerate().skip(i) {
            let span_ns = (last - first) * 1000;
            let allowed = i64::from(rate.burst) + span_ns / every;
            let held = (j - i + 1) as i64;
            assert!(
                held <= allowed,
                "{what}: {held} slots within {} µs, the budget allows {allowed}: {slots:?}",
                last - first
            );
        }
    }
}

#[sqlx::test(migrations = false)]
async fn two_instances_together_keep_the_overall_budget(pool: PgPool) {
    let limits = SendLimits::production();
    let (a, b) = two_instances(pool, limits).await;
    // Every chat new, so each send takes its chat's slot and the overall one in one trip.
    let reservations = reserve_from_both(&a, &b, 45, |i| ChatId(5000 + i as i64)).await;
    assert_eq!(reservations.len(), 90);
    let slots: Vec<i64> = reservations
        .iter()
        .map(|r| {
            assert_eq!(r.chat_at_us, r.now_us, "a new chat's slot has come");
            r.overall_at_us
                .expect("overall reserved with the chat's slot")
        })
        .collect();
    // Thirty at once, then one every 1/30 s, whichever instance asked.
    assert_within(slots.clone(), limits.overall, "overall");
    let first = slots.iter().min().unwrap();
    let last = slots.iter().max().unwrap();
    assert!(last - first >= 59 * 33_333, "{slots:?}");
}

#[sqlx::test(migrations = false)]
async fn two_instances_together_grant_the_overall_burst_once(pool: PgPool) {
    // Ten an hour: nothing refills while the test runs, so the count of sends let go at once is
    // exactly the burst — not one burst per instance.
    let limits = SendLimits {
        overall: Rate::per(10, Duration::from_secs(3600), 10),
        ..SendLimits::relaxed()
    };
    let (a, b) = two_instances(pool, limits).await;
    let reservations = reserve_from_both(&a, &b, 15, |i| ChatId(6000 + i as i64)).await;
    let at_once = reservations
        .iter()
        .filter(|r| r.overall_wait() == Some(Duration::ZERO))
        .count();
    assert_eq!(at_once, 10);
    assert_within(
        reservations
            .iter()
            .filter_map(|r| r.overall_at_us)
            .collect(),
        limits.overall,
        "overall",
    );
}

#[sqlx::test(migrations = false)]
async fn two_instances_together_keep_a_chats_budget(pool: PgPool) {
    let limits = SendLimits::production();
    let (a, b) = two_instances(pool, limits).await;
    for (chat, rate) in [(ALICE, limits.chat), (GROUP, limits.group)] {
        let reservations = reserve_from_both(&a, &b, 6, |_| chat).await;
        for r in &reservations {
            // A send held back by its chat keeps no place in the overall budget yet.
            assert_eq!(r.overall_at_us.is_some(), r.chat_at_us == r.now_us, "{r:?}");
        }
        let slots: Vec<i64> = reservations.iter().map(|r| r.chat_at_us).collect();
        assert_within(slots.clone(), rate, &format!("chat {chat}"));
        // Three at once, then one every interval: twelve sends span nine of them.
        let span_ns = (slots.iter().max().unwrap() - slots.iter().min().unwrap()) * 1000;
        assert!(span_ns >= 9 * rate.every.as_nanos() as i64, "{slots:?}");
    }
    // Other chats are not held up by those two.
    let other = reserve_from_both(&a, &b, 1, |i| ChatId(7000 + i as i64)).await;
    assert!(other.iter().all(|r| r.chat_wait().is_zero()), "{other:?}");
}

async fn send(bot: &Bot, limiter: &SendLimiter, chat: ChatId, n: u32) {
    sending(limiter, chat, 1, "sendMessage", || {
        bot.send_message(chat, format!("message {n}")).send()
    })
    .await
    .expect("delivered");
}

/// The same through the fake Bot API: a chat's burst spent on one instance holds the other's
/// message back a second. (Checked only from below, which load cannot break.)
#[sqlx::test(migrations = false)]
async fn messages_from_two_instances_to_one_chat_are_spaced_as_from_one(pool: PgPool) {
    let (a, b) = two_instances(pool, SendLimits::production()).await;
    let fake = FakeTelegram::spawn(TOKEN).await.expect("fake Telegram");
    let bot = Bot::new(TOKEN).set_api_url(fake.api_url());
    let anna = fake.user(ALICE.0, "Anna", "en");
    let chat = ChatId(anna.id());
    let start = Instant::now();
    for n in 1..=3 {
        send(&bot, &a, chat, n).await;
    }
    send(&bot, &b, chat, 4).await;
    let at: Vec<Instant> = fake
        .requests_of("sendMessage")
        .iter()
        .map(|r| r.received_at)
        .collect();
    assert_eq!(at.len(), 4);
    assert!(
        at[3] >= start + Duration::from_secs(1),
        "the other instance's message went within the chat's burst"
    );
    assert_eq!(a.granted() + b.granted(), 4);
    fake.shutdown().await;
}

#[sqlx::test(migrations = false)]
async fn a_flood_wait_seen_by_one_instance_holds_the_other_back(pool: PgPool) {
    let limits = SendLimits::production();
    let (a, b) = two_instances(pool, limits).await;
    let fake = FakeTelegram::spawn(TOKEN).await.expect("fake Telegram");
    let bot = Bot::new(TOKEN).set_api_url(fake.api_url());
    let carla = fake.user(ALICE.0, "Carla", "en");
    let chat = ChatId(carla.id());
    fake.fail_next(
        "sendMessage",
        429,
        "Too Many Requests: retry after 60",
        Some(60),
    );
    // Instance A is refused and waits its minute out (cut short below).
    let a = std::sync::Arc::new(a);
    let refused = tokio::spawn({
        let (a, bot) = (a.clone(), bot.clone());
        async move {
            sending(&a, chat, 1, "sendMessage", || {
                bot.send_message(chat, "first").send()
            })
            .await
        }
    });
    let shared = b.shared_budgets().expect("shared on PostgreSQL");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let wait = shared.chat_wait(chat, limits.chat).await.expect("read");
        if wait > Duration::from_secs(50) {
            break;
        }
        assert!(Instant::now() < deadline, "B never saw A's flood wait");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Instance B now holds the chat back for the rest of the minute, and no other chat.
    let held = shared.reserve(chat, 1, &limits).await.expect("reserved");
    assert!(held.chat_wait() > Duration::from_secs(50), "{held:?}");
    assert!(held.chat_wait() <= Duration::from_secs(61), "{held:?}");
    assert_eq!(held.overall_at_us, None);
    let free = shared.reserve(BORIS, 1, &limits).await.expect("reserved");
    assert_eq!(free.chat_wait(), Duration::ZERO);
    refused.abort();
    assert_eq!(
        fake.requests_of("sendMessage").len(),
        1,
        "nothing retried yet"
    );
    fake.shutdown().await;
}

#[sqlx::test(migrations = false)]
async fn idle_chats_are_pruned_and_chats_are_kept_under_pseudonyms(pool: PgPool) {
    // A chat bucket a microsecond ahead is behind the clock by the next statement.
    let brief = SendLimits {
        chat: Rate::per(1_000_000, Duration::from_secs(1), 1),
        ..SendLimits::production()
    };
    let (a, b) = two_instances(pool.clone(), brief).await;
    let budgets = a.shared_budgets().unwrap();
    budgets.reserve(ALICE, 1, &brief).await.expect("reserved");
    b.shared_budgets()
        .unwrap()
        .hold_off(BORIS, Duration::from_secs(3600), brief.chat)
        .await
        .expect("held off");
    let keys: Vec<String> = sqlx::query_scalar("SELECT chat_key FROM telegram_send_budgets")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2);
    for key in &keys {
        assert!(
            !key.contains("918000001") && !key.contains("918000002"),
            "a chat id in clear: {key}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pruned = 0;
    while pruned == 0 {
        assert!(
            Instant::now() < deadline,
            "Alice's idle bucket was never pruned"
        );
        pruned = budgets.prune().await.expect("pruned");
    }
    assert_eq!(pruned, 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM telegram_send_budgets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
    // Boris, held back, is still held back; Alice starts afresh.
    let boris = budgets.chat_wait(BORIS, brief.chat).await.unwrap();
    assert!(boris > Duration::from_secs(3000), "{boris:?}");
    assert_eq!(
        budgets.chat_wait(ALICE, brief.chat).await.unwrap(),
        Duration::ZERO
    );
}

/// Budgets slow enough that nothing refills while a test runs.
fn hourly() -> SendLimits {
    SendLimits {
        chat: Rate::per(3, Duration::from_secs(3600), 3),
        ..SendLimits::production()
    }
}

#[sqlx::test(migrations = false)]
async fn an_unreachable_database_leaves_each_instance_its_own_budgets(pool: PgPool) {
    Database::Postgres(pool.clone())
        .migrate()
        .await
        .expect("migrate");
    // The database goes away: this instance's pool is closed under it.
    let gone = PgPoolOptions::new().connect_lazy_with((*pool.connect_options()).clone());
    gone.close().await;
    let limiter = SendLimiter::shared(hourly(), gone);
    // An upper bound against hanging, not a timing: the sends go at once.
    tokio::time::timeout(Duration::from_secs(30), async {
        for _ in 0..3 {
            limiter.acquire(ALICE, 1).await;
        }
        limiter.flood_wait(BORIS, Duration::from_secs(60)).await;
    })
    .await
    .expect("sends go on without the database");
    assert_eq!(limiter.granted(), 3);
    // Counted in this instance's own budgets: the chat's burst is spent, the flood wait kept.
    let now = tokio::time::Instant::now();
    assert!(limiter.reserve_chat(ALICE, 1, now) > now);
    assert!(limiter.reserve_chat(BORIS, 1, now) > now + Duration::from_secs(50));
}

#[tokio::test]
async fn sqlite_keeps_its_budgets_in_process() {
    let (db, _dir) = crate::support::sqlite().await;
    let limiter = SendLimiter::for_database(hourly(), &db);
    assert!(limiter.shared_budgets().is_none());
    for _ in 0..3 {
        limiter.acquire(ALICE, 1).await;
    }
    limiter.acquire(BORIS, 2).await;
    assert_eq!(limiter.granted(), 5);
    let now = tokio::time::Instant::now();
    assert!(limiter.reserve_chat(ALICE, 1, now) > now);
}
