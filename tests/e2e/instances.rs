//! Several `aisha serve` instances on one PostgreSQL database, as production runs them: behind a
//! load balancer in webhook mode, or one polling Telegram while another stands by.
//!
//! Users go through the crash test's story while an instance is killed (SIGKILL) and started
//! again, or while every instance in turn is stopped with SIGTERM and started again (a rolling
//! deploy); the balancer also delivers some updates twice and gives up on some deliveries too
//! soon. Afterwards every update Telegram queued is in the inbox and handled, each user has
//! exactly what their story made — one avatar, ten photos, one training paid to FAL, one
//! generation per prompt, each payment credited once — and heard each step answered once, or
//! once more only where the server logged handling that update again. In polling mode, the
//! standby polls within five seconds of the poller's death. `INSTANCES_USERS` (default 50) sets
//! the size; `INSTANCES_LOGS=DIR` keeps the instances' logs there.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aisha::fal::sim::{JobTiming, RequestKind};
use aisha::fal::{FalSimulator, SimConfig};
use aisha::store::{AvatarStore, Database};
use fake_telegram::webhook_delivery::{
    DeliveryConfig, DeliveryStats, HttpProxy, Instances, WebhookDelivery,
};
use fake_telegram::{FakeTelegram, FakeUser};
use rand::Rng;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;

use crate::crash::{
    after_some_activity, answered, charged_env, check_end_state, count_by, count_texts,
    database_url, env_count, story, Blows, EndState, STEP,
};
use crate::process::{in_webhook_mode, second_instance, tail, Secrets, ServerProcess};

/// Each instance's share of PostgreSQL's 100 connections: three instances and the rest of the
/// suite running beside them fit.
const POOL_PER_INSTANCE: &str = "12";
/// SIGTERM to exit: the process finishes what it holds and is gone within this…
const GRACE_SECS: u64 = 10;
/// …give or take the moment a loaded machine takes to reap it (its own watchdog ends it a
/// second past the grace period).
const EXIT_WITHIN: Duration = Duration::from_secs(GRACE_SECS + 2);
/// The chat lease in the rolling restart: a stop hands over what it holds, so no chat may
/// have to wait for a lease to run out — and a busy machine's late renewal must not pass a
/// chat on either.
const ROLLING_LEASE_SECS: u64 = 30;
/// How soon after the poller's death the standby must poll.
const TAKEOVER_WITHIN: Duration = Duration::from_secs(5);
/// The advisory lock that runs these tests and the crash test one at a time: each starts
/// several servers, and two of them at once on two cores would only measure the machine.
const ONE_AT_A_TIME: i64 = 0x6169_7368_615f_6d69;
/// How long the end waits for what was set off to finish (deliveries, log lines).
const PATIENCE: Duration = Duration::from_secs(60);
/// The photos each story uploads, one message each.
const PHOTOS: u8 = 10;

/// How Telegram's updates reach the instances.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Intake {
    /// Pushed by the fake's delivery side through the balancer, unreliably.
    Webhook,
    /// Long-polled by whichever instance holds the poller role.
    Polling,
}

/// The instances with their fakes, the balancer and the database. Dropped in field order:
/// the servers go first, the guard that lets the next test start goes last.
struct Cluster {
    servers: Vec<ServerProcess>,
    delivery: Option<WebhookDelivery>,
    proxy: HttpProxy,
    instances: Instances,
    telegram: FakeTelegram,
    sim: FalSimulator,
    secrets: Secrets,
    db_url: String,
    _dir: tempfile::TempDir,
    /// Keeps the scratch database in use: sqlx's harness in another test process drops
    /// scratch databases nobody is connected to.
    _hold: PgConnection,
    _one_at_a_time: PgConnection,
}

