//! The crash test: `aisha serve` as a real process on PostgreSQL, with the FAL simulator and the
//! fake Telegram Bot API in this process, while users go through the whole story and the server
//! is killed with SIGKILL at random moments and restarted. Afterwards: every avatar is in the
//! state its user's actions lead to, every user heard "ready" exactly once per trained avatar and
//! got one reply per generation, no training was submitted to FAL twice, and `aisha audit verify`
//! passes. `CRASH_USERS` (default 50) and `CRASH_KILLS` (default 10) set the size.
//!
//! Halfway through, a second instance starts on the same database and the first is paused
//! (SIGSTOP) for longer than its work lease, then resumed: the second takes its work over, and
//! still no FAL job is paid twice and none is left without an owner.
//!
//! Credits are charged throughout (half the users buy a pack first) and FAL fails one job in
//! twenty: at the end no credits are held, every charge Telegram took is credited once, and each
//! account spent exactly what was delivered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aggregates::AvatarStatus;
use aisha::fal::{FalSimulator, SimConfig};
use aisha::store::{AvatarStore, Database};
use chrono::{DateTime, Utc};
use fake_telegram::{sample_jpeg, ChatMessage, Entry, FakeTelegram, FakeUser};
use rand::Rng;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::watch;
use uuid::Uuid;

use crate::process::{second_instance, tail, Secrets, ServerProcess, WORK_LEASE_SECS};

/// How long one step may wait for its reply: a kill, the restart and the chat's lease running
/// out all fit in it. Users never repeat a step: what the bot was handling when it died is
/// handled after the restart.
pub(crate) const STEP: Duration = Duration::from_secs(60);

pub(crate) fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `step`'s outcome, or a failure that shows the user's chat.
pub(crate) fn answered<T, E: std::fmt::Debug>(
    user: &FakeUser,
    what: &str,
    step: Result<T, E>,
) -> T {
    step.unwrap_or_else(|e| {
        panic!(
            "{what}: never answered ({e:?}); the chat:\n{}",
            user.render_transcript()
        )
    })
}

fn button(message: &ChatMessage, prefix: &str) -> Option<String> {
    message
        .buttons()
        .filter_map(|b| b.callback_data.clone())
        .find(|d| d.starts_with(prefix))
}

async fn press_and_see(
    user: &FakeUser,
    message: &ChatMessage,
    data: &str,
    needle: &str,
) -> ChatMessage {
    answered(
        user,
        &format!("press {data}"),
        user.press_button(message.message_id, data),
    );
    let edited = user
        .wait_for_edit(message.message_id, |m| {
            m.text().is_some_and(|t| t.contains(needle))
        })
        .await;
    answered(user, &format!("press {data}"), edited)
}

/// The bot's messages, newest first, each as it is now (after edits).
fn bot_messages_newest_first(user: &FakeUser) -> impl Iterator<Item = ChatMessage> + '_ {
    let ids: Vec<i32> = user
        .transcript()
        .iter()
        .filter_map(|e| match e {
            Entry::Bot(m) => Some(m.message_id),
            _ => None,
        })
        .collect();
    ids.into_iter().rev().filter_map(|id| user.message(id))
}

/// The newest bot message that has a button starting with `prefix`.
fn latest_with_button(user: &FakeUser, prefix: &str) -> Option<ChatMessage> {
    bot_messages_newest_first(user).find(|m| button(m, prefix).is_some())
}

pub(crate) fn count_texts(user: &FakeUser, needle: &str) -> usize {
    user.transcript()
        .iter()
        .filter(|e| matches!(e, Entry::Bot(m) if m.text().is_some_and(|t| t.contains(needle))))
        .count()
}

fn count_photos(user: &FakeUser) -> usize {
    photos_in(&user.transcript())
}

fn photos_in(entries: &[Entry]) -> usize {
    entries
        .iter()
        .filter(|e| matches!(e, Entry::Bot(m) if m.photo().is_some()))
        .count()
}

