//! `settle`: waits until nothing is left to happen on its own, so a test can then assert that
//! nothing more happened — instead of sleeping for a while and hoping that was long enough.

use std::time::Duration;

use aisha::store::feed::Feed;
use aisha::store::Database;
use chrono::Utc;
use db::Arg;
use fake_telegram::FakeTelegram;

/// Work due further ahead than this (a training's deadline, photo retention) is not waited for;
/// work due sooner (a status poller's next look) is.
pub const HORIZON: Duration = Duration::from_secs(5);
/// How long the system may take to become quiet before the test fails with what is still busy.
const PATIENCE: Duration = Duration::from_secs(60);
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// Returns once every feed consumer (read models, reactors, the ledger's) is at the head of its
/// stream, no work item is being worked on or due within a few seconds, and no Telegram update
/// waits — neither at the fake Bot API nor in the inbox. Quiet must be seen twice in a row, a
/// look apart, so a step between two of them is not missed.
pub async fn settle(db: &Database, telegram: Option<&FakeTelegram>) {
    settle_within(db, telegram, HORIZON).await;
}

/// As [`settle`], waiting only for work due within `horizon`: `Duration::ZERO` waits for what
/// has been set off already, not for scheduled looks (for a world where something polls
/// forever, as a FAL job that never ends).
pub async fn settle_within(db: &Database, telegram: Option<&FakeTelegram>, horizon: Duration) {
    let started = tokio::time::Instant::now();
    let feed = Feed::new(db.clone());
    let mut quiet_once = false;
    loop {
        match busy(&feed, telegram, horizon).await {
            None if quiet_once => return,
            None => quiet_once = true,
            Some(what) => {
                quiet_once = false;
                assert!(
                    started.elapsed() < PATIENCE,
                    "never settled: {what} after {PATIENCE:?}"
                );
            }
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// What is still going on, if anything.
async fn busy(feed: &Feed, telegram: Option<&FakeTelegram>, horizon: Duration) -> Option<String> {
    if let Some(pending) = telegram
        .map(FakeTelegram::updates_pending)
        .filter(|n| *n > 0)
    {
        return Some(format!(
            "{pending} updates not yet fetched from the Bot API"
        ));
    }
    let mut expected = projections::names();
    expected.push(aisha::actors::reactors::NAME);
    let consumers = feed.consumers(&expected).await.expect("feed consumers");
    if let Some(behind) = consumers.iter().find(|c| {
        c.lag.events_behind > 0 && !aisha::store::runner::is_rebuild_consumer(&c.consumer)
    }) {
        return Some(format!(
            "{} is {} events behind",
            behind.consumer, behind.lag.events_behind
        ));
    }
    let now = Utc::now();
    let horizon = now + chrono::Duration::from_std(horizon).unwrap();
    let mut conn = feed.database().acquire().await.expect("a connection");
    let work = conn
        .tx()
        .fetch_all(
            "SELECT kind, key, attempts FROM work_items WHERE status = 'pending'
               AND (due_at <= $1 OR claimed_until > $2)",
            vec![Arg::Time(horizon), Arg::Time(now)],
        )
        .await
        .expect("work items");
    if !work.is_empty() {
        let items: Vec<String> = work
            .iter()
            .map(|r| {
                format!(
                    "{} {} (attempt {})",
                    r.get::<String>("kind").unwrap_or_default(),
                    r.get::<String>("key").unwrap_or_default(),
                    r.get::<i64>("attempts").unwrap_or_default()
                )
            })
            .collect();
        return Some(format!("work due or in hand: {}", items.join(", ")));
    }
    let updates = conn
        .tx()
        .fetch_i64(
            "SELECT count(*) FROM telegram_inbox WHERE handled_at IS NULL",
            vec![],
        )
        .await
        .expect("the inbox")
        .unwrap_or(0);
    (updates > 0).then(|| format!("{updates} Telegram updates waiting in the inbox"))
}