impl Cluster {
    /// `lease_secs`: how long a chat stays with an instance that stopped renewing its hold.
    async fn start(
        options: &PgConnectOptions,
        count: usize,
        intake: Intake,
        lease_secs: u64,
    ) -> Self {
        let hold = PgConnection::connect_with(options).await.unwrap();
        let waiting = Instant::now();
        let one_at_a_time = one_at_a_time().await;
        eprintln!(
            "waited {:?} for the other instances tests",
            waiting.elapsed()
        );
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets::generate();
        let telegram = FakeTelegram::spawn(&secrets.bot_token).await.unwrap();
        // FAL retries a webhook no instance could take (all restarting) for a long while.
        let sim = FalSimulator::spawn(
            SimConfig::default()
                .with_accepted_key(secrets.fal_key.clone())
                .with_webhook(aisha::fal::sim::WebhookBehaviour {
                    attempts: 40,
                    retry_delay: Duration::from_millis(500),
                    ..Default::default()
                }),
        )
        .await
        .unwrap();
        let db_url = database_url(options);
        let mut env = charged_env(&db_url, &telegram, &sim, dir.path(), &secrets, lease_secs);
        env.insert("SHUTDOWN_GRACE_SECS".into(), GRACE_SECS.to_string());
        env.insert("DATABASE_MAX_CONNECTIONS".into(), POOL_PER_INSTANCE.into());
        let envs: Vec<BTreeMap<String, String>> =
            (0..count).map(|_| second_instance(&env)).collect();
        let instances = Instances::new(envs.iter().map(|e| format!("http://{}", e["HTTP_ADDR"])));
        // The public URL is the balancer's: FAL's webhooks find whichever instance is alive.
        let proxy = HttpProxy::spawn(instances.clone()).await.unwrap();
        let mut servers = Vec::with_capacity(count);
        for (i, env) in envs.into_iter().enumerate() {
            let env = match intake {
                Intake::Webhook => in_webhook_mode(&env, proxy.url()),
                Intake::Polling => {
                    let mut env = env;
                    env.insert("FAL_WEBHOOK_BASE_URL".into(), proxy.url().into());
                    env
                }
            };
            // Kept under INSTANCES_LOGS when set, named by the test's database so that the
            // tests of one run do not write into each other's logs.
            let logs = std::env::var("INSTANCES_LOGS")
                .map(PathBuf::from)
                .unwrap_or_else(|_| dir.path().to_owned());
            let database = db_url.rsplit('/').next().unwrap_or("db");
            let log = logs.join(format!("{database}-instance-{i}.log"));
            servers.push(ServerProcess::start(env, log).await);
        }
        if intake == Intake::Webhook {
            // Set by each instance at its start, before it served anything.
            assert_eq!(
                telegram.webhook_url(),
                Some(format!("{}{}", proxy.url(), aisha::bot::WEBHOOK_PATH))
            );
            assert_eq!(
                telegram.webhook_secret_token(),
                Some(aisha::bot::webhook_secret(&secrets.bot_token))
            );
        }
        let delivery = (intake == Intake::Webhook).then(|| {
            WebhookDelivery::spawn(&telegram, instances.clone(), DeliveryConfig::unreliable())
        });
        Self {
            servers,
            delivery,
            proxy,
            instances,
            telegram,
            sim,
            secrets,
            db_url,
            _dir: dir,
            _hold: hold,
            _one_at_a_time: one_at_a_time,
        }
    }

    /// Every instance's log, one after another.
    fn log(&self) -> String {
        self.servers.iter().map(ServerProcess::log_text).collect()
    }

    /// The end of each instance's log, for a failure message.
    fn log_tails(&self) -> String {
        self.servers
            .iter()
            .enumerate()
            .map(|(i, s)| format!("--- instance {i}:\n{}\n", tail(&s.log_text())))
            .collect()
    }

    fn user(&self, n: usize) -> FakeUser {
        self.telegram
            .user(710_000 + n as i64, &format!("User{n}"), "ru")
            .with_timeout(STEP)
    }

    /// `users` users each going through the crash test's story, looking at the gallery after
    /// every blow until the last.
    fn stories(&self, users: usize, blows: &watch::Receiver<Blows>) -> Stories {
        let mut people = Vec::with_capacity(users);
        let mut tasks = Vec::with_capacity(users);
        for i in 0..users {
            let user = self.user(i);
            people.push(user.clone());
            tasks.push(tokio::spawn(story(user, i, blows.clone())));
        }
        Stories { people, tasks }
    }

    /// Waits for every story; a failed one fails the test with the instances' logs.
    async fn finish(&self, stories: Stories) -> Vec<FakeUser> {
        for task in stories.tasks {
            if let Err(e) = task.await {
                panic!("a story failed: {e}\n{}", self.log_tails());
            }
        }
        stories.people
    }