/// What the side dealing the blows (kills, pauses, restarts) tells the users.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Blows {
    /// Blows dealt so far.
    pub landed: u32,
    /// The last blow has been dealt: browsing may stop.
    pub done: bool,
}

impl Blows {
    /// Tells every user a blow has landed (the server is back).
    pub fn landed(sender: &watch::Sender<Blows>) {
        sender.send_modify(|b| b.landed += 1);
    }

    /// Tells every user the blows are over.
    pub fn over(sender: &watch::Sender<Blows>) {
        sender.send_modify(|b| b.done = true);
    }
}

/// Waits until the bot has made between `min` and `max` more Bot API calls (at most
/// `at_most`): chaos timed by the system's own activity, so a blow lands while it is busy.
pub(crate) async fn after_some_activity(
    telegram: &FakeTelegram,
    min: usize,
    max: usize,
    at_most: Duration,
) {
    let calls = rand::thread_rng().gen_range(min..=max);
    telegram.wait_for_more_requests(calls, at_most).await;
}

/// Freezes `server` (SIGSTOP) while it holds a lease (a work item's claim or a chat's) and
/// thaws it once every lease it held has run out by the database's clock and the bot has been
/// seen at work again (the other instance taking over).
async fn pause_past_the_lease(
    server: &ServerProcess,
    options: &PgConnectOptions,
    telegram: &FakeTelegram,
) {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect_with(options)
        .await
        .unwrap();
    // Leases are taken and given back all the time; one is seen within moments while the
    // stories run. If none is, the pause still outlives every lease that could be held.
    for _ in 0..250 {
        if leases_held_until(&mut conn).await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.pause();
    let until = leases_held_until(&mut conn).await.unwrap_or_else(Utc::now)
        + chrono::Duration::milliseconds(100);
    loop {
        let past: bool = sqlx::query_scalar("SELECT now() > $1")
            .bind(until)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        if past {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    after_some_activity(telegram, 5, 20, Duration::from_secs(WORK_LEASE_SECS)).await;
    server.resume();
}

/// When the last lease held right now runs out, by the database's clock; `None` when none is.
async fn leases_held_until(conn: &mut sqlx::PgConnection) -> Option<DateTime<Utc>> {
    sqlx::query_scalar(
        "SELECT greatest(
             (SELECT max(claimed_until) FROM work_items WHERE claimed_until > now()),
             (SELECT max(lease_until) FROM telegram_chat_leases WHERE lease_until > now()))",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

/// One user's whole story, each step done once, then a look at the gallery after every blow
/// until the last has landed (so every kill lands while users are busy, however fast the
/// stories go, and the gallery is seen to answer after each restart).
pub(crate) async fn story(user: FakeUser, index: usize, mut blows: watch::Receiver<Blows>) {
    let user = user.with_timeout(STEP);
    let name = format!("Crash{index}");
    // Create: /new → portrait → female → name.
    user.send_command("/new");
    let types = answered(&user, "/new", user.wait_for_bot_text("🎯").await);
    let genders = press_and_see(&user, &types, "t:p", "👤").await;
    press_and_see(&user, &genders, "g:p:f", "📝").await;
    user.send_text(&name);
    answered(&user, "the name", user.wait_for_bot_text("создан").await);

    // Ten photos, one by one, each answered with its count.
    for n in 0..10u8 {
        let bytes = sample_jpeg(600, 600, (index as u8).wrapping_mul(31).wrapping_add(n * 7));
        user.send_photo(bytes);
        let accepted = format!("Фото принято: {} из", n + 1);
        answered(&user, &accepted, user.wait_for_bot_text(&accepted).await);
    }

    // Every other user buys a pack of credits first; whatever a kill interrupts, Telegram's
    // charges and the ledger must agree at the end.
    if index % 2 == 1 {
        user.send_command("/buy");
        let packs = answered(
            &user,
            "/buy",
            user.wait_for_bot_text("Выберите пакет").await,
        );
        let data = button(&packs, "bp:").expect("a pack to buy");
        answered(&user, "a pack", user.press_button(packs.message_id, &data));
        let invoice = answered(&user, "the invoice", user.wait_for_invoice().await);
        let query = answered(&user, "paying", user.pay(invoice.message_id));
        let outcome = answered(
            &user,
            "the payment",
            user.wait_for_payment_outcome(&query).await,
        );
        assert!(
            matches!(outcome, fake_telegram::PreCheckoutState::Approved { .. }),
            "the payment was not approved: {outcome:?}"
        );
    }

    // Train (fast) and wait for the outcome; a training FAL failed is started again from the
    // failure's own button, as a user would.
    let mut train_from = latest_with_button(&user, "tr:").expect("a train button");
    for attempt in 1.. {
        assert!(attempt <= 5, "the training never succeeded");
        let data = button(&train_from, "tr:").expect("a train button");
        let presets = press_and_see(&user, &train_from, &data, "🚀").await;
        let start = button(&presets, "ts:f:").expect("the fast preset");
        answered(&user, "fast", user.press_button(presets.message_id, &start));
        let outcome = user
            .wait_for_bot_message(|m| {
                m.text()
                    .is_some_and(|t| t.contains("готов!") || t.contains("Не удалось обучить"))
            })
            .await;
        let outcome = answered(&user, "the training", outcome);
        if outcome.text().is_some_and(|t| t.contains("готов!")) {
            break;
        }
        train_from = if button(&outcome, "tr:").is_some() {
            outcome
        } else {
            latest_with_button(&user, "tr:").expect("a train button after a failure")
        };
    }

    // One generation with the balanced preset.
    let photos_before = count_photos(&user);
    let ready = latest_with_button(&user, "ge:").expect("a generate button");
    let data = button(&ready, "ge:").expect("a generate button");
    let menu = press_and_see(&user, &ready, &data, "Выберите пресет").await;
    let balanced = button(&menu, "gp:b:").expect("the balanced preset");
    press_and_see(&user, &menu, &balanced, "Опишите изображение").await;
    user.send_text("в парке на закате");
    let picture = user
        .wait_until(|entries| photos_in(entries) > photos_before)
        .await;
    answered(&user, "the picture", picture);

    // Every other user deletes the avatar.
    if index % 2 == 0 {
        user.send_command("/avatars");
        let gallery = answered(
            &user,
            "/avatars",
            user.wait_for_bot_text("Мои аватары").await,
        );
        let card_data = gallery
            .buttons()
            .find(|b| b.text.contains(&name))
            .and_then(|b| b.callback_data.clone())
            .expect("the avatar in the gallery");
        let card = press_and_see(&user, &gallery, &card_data, "Тип:").await;
        let delete = button(&card, "d:").expect("a delete button");
        let confirm = press_and_see(&user, &card, &delete, "Подтверждение удаления").await;
        let yes = button(&confirm, "avatar_delete_confirm:").expect("a confirm button");
        let query = answered(&user, "delete", user.press_button(confirm.message_id, &yes));
        let answer = answered(
            &user,
            "the deletion",
            user.wait_for_callback_answer(&query).await,
        );
        assert!(
            answer.text.as_deref().is_some_and(|t| t.contains("удалён")),
            "the deletion was not confirmed: {answer:?}"
        );
    }

    while !blows.borrow_and_update().done {
        user.send_command("/avatars");
        let gallery = user
            .wait_for_bot_message(|m| {
                m.text()
                    .is_some_and(|t| t.contains("Мои аватары") || t.contains("пока нет аватаров"))
            })
            .await;
        answered(&user, "/avatars", gallery);
        if blows.changed().await.is_err() {
            break;
        }
    }
}

pub(crate) fn database_url(options: &PgConnectOptions) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL for the crash test");
    let base = base.split('?').next().unwrap_or_default();
    let root = base.rsplit_once('/').map_or(base, |(root, _)| root);
    format!("{root}/{}", options.get_database().unwrap_or("postgres"))
}

/// The servers' settings for the stories: paid work is charged (every training and image
/// reserves credits, and a reservation a kill orphaned is given back after a few seconds), and a
/// chat whose holder stopped renewing it goes on elsewhere after `chat_lease_secs`.
pub(crate) fn charged_env(
    db_url: &str,
    telegram: &FakeTelegram,
    sim: &FalSimulator,
    dir: &std::path::Path,
    secrets: &Secrets,
    chat_lease_secs: u64,
) -> std::collections::BTreeMap<String, String> {
    let mut env = ServerProcess::env(
        db_url,
        telegram.api_url().as_str(),
        sim,
        &dir.join("photos"),
        secrets,
    );
    for (name, value) in [
        ("PAYMENTS", "stars".to_owned()),
        ("WELCOME_CREDITS", "500".to_owned()),
        ("ORPHAN_RESERVATION_SECS", "3".to_owned()),
        ("TELEGRAM_CHAT_LEASE_SECS", chat_lease_secs.to_string()),
    ] {
        env.insert(name.into(), value);
    }
    env
}

#[sqlx::test(migrations = false)]
async fn crash_test_nothing_lost_and_everything_heard_once(
    _pool: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let users = env_count("CRASH_USERS", 50);
    let kills = env_count("CRASH_KILLS", 10);
    // Held for the whole test: sqlx's test harness in another test process drops scratch
    // databases that nobody is connected to, which this one is for a moment after each kill.
    let _hold = <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)
        .await
        .unwrap();
    // Not beside the several-instances tests: their servers and these would share two cores.
    let _one_at_a_time = crate::instances::one_at_a_time().await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = Secrets::generate();
    let telegram = FakeTelegram::spawn(&secrets.bot_token).await.unwrap();
    // FAL retries a webhook that finds no one listening (a killed server) for a long while.
    let sim = FalSimulator::spawn(
        SimConfig::default()
            .with_accepted_key(secrets.fal_key.clone())
            // Some trainings and images fail on FAL's side: their credits must come back.
            .with_failure_rate(0.05)
            .with_webhook(aisha::fal::sim::WebhookBehaviour {
                attempts: 40,
                retry_delay: Duration::from_millis(500),
                ..Default::default()
            }),
    )
    .await
    .unwrap();
    let db_url = database_url(&options);
    // A chat the killed process was handling goes on after the restart within 3 s.
    let env = charged_env(&db_url, &telegram, &sim, dir.path(), &secrets, 3);
    let log_path = std::env::var("CRASH_LOG")
        .map(Into::into)
        .unwrap_or_else(|_| dir.path().join("server.log"));
    let second_env = second_instance(&env);
    let mut server = ServerProcess::start(env, log_path.clone()).await;

    let finished = Arc::new(AtomicUsize::new(0));
    let (blows, watching) = watch::channel(Blows::default());
    let mut stories = Vec::new();
    let mut people = Vec::new();
    for i in 0..users {
        let user = telegram
            .user(700_000 + i as i64, &format!("User{i}"), "ru")
            .with_timeout(STEP);
        people.push(user.clone());
        let finished = finished.clone();
        let watching = watching.clone();
        stories.push(tokio::spawn(async move {
            story(user, i, watching).await;
            finished.fetch_add(1, Ordering::SeqCst);
        }));
    }

    // Kill at random moments while the stories run (at least `kills` times): after a random
    // number of the bot's calls, so each blow lands in the middle of its work.
    let mut killed = 0;
    let mut paused = false;
    while killed < kills || finished.load(Ordering::SeqCst) < users {
        after_some_activity(&telegram, 5, 60, Duration::from_secs(3)).await;
        if killed == kills / 2 && !paused {
            paused = true;
            // A second instance on the same database (it stands by for the Telegram poller
            // role), then the first frozen past its lease while the second takes its work.
            let mut second = ServerProcess::start(second_env.clone(), log_path.clone()).await;
            pause_past_the_lease(&server, &options, &telegram).await;
            // Both side by side for a while, the first finding its claims taken.
            server.wait_healthy().await;
            after_some_activity(&telegram, 10, 40, Duration::from_secs(WORK_LEASE_SECS)).await;
            second.kill();
            Blows::landed(&blows);
            continue;
        }
        if killed < kills {
            server.restart().await;
            killed += 1;
            Blows::landed(&blows);
        } else {
            Blows::over(&blows);
        }
        if stories.iter().all(|s| s.is_finished()) {
            break;
        }
    }
    Blows::over(&blows);
    for s in stories {
        s.await.unwrap_or_else(|e| {
            panic!(
                "a story failed: {e}\nserver log tail:\n{}",
                tail(&server.log_text())
            )
        });
    }
    assert!(killed >= kills, "killed {killed} times");

    let log = server.log_text();
    let checked = check_end_state(EndState {
        db_url: &db_url,
        telegram: &telegram,
        sim: &sim,
        secrets: &secrets,
        people: &people,
        log: &log,
    })
    .await;
    let resent: usize = checked.resent.values().sum();
    eprintln!(
        "crash test: {users} users, {killed} kills, one pause past the lease beside a second instance, {} server starts, {resent} notifications resent, {} FAL jobs",
        server.starts,
        sim.request_ids().len()
    );
    server.kill();
}

/// A finished run of [`story`] against `aisha serve`, to check.
pub(crate) struct EndState<'a> {
    pub db_url: &'a str,
    pub telegram: &'a FakeTelegram,
    pub sim: &'a FalSimulator,
    pub secrets: &'a Secrets,
    /// The users, in the order of their story's index.
    pub people: &'a [FakeUser],
    /// Every server process's log.
    pub log: &'a str,
}

/// What [`check_end_state`] found, for further checks.
pub(crate) struct Checked {
    /// Every avatar created, by owner.
    pub by_owner: HashMap<i64, Vec<Uuid>>,
    /// Notifications logged as sent again, by owner.
    pub resent: HashMap<i64, usize>,
}

/// Every avatar is in the state its user's story leads to, every outcome was heard once (or
/// once more where a resend was logged), no FAL job was paid twice or left without an owner,
/// every account's credits add up, `aisha audit verify` passes and no secret reached the log.
pub(crate) async fn check_end_state(run: EndState<'_>) -> Checked {
    let db = Database::connect(run.db_url).await.unwrap();
    // The last notifications out, every consumer at the head, before anything is counted.
    crate::support::settle::settle(&db, Some(run.telegram)).await;
    let store = AvatarStore::new(db.clone());
    let Database::Postgres(pool) = &db else {
        unreachable!()
    };
    let created: Vec<String> =
        sqlx::query_scalar("SELECT aggregate_id FROM events WHERE event_type = 'AvatarCreated'")
            .fetch_all(pool)
            .await
            .unwrap();
    // Whose avatar is whose: the history says so while the avatar lives; a deleted avatar's owner
    // is erased with its key, so its buttons in a user's chat tell instead.
    let mut by_owner: HashMap<i64, Vec<Uuid>> = HashMap::new();
    for id in created {
        let id: Uuid = id.parse().unwrap();
        let history = store.history(id).await.unwrap();
        let owner = match history.first().map(|h| &h.event) {
            Some(aggregates::AvatarEvent::AvatarCreated { owner, .. }) if *owner != 0 => *owner,
            _ => run
                .people
                .iter()
                .find(|user| {
                    user.transcript().iter().any(|entry| match entry {
                        fake_telegram::Entry::Bot(m) => m.buttons().any(|b| {
                            b.callback_data
                                .as_deref()
                                .and_then(|d| aisha::bot::callbacks::Callback::parse(d).ok())
                                .and_then(|c| c.avatar_id())
                                == Some(id)
                        }),
                        _ => false,
                    })
                })
                .map(|user| user.id())
                .unwrap_or_else(|| panic!("avatar {id} belongs to no user of the test")),
        };
        by_owner.entry(owner).or_default().push(id);
    }

    // Telegram offers no way to send exactly once: a kill after Telegram took a notification
    // and before it was marked sent makes the server send it again. Each such resend is logged
    // (and counted) with its owner; a message beyond one per outcome must be one of those.
    let resent = resends_by_owner(run.log);

    let submissions = run.sim.submissions();
    // Every job FAL ran is recorded in its avatar, or was cancelled: none without an owner.
    let mut recorded = std::collections::HashSet::new();
    let mut generations_requested = 0;
    for id in by_owner.values().flatten() {
        for entry in store.history(*id).await.unwrap() {
            match entry.event {
                aggregates::AvatarEvent::TrainingSubmitted { request_id, .. }
                | aggregates::AvatarEvent::GenerationSubmitted { request_id, .. } => {
                    recorded.insert(request_id);
                }
                aggregates::AvatarEvent::GenerationRequested { .. } => generations_requested += 1,
                _ => {}
            }
        }
    }
    let cancelled: std::collections::HashSet<String> = run
        .sim
        .requests_of(aisha::fal::sim::RequestKind::Cancel)
        .iter()
        .filter_map(|r| r.path.split("/requests/").nth(1))
        .filter_map(|rest| rest.split('/').next().map(str::to_owned))
        .collect();
    let orphans: Vec<String> = run
        .sim
        .request_ids()
        .into_iter()
        .filter(|r| !recorded.contains(r) && !cancelled.contains(r))
        .collect();
    assert!(orphans.is_empty(), "FAL jobs without an owner: {orphans:?}");
    let generation_submissions = submissions
        .iter()
        .filter(|s| s.model_id().is_some_and(|m| !m.contains("trainer")))
        .count();
    assert!(
        generation_submissions <= generations_requested,
        "{generation_submissions} generation submissions for {generations_requested} requests"
    );
    for (i, user) in run.people.iter().enumerate() {
        let avatars = by_owner.get(&user.id()).cloned().unwrap_or_default();
        let resent_here = resent.get(&user.id()).copied().unwrap_or(0);
        let mut trained_ever = 0;
        let mut generations = 0;
        let mut finals = Vec::new();
        for id in &avatars {
            let history = store.history(*id).await.unwrap();
            let count = |t: &str| history.iter().filter(|h| h.event_type == t).count();
            trained_ever += count("TrainingCompleted");
            generations += count("GenerationCompleted") + count("GenerationFailed");
            let state = store.load(*id).await.unwrap();
            // Trainings started for this avatar vs. paid submissions carrying its trigger.
            let trigger = state.trigger();
            let paid = submissions
                .iter()
                .filter(|s| {
                    s.body.as_ref().and_then(|b| b["trigger_phrase"].as_str())
                        == Some(trigger.as_str())
                })
                .count();
            assert!(
                paid <= count("TrainingStarted"),
                "avatar {id}: {paid} submissions for {} trainings",
                count("TrainingStarted")
            );
            finals.push(state.status);
        }
        // The user's own avatar ends trained (or deleted, for every other user); avatars a crash
        // made the user create twice never got further than photos.
        let expected = if i % 2 == 0 {
            AvatarStatus::Deleted
        } else {
            AvatarStatus::Trained
        };
        assert_eq!(
            finals.iter().filter(|s| **s == expected).count(),
            1,
            "user {i}: {finals:?}"
        );
        assert!(
            finals
                .iter()
                .all(|s| *s == expected || *s == AvatarStatus::Draft),
            "user {i}: {finals:?}"
        );
        let ready = count_texts(user, "готов!");
        assert!(
            (trained_ever..=trained_ever + resent_here).contains(&ready),
            "user {i}: {ready} 'ready' messages for {trained_ever} trainings ({resent_here} logged resends)\n{}",
            user.render_transcript()
        );
        // One reply (the images, or a failure message) per generation; for a user who deleted
        // the avatar, replies still due after the deletion are rightly held back, but the user
        // only deleted after seeing the first one.
        let replies = count_photos(user) + count_texts(user, "Не удалось создать изображение");
        if expected == AvatarStatus::Deleted {
            assert!(
                (1..=generations + resent_here).contains(&replies),
                "user {i}: {replies} replies for {generations} generations\n{}",
                user.render_transcript()
            );
        } else {
            assert!(
                (generations..=generations + resent_here).contains(&replies),
                "user {i}: {replies} replies for {generations} generations ({resent_here} logged resends)\n{}",
                user.render_transcript()
            );
        }
    }

    // Every user's credits: nothing held any more, each paid charge credited once, and exactly
    // the delivered trainings (20 each) and images (1 each) spent.
    let accounts = aisha::store::accounts::AccountStore::new(db.clone());
    for (i, user) in run.people.iter().enumerate() {
        let charges: Vec<_> = run
            .telegram
            .charges()
            .into_iter()
            .filter(|c| c.user_id == user.id())
            .collect();
        let mut account = accounts.load(user.id()).await.unwrap();
        for _ in 0..200 {
            if account.reserved() == 0 && account.purchases.len() == charges.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            account = accounts.load(user.id()).await.unwrap();
        }
        assert_eq!(
            account.reserved(),
            0,
            "user {i}: credits still held: {account:#?}"
        );
        assert_eq!(
            account.purchases.len(),
            charges.len(),
            "user {i}: {} charges, {} purchases recorded",
            charges.len(),
            account.purchases.len()
        );
        // The starter samples come with the training's price.
        let mut delivered = 0u64;
        for id in by_owner.get(&user.id()).into_iter().flatten() {
            let mut free = std::collections::HashSet::new();
            for entry in store.history(*id).await.unwrap() {
                delivered += match entry.event {
                    aggregates::AvatarEvent::GenerationRequested {
                        generation_id,
                        origin: Some(aggregates::Origin::Starter { .. }),
                        ..
                    } => {
                        free.insert(generation_id);
                        0
                    }
                    aggregates::AvatarEvent::TrainingCompleted { .. } => 20,
                    aggregates::AvatarEvent::GenerationCompleted { generation_id, .. }
                        if !free.contains(&generation_id) =>
                    {
                        1
                    }
                    _ => 0,
                };
            }
        }
        assert_eq!(
            account.spent, delivered,
            "user {i}: spent vs delivered: {account:#?}"
        );
        let bought: u64 = account
            .purchases
            .values()
            .map(|p| u64::from(p.credits))
            .sum();
        assert_eq!(account.available(), 500 + bought - delivered, "user {i}");
    }

    // The read models agree with a replay of every avatar (and every ledger with its events).
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_aisha"))
        .args(["audit", "verify"])
        .env("DATABASE_URL", run.db_url)
        .env("DATA_KEY", &run.secrets.data_key)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "audit verify: {}\n{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    // And across all those restarts and debug logs, no secret was ever written out.
    for secret in run.secrets.needles() {
        assert!(
            !run.log.contains(&secret),
            "a secret reached the server log"
        );
    }
    db.close().await;
    Checked { by_owner, resent }
}

/// How many notifications the server logged as sent again, by owner.
pub(crate) fn resends_by_owner(log: &str) -> HashMap<i64, usize> {
    count_by(log, "an earlier delivery was cut short", "owner")
}

/// How many log lines with `message` there are for each value of their numeric `field`.
pub(crate) fn count_by(log: &str, message: &str, field: &str) -> HashMap<i64, usize> {
    let key = format!("{field}=");
    let mut counts = HashMap::new();
    for line in log.lines().filter(|l| l.contains(message)) {
        let plain = strip_ansi(line);
        let value = plain
            .split_once(&key)
            .and_then(|(_, rest)| {
                rest.split(|c: char| !c.is_ascii_digit() && c != '-')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("a line without its {field}: {plain}"));
        *counts.entry(value).or_default() += 1;
    }
    counts
}

/// The text of a log line without its colour codes.
fn strip_ansi(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters final-letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}