    /// Waits until the balancer holds no update it has not delivered, and the instances have
    /// nothing left to do; returns what the delivery did.
    async fn settle(&self) -> Option<DeliveryStats> {
        let stats = match &self.delivery {
            Some(delivery) => {
                let stats = eventually("the balancer to deliver every update", || {
                    let stats = delivery.stats();
                    (stats.in_flight() == 0 && stats.taken == self.telegram.updates_queued())
                        .then_some(stats)
                })
                .await;
                Some(stats)
            }
            None => None,
        };
        let db = Database::connect(&self.db_url).await.unwrap();
        crate::support::settle::settle(&db, None).await;
        db.close().await;
        stats
    }

    async fn inbox(&self) -> Vec<InboxRow> {
        let mut conn = PgConnection::connect(&self.db_url).await.unwrap();
        let rows: Vec<(i64, bool, Option<String>, i32)> = sqlx::query_as(
            "SELECT update_id, handled_at IS NOT NULL, outcome, attempts FROM telegram_inbox
             ORDER BY update_id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(update_id, handled, outcome, attempts)| InboxRow {
                update_id,
                handled,
                outcome,
                attempts,
            })
            .collect()
    }
}

struct Stories {
    people: Vec<FakeUser>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

struct InboxRow {
    update_id: i64,
    handled: bool,
    outcome: Option<String>,
    attempts: i32,
}

/// Waits for the other tests of this module to finish: a lock on the main database (the
/// scratch ones are per test), held by the returned connection.
pub(crate) async fn one_at_a_time() -> PgConnection {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL for the instances tests");
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(ONE_AT_A_TIME)
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// Polls `check` until it yields a value; panics after [`PATIENCE`].
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Updates the server logged as handled again after an interruption, by chat.
fn reruns_by_chat(log: &str) -> HashMap<i64, usize> {
    count_by(log, "an interrupted update is handled again", "chat")
}

/// What the webhook tests check at the end: every update the fake queued was acknowledged,
/// is in the inbox once and handled; each user has exactly what their story made and heard
/// each step answered once, or once more where the update was handled again. Returns the
/// updates handled more than once.
async fn check_nothing_lost_nothing_twice(cluster: &Cluster, people: &[FakeUser]) -> usize {
    let stats = cluster.settle().await.expect("webhook delivery");
    let queued = cluster.telegram.updates_queued();
    let every: BTreeSet<i64> = (1..=i64::try_from(queued).unwrap()).collect();
    let acknowledged = cluster.delivery.as_ref().unwrap().acknowledged_ids();
    assert_eq!(
        stats.rejected, 0,
        "updates refused by an instance: {stats:?}"
    );
    assert_eq!(
        acknowledged, every,
        "acknowledged updates vs the {queued} queued ({stats:?})"
    );
    let inbox = cluster.inbox().await;
    let kept: BTreeSet<i64> = inbox.iter().map(|r| r.update_id).collect();
    assert_eq!(kept.len(), inbox.len());
    let missing: Vec<&i64> = every.difference(&kept).collect();
    assert!(
        missing.is_empty() && kept.len() == every.len(),
        "{} of {queued} queued updates in the inbox; missing: {missing:?}",
        kept.len()
    );
    let unhandled: Vec<i64> = inbox
        .iter()
        .filter(|r| !r.handled || r.outcome.as_deref() != Some("handled"))
        .map(|r| r.update_id)
        .collect();
    assert!(
        unhandled.is_empty(),
        "updates not handled (or not handled well): {unhandled:?}"
    );
    // An update can be cut short more than once (killed twice while it was in hand).
    let handled_again: usize = inbox
        .iter()
        .map(|r| usize::try_from(r.attempts - 1).unwrap_or(0))
        .sum();
    // FAL fails nothing here, so no work may have been given up on.
    let mut conn = PgConnection::connect(&cluster.db_url).await.unwrap();
    let failed: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT kind, key, last_error FROM work_items WHERE status = 'failed' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(failed.is_empty(), "work given up on: {failed:#?}");

    let log = cluster.log();
    let checked = check_end_state(EndState {
        db_url: &cluster.db_url,
        telegram: &cluster.telegram,
        sim: &cluster.sim,
        secrets: &cluster.secrets,
        people,
        log: &log,
    })
    .await;

    // Exactly what each story made: no step, re-run or duplicated, made anything twice.
    let db = Database::connect(&cluster.db_url).await.unwrap();
    let store = AvatarStore::new(db.clone());
    let submissions = cluster.sim.submissions();
    let cancelled: BTreeSet<String> = cluster
        .sim
        .requests_of(RequestKind::Cancel)
        .iter()
        .filter_map(|r| r.path.split('/').rev().nth(1).map(str::to_owned))
        .collect();
    let generation_jobs: Vec<JobTiming> = cluster
        .sim
        .job_timings()
        .into_iter()
        .filter(|j| !j.model_id.contains("trainer"))
        .collect();
    let mut jobs_accounted = 0;
    for (i, user) in people.iter().enumerate() {
        let avatars = checked
            .by_owner
            .get(&user.id())
            .cloned()
            .unwrap_or_default();
        assert_eq!(avatars.len(), 1, "user {i}: avatars {avatars:?}");
        let id = avatars[0];
        let history = store.history(id).await.unwrap();
        let count = |t: &str| history.iter().filter(|h| h.event_type == t).count();
        assert_eq!(
            count("PhotoUploaded"),
            usize::from(PHOTOS),
            "user {i}: photos"
        );
        assert_eq!(count("TrainingStarted"), 1, "user {i}: trainings");
        let trigger = store.load(id).await.unwrap().trigger();
        let paid = submissions
            .iter()
            .filter(|s| {
                s.body.as_ref().and_then(|b| b["trigger_phrase"].as_str()) == Some(trigger.as_str())
            })
            .count();
        assert_eq!(paid, 1, "user {i}: training submissions to FAL");
        let prompted = history
            .iter()
            .filter(|h| {
                matches!(
                    &h.event,
                    aggregates::AvatarEvent::GenerationRequested { origin: None, .. }
                )
            })
            .count();
        assert_eq!(prompted, 1, "user {i}: generations for one prompt");

        // Every generation is paid for at most once. A job FAL took is on record in its
        // avatar, or the avatar was deleted while it was being submitted: the avatar refused
        // it and it was cancelled at FAL.
        let deleted = count("AvatarDeleted") > 0;
        for h in &history {
            let aggregates::AvatarEvent::GenerationRequested { generation_id, .. } = &h.event
            else {
                continue;
            };
            let named = format!("generation_id={generation_id}");
            let jobs: Vec<&JobTiming> = generation_jobs
                .iter()
                .filter(|j| j.webhook_url.as_deref().is_some_and(|u| u.contains(&named)))
                .collect();
            let recorded: Vec<&str> = history
                .iter()
                .filter_map(|h| match &h.event {
                    aggregates::AvatarEvent::GenerationSubmitted {
                        generation_id: g,
                        request_id,
                        ..
                    } if g == generation_id => Some(request_id.as_str()),
                    _ => None,
                })
                .collect();
            assert!(
                jobs.len() <= 1 && recorded.len() <= 1,
                "user {i}: generation {generation_id}: {} FAL jobs, {} on record",
                jobs.len(),
                recorded.len()
            );
            if let Some(job) = jobs.first() {
                let on_record = recorded.first() == Some(&job.request_id.as_str());
                assert!(
                    on_record || (deleted && recorded.is_empty() && cancelled.contains(&job.request_id)),
                    "user {i}: generation {generation_id}: FAL job {} neither on record ({recorded:?}) \
                     nor cancelled with its deleted avatar (deleted: {deleted})",
                    job.request_id
                );
            } else {
                assert!(
                    recorded.is_empty(),
                    "user {i}: generation {generation_id}: on record as {recorded:?}, never sent to FAL"
                );
            }
            jobs_accounted += jobs.len();
        }
    }
    assert_eq!(
        jobs_accounted,
        generation_jobs.len(),
        "generation jobs FAL took vs those of the stories' generations"
    );
    db.close().await;

    let reruns = reruns_by_chat(&log);
    assert_eq!(
        reruns.values().sum::<usize>(),
        handled_again,
        "re-runs logged vs updates taken up more than once"
    );
    for (i, user) in people.iter().enumerate() {
        let mut extra = 0;
        let steps = std::iter::once("🎯".to_owned())
            .chain((1..=PHOTOS).map(|n| format!("Фото принято: {n} из")));
        for needle in steps {
            let replies = count_texts(user, &needle);
            assert!(replies >= 1, "user {i}: no reply {needle:?}");
            extra += replies - 1;
        }
        let allowed = reruns.get(&user.id()).copied().unwrap_or(0);
        assert!(
            extra <= allowed,
            "user {i}: {extra} extra replies, {allowed} re-runs logged\n{}",
            user.render_transcript()
        );
    }
    eprintln!(
        "{} users, {queued} updates queued, acknowledged and handled, {handled_again} handled again, \
         {} notifications resent; delivery: {stats:?}; FAL webhooks through the balancer: {} ({} unreachable)",
        people.len(),
        checked.resent.values().sum::<usize>(),
        cluster.proxy.forwarded(),
        cluster.proxy.unreachable(),
    );
    handled_again
}

#[sqlx::test(migrations = false)]
async fn three_instances_behind_a_load_balancer_lose_nothing_and_do_nothing_twice(
    _pool: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let users = env_count("INSTANCES_USERS", 50);
    let mut cluster = Cluster::start(&options, 3, Intake::Webhook, 3).await;
    let (blows, watching) = watch::channel(Blows::default());
    let stories = cluster.stories(users, &watching);

    // The same instance killed twice while the stories run; the balancer finds it gone and
    // retries elsewhere until it is back.
    let victim = rand::thread_rng().gen_range(0..3);
    for _ in 0..2 {
        after_some_activity(&cluster.telegram, 40, 150, Duration::from_secs(5)).await;
        assert!(
            stories.tasks.iter().any(|t| !t.is_finished()),
            "the stories ended before the kill"
        );
        cluster.servers[victim].kill();
        // Down while the others carry on.
        after_some_activity(&cluster.telegram, 5, 30, Duration::from_millis(1500)).await;
        cluster.servers[victim].start_again().await;
        Blows::landed(&blows);
    }
    Blows::over(&blows);
    let people = cluster.finish(stories).await;

    let handled_again = check_nothing_lost_nothing_twice(&cluster, &people).await;
    eprintln!(
        "instance {victim} killed twice; {handled_again} updates handled again; {} starts",
        cluster.servers[victim].starts
    );
}

#[sqlx::test(migrations = false)]
async fn a_rolling_restart_under_load_loses_no_acknowledged_update(
    _pool: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let users = env_count("INSTANCES_USERS", 50);
    let mut cluster = Cluster::start(&options, 3, Intake::Webhook, ROLLING_LEASE_SECS).await;
    let (blows, watching) = watch::channel(Blows::default());
    let stories = cluster.stories(users, &watching);

    // Each instance in turn stopped as a deploy stops it, and started again: while it stops
    // it refuses new updates (503) and the balancer takes it out of rotation once it is gone.
    let mut stopped_in = Vec::new();
    for i in 0..cluster.servers.len() {
        after_some_activity(&cluster.telegram, 30, 100, Duration::from_secs(3)).await;
        assert!(
            stories.tasks.iter().any(|t| !t.is_finished()),
            "the stories ended before the restart of instance {i}"
        );
        let signalled = Instant::now();
        let status = cluster.servers[i].terminate(EXIT_WITHIN).await;
        stopped_in.push(signalled.elapsed());
        assert!(
            status.success(),
            "instance {i} exited with {status} after SIGTERM; log tail:\n{}",
            tail(&cluster.servers[i].log_text())
        );
        cluster.instances.mark_down(i);
        cluster.servers[i].start_again().await;
        cluster.instances.mark_up(i);
        Blows::landed(&blows);
    }
    Blows::over(&blows);
    let people = cluster.finish(stories).await;

    let handled_again = check_nothing_lost_nothing_twice(&cluster, &people).await;
    // A stop that keeps to its grace period leaves nothing half done: no update is taken up
    // twice.
    assert_eq!(
        handled_again, 0,
        "updates handled again after stops that kept to the grace period"
    );
    let log = cluster.log();
    assert!(
        !log.contains("still being handled at the end of the grace period"),
        "a stop ran out of its grace period"
    );
    eprintln!("rolling restart: each instance exited {stopped_in:?} after SIGTERM");
}

#[sqlx::test(migrations = false)]
async fn in_polling_mode_a_standby_takes_over_within_five_seconds(
    _pool: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let users = env_count("INSTANCES_USERS", 50);
    let mut cluster = Cluster::start(&options, 2, Intake::Polling, 3).await;
    const POLLS: &str = "this instance polls Telegram for updates";
    const STANDS_BY: &str = "standby: another instance polls Telegram";
    let poller = eventually("one instance to poll and the other to stand by", || {
        let logs: Vec<String> = cluster.servers.iter().map(|s| s.log_text()).collect();
        let polling: Vec<usize> = (0..logs.len())
            .filter(|i| logs[*i].contains(POLLS))
            .collect();
        let standing_by = (0..logs.len())
            .filter(|i| logs[*i].contains(STANDS_BY))
            .count();
        (polling.len() == 1 && standing_by == 1).then(|| polling[0])
    })
    .await;
    let standby = 1 - poller;
    let people: Vec<FakeUser> = (0..users).map(|i| cluster.user(i)).collect();
    let all = |people: &[FakeUser], command: &'static str, reply: &'static str| {
        let tasks: Vec<_> = people
            .iter()
            .cloned()
            .map(|user| {
                tokio::spawn(async move {
                    answered(&user, command, user.wait_for_bot_text(reply).await);
                })
            })
            .collect();
        for user in people {
            user.send_command(command);
        }
        tasks
    };
    for task in all(&people, "/start", "Привет") {
        task.await.unwrap();
    }

    // Killed mid-poll: updates sent now wait at Telegram until the standby polls.
    let killed_at = Instant::now();
    cluster.servers[poller].kill();
    let dead_at = Instant::now();
    let while_down = all(&people, "/help", "Помощь");
    let first_poll = eventually("a getUpdates after the poller's death", || {
        cluster
            .telegram
            .requests_of("getUpdates")
            .into_iter()
            .map(|r| r.received_at)
            .filter(|at| *at > dead_at)
            .min()
    })
    .await;
    let takeover = first_poll - killed_at;
    assert!(
        takeover <= TAKEOVER_WITHIN,
        "the standby first polled {takeover:?} after the poller's death\n{}",
        cluster.log_tails()
    );
    eventually("the standby to say it polls", || {
        cluster.servers[standby]
            .log_text()
            .contains(POLLS)
            .then_some(())
    })
    .await;
    for task in while_down {
        task.await
            .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tails()));
    }

    // The old poller comes back as the standby; the new one keeps polling.
    let stood_by = cluster.servers[poller]
        .log_text()
        .matches(STANDS_BY)
        .count();
    cluster.servers[poller].start_again().await;
    eventually("the restarted instance to stand by", || {
        (cluster.servers[poller]
            .log_text()
            .matches(STANDS_BY)
            .count()
            > stood_by)
            .then_some(())
    })
    .await;
    for task in all(&people, "/avatars", "пока нет аватаров") {
        task.await.unwrap();
    }

    cluster.settle().await;
    let queued = cluster.telegram.updates_queued();
    let inbox = cluster.inbox().await;
    assert_eq!(inbox.len() as u64, queued, "updates in the inbox vs queued");
    assert!(
        inbox
            .iter()
            .all(|r| r.handled && r.outcome.as_deref() == Some("handled")),
        "an update was not handled"
    );
    let reruns = reruns_by_chat(&cluster.log());
    for (i, user) in people.iter().enumerate() {
        let allowed = reruns.get(&user.id()).copied().unwrap_or(0);
        for needle in ["Привет", "Помощь", "пока нет аватаров"] {
            let replies = count_texts(user, needle);
            assert!(
                (1..=1 + allowed).contains(&replies),
                "user {i}: {replies} replies {needle:?} ({allowed} re-runs logged)\n{}",
                user.render_transcript()
            );
        }
    }
    eprintln!(
        "polling: {users} users, {queued} updates; the standby polled {takeover:?} after the kill"
    );
}
