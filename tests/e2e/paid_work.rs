//! Paid FAL work runs exactly once and nothing stays stuck, tried the way an incident would:
//! a worker paused past its lease while another instance takes over, a submission the avatar
//! refuses, database failures under the status poller, a lost watch item, a panicking handler,
//! and a process killed while its training submit is in flight.
//!
//! Instances here are whole applications on one database, talking real HTTP to one standalone
//! FAL simulator (whose request log is the record of what was paid for).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregates::{
    Action, Actor, AvatarEvent, AvatarStatus, AvatarType, Command, Gender, TrainingPreset,
};
use aisha::actors::notify::NotifyError;
use aisha::actors::training::TrainingHandler;
use aisha::actors::work::{enqueue, WorkQueue};
use aisha::actors::{ActorSettings, Notification, Notifier, WorkHandler};
use aisha::app::{AppOptions, Application};
use aisha::config::{Config, FalMode, FalSettings};
use aisha::fal::sim::{Fault, RequestKind, WebhookBehaviour};
use aisha::fal::{FalSimulator, SimConfig};
use aisha::photos::PhotoStore;
use aisha::store::{AvatarStore, Database, StoreError};
use chrono::Utc;
use futures::future::BoxFuture;
use tempfile::TempDir;
use uuid::Uuid;

use crate::process::free_port;

const OWNER: i64 = 31337;
const FAL_KEY: &str = "paid-work-key";

/// Runs `async fn name(url: String)` on a fresh SQLite file and on a fresh PostgreSQL database.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}", dir.path().join("aisha.db").display());
                    super::$name(url).await;
                }
            )*
        }
        mod postgres {
            $(
                #[sqlx::test(migrations = false)]
                async fn $name(pool: sqlx::PgPool) {
                    super::$name(super::postgres_url(&pool)).await;
                }
            )*
        }
    };
}

on_both_databases!(
    a_worker_paused_past_its_lease_changes_nothing_and_fal_is_paid_once,
    a_submission_the_avatar_refuses_is_cancelled_exactly_once,
    without_its_watch_item_a_training_still_ends_at_the_deadline,
    a_panicking_handler_is_retried_and_keeps_its_worker_whole,
    a_generation_running_when_its_avatar_is_deleted_is_cancelled,
    a_generation_past_its_deadline_is_failed_cancelled_and_told,
);

pub fn postgres_url(pool: &sqlx::PgPool) -> String {
    let o = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or("postgres")
    )
}

/// Records every notification; optionally panics on the first delivery of each.
#[derive(Default)]
struct Inbox {
    seen: Mutex<Vec<Notification>>,
    panic_first: bool,
    attempted: Mutex<HashSet<String>>,
}

impl Notifier for Inbox {
    fn notify<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let key = format!("{n:?}");
            if self.panic_first && self.attempted.lock().unwrap().insert(key) {
                panic!("the notifier broke on its first try");
            }
            self.seen.lock().unwrap().push(n.clone());
            Ok(())
        })
    }
}

impl Inbox {
    fn all(&self) -> Vec<Notification> {
        self.seen.lock().unwrap().clone()
    }
}

/// One running application (an "instance") on a shared database and simulator.
struct Instance {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Instance {
    async fn start(
        db_url: &str,
        sim: &FalSimulator,
        photos: &std::path::Path,
        settings: ActorSettings,
        inbox: Arc<Inbox>,
    ) -> Self {
        let port = free_port();
        let mut config = Config::offline(db_url, photos);
        config.fal = FalSettings {
            key: Some(FAL_KEY.into()),
            mode: Some(FalMode::Live),
            queue_url: sim.queue_url().into(),
            rest_url: sim.rest_url().into(),
            jwks_url: sim.jwks_url().into(),
            platform_url: sim.platform_url().into(),
            webhook_base_url: Some(format!("http://127.0.0.1:{port}").into()),
            ..config.fal
        };
        config.http.addr = format!("127.0.0.1:{port}").parse().unwrap();
        let options = AppOptions {
            actor_settings: settings,
            simulator: SimConfig::default(),
            notifier: Some(inbox),
        };
        let app = Application::build(config, options).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// The database, photo store and simulator the instances of one test share.
struct World {
    url: String,
    db: Database,
    store: AvatarStore,
    photos: PhotoStore,
    photos_dir: TempDir,
    sim: FalSimulator,
    inbox: Arc<Inbox>,
}

impl World {
    async fn new(url: String, sim: SimConfig) -> Self {
        Self::with_inbox(url, sim, Inbox::default()).await
    }

    async fn with_inbox(url: String, sim: SimConfig, inbox: Inbox) -> Self {
        let db = Database::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        let photos_dir = tempfile::tempdir().unwrap();
        let sim = FalSimulator::spawn(sim.with_accepted_key(FAL_KEY))
            .await
            .unwrap();
        Self {
            url,
            store: AvatarStore::new(db.clone()),
            photos: PhotoStore::local(photos_dir.path()).unwrap(),
            db,
            photos_dir,
            sim,
            inbox: Arc::new(inbox),
        }
    }

    async fn instance(&self, settings: ActorSettings) -> Instance {
        Instance::start(
            &self.url,
            &self.sim,
            self.photos_dir.path(),
            settings,
            self.inbox.clone(),
        )
        .await
    }

    async fn run(&self, id: Uuid, by: Actor, action: Action) {
        self.store
            .execute(id, Command::new(by, Utc::now(), action), Uuid::new_v4())
            .await
            .unwrap();
    }

    /// A portrait avatar with ten real, stored photos, training asked for.
    async fn training_asked_for(&self) -> Uuid {
        let id = Uuid::new_v4();
        let user = Actor::User(OWNER);
        self.run(
            id,
            user.clone(),
            Action::Create {
                avatar_id: id,
                name: "Оплата".into(),
                gender: Gender::Female,
                avatar_type: AvatarType::Portrait,
            },
        )
        .await;
        for n in 0..10u8 {
            let bytes = fake_telegram::sample_jpeg(640, 640, n.wrapping_mul(29));
            let checked = aisha::photos::inspect(&bytes).unwrap();
            let photo_id = format!("ph{n}");
            let key = aisha::photos::photo_key(id, &photo_id, checked.format);
            self.photos.put(&key, bytes).await.unwrap();
            self.run(
                id,
                user.clone(),
                Action::UploadPhoto {
                    photo: checked.photo_meta(&photo_id, &key),
                },
            )
            .await;
        }
        self.run(
            id,
            user,
            Action::StartTraining {
                training_id: Uuid::new_v4(),
                preset: TrainingPreset::Fast,
                style: Default::default(),
            },
        )
        .await;
        id
    }

    async fn events(&self, id: Uuid) -> Vec<AvatarEvent> {
        self.store
            .history(id)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.event)
            .collect()
    }

    async fn status(&self, id: Uuid) -> AvatarStatus {
        self.store.load(id).await.unwrap().status
    }

    /// Trainer submissions the simulator received (each one is a paid job).
    fn paid_trainings(&self) -> usize {
        self.sim
            .submissions()
            .iter()
            .filter(|s| s.model_id().is_some_and(|m| m.contains("trainer")))
            .count()
    }

    fn cancels(&self) -> usize {
        self.sim.requests_of(RequestKind::Cancel).len()
    }

    /// Submitted requests nobody recorded in an avatar and nobody cancelled.
    async fn orphans(&self, avatars: &[Uuid]) -> Vec<String> {
        let mut recorded = HashSet::new();
        for id in avatars {
            for e in self.events(*id).await {
                match e {
                    AvatarEvent::TrainingSubmitted { request_id, .. }
                    | AvatarEvent::GenerationSubmitted { request_id, .. } => {
                        recorded.insert(request_id);
                    }
                    _ => {}
                }
            }
        }
        let cancelled: HashSet<String> = self
            .sim
            .requests_of(RequestKind::Cancel)
            .iter()
            .filter_map(|r| r.path.split("/requests/").nth(1))
            .filter_map(|rest| rest.split('/').next())
            .map(str::to_owned)
            .collect();
        self.sim
            .request_ids()
            .into_iter()
            .filter(|r| !recorded.contains(r) && !cancelled.contains(r))
            .collect()
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The train item the reactor would enqueue for the avatar's `TrainingStarted`.
async fn enqueue_training(world: &World, id: Uuid) {
    let history = world.store.history(id).await.unwrap();
    let started = history
        .iter()
        .find(|h| h.event_type == "TrainingStarted")
        .unwrap();
    let AvatarEvent::TrainingStarted {
        endpoint, params, ..
    } = &started.event
    else {
        unreachable!()
    };
    let payload = aisha::actors::training::TrainPayload {
        endpoint: endpoint.clone(),
        params: params.clone(),
    };
    let mut conn = world.db.acquire().await.unwrap();
    enqueue(
        &mut conn.tx(),
        "train",
        &format!("train:{id}:{}", started.sequence),
        id,
        &payload,
        Utc::now(),
    )
    .await
    .unwrap();
}

/// Instance A claims the training and then stalls (no heartbeat: a SIGSTOP, a starved CPU)
/// past its lease; instance B takes the item over and submits. When A wakes up and carries on
/// from where it stopped, nothing it does changes anything: FAL saw one paid submission, no
/// job is left without an owner, and the queue refuses every change A tries.
async fn a_worker_paused_past_its_lease_changes_nothing_and_fal_is_paid_once(url: String) {
    let world = World::new(url, SimConfig::default()).await;
    let id = world.training_asked_for().await;
    enqueue_training(&world, id).await;

    // A: claims with a one-second lease, then "freezes" (no heartbeat, no progress).
    let queue_a = WorkQueue::new(world.db.clone());
    let stale = queue_a
        .claim("train", Duration::from_secs(1))
        .await
        .unwrap()
        .expect("A claims the training");

    // B: a whole instance, started while A is frozen.
    let b = world.instance(ActorSettings::fast()).await;
    let trained = eventually(
        "B to finish the training",
        Duration::from_secs(30),
        || async { (world.status(id).await == AvatarStatus::Trained).then_some(()) },
    )
    .await;
    let _ = trained;

    // A wakes up and carries on: its handler, its paid step, its outcome.
    let a_services = services_like_b(&world).await;
    let handler = TrainingHandler {
        services: a_services,
    };
    let resumed = handler.run(&stale).await;
    assert!(
        matches!(
            resumed,
            Ok(aisha::actors::Outcome::Done) | Err(StoreError::ClaimLost)
        ),
        "{resumed:?}"
    );
    assert!(matches!(
        queue_a
            .enter_once(&stale, "submitting", Duration::from_secs(5))
            .await,
        Err(StoreError::ClaimLost)
    ));
    assert!(matches!(
        queue_a.complete(&stale).await,
        Err(StoreError::ClaimLost)
    ));
    assert!(matches!(
        queue_a.fail(&stale, "A thinks it failed").await,
        Err(StoreError::ClaimLost)
    ));

    assert_eq!(world.paid_trainings(), 1, "one paid submission");
    assert_eq!(world.cancels(), 0);
    assert!(world.orphans(&[id]).await.is_empty());
    // B's outcome stands (it may be recorded a moment after the webhook completed the avatar).
    eventually("B's outcome", Duration::from_secs(10), || async {
        (queue_a.count("train", "done").await.ok()? == 1).then_some(())
    })
    .await;
    let ready = || {
        world
            .inbox
            .all()
            .iter()
            .filter(|n| matches!(n, Notification::TrainingCompleted { .. }))
            .count()
    };
    eventually("the ready message", Duration::from_secs(10), || async {
        (ready() >= 1).then_some(())
    })
    .await;
    settle(&world).await;
    assert_eq!(ready(), 1);
    b.stop().await;
}

/// Services as an instance builds them, for a worker the test drives by hand.
async fn services_like_b(world: &World) -> aisha::actors::Services {
    let fal = aisha::fal::FalClient::new(
        aisha::fal::FalClientConfig::new(
            world.sim.queue_url(),
            world.sim.rest_url(),
            Some(FAL_KEY.into()),
        )
        .with_platform_url(world.sim.platform_url()),
    )
    .unwrap();
    aisha::actors::Services {
        store: Arc::new(AvatarStore::new(world.db.clone())),
        queue: WorkQueue::new(world.db.clone()),
        fal,
        photos: world.photos.clone(),
        notifier: world.inbox.clone(),
        progress: Arc::new(aisha::actors::NoProgress),
        webhooks: aisha::actors::WebhookTargets::load(&world.db, Some("http://127.0.0.1:9".into()))
            .await
            .unwrap(),
        settings: ActorSettings::fast(),
        starter: aisha::packs::StarterPlan::off(),
        refunds: std::sync::Arc::new(aisha::actors::refund::NoStarRefunds),
        accounts: Arc::new(aisha::store::accounts::AccountStore::new(world.db.clone())),
        charging: false,
    }
}

/// FAL accepts the training, but before its answer arrives the user deletes the avatar: the
/// avatar refuses the submission, and the paid job that nothing owns is cancelled — once.
async fn a_submission_the_avatar_refuses_is_cancelled_exactly_once(url: String) {
    let world = World::new(url, SimConfig::default().paused()).await;
    // FAL takes the job at once but holds its answer back.
    world.sim.fail_next(
        RequestKind::Submit,
        &[Fault::stall(Duration::from_millis(1500))],
    );
    let instance = world.instance(ActorSettings::fast()).await;
    let id = world.training_asked_for().await;
    eventually(
        "the submission to reach FAL",
        Duration::from_secs(20),
        || async { (world.paid_trainings() == 1).then_some(()) },
    )
    .await;
    world.run(id, Actor::User(OWNER), Action::Delete).await;

    eventually(
        "the orphaned job's cancel",
        Duration::from_secs(20),
        || async { (world.cancels() >= 1).then_some(()) },
    )
    .await;
    settle(&world).await;
    assert_eq!(world.cancels(), 1, "exactly one cancel");
    assert_eq!(world.paid_trainings(), 1);
    let events = world.events(id).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, AvatarEvent::TrainingSubmitted { .. })),
        "the refused submission is not recorded"
    );
    instance.stop().await;
}

/// The work queue has nothing left to do: no pending item is due.
async fn settle(world: &World) {
    eventually(
        "the work queue to settle",
        Duration::from_secs(20),
        || async {
            let mut conn = world.db.acquire().await.ok()?;
            let due = conn
                .tx()
                .fetch_i64(
                    "SELECT count(*) FROM work_items WHERE status = 'pending' AND kind <> 'watch'",
                    vec![],
                )
                .await
                .ok()??;
            (due == 0).then_some(())
        },
    )
    .await;
}

/// A training whose watch item is deleted outright (webhooks lost too) still ends at the
/// deadline: the training fails, the FAL job is cancelled, and the user is told.
async fn without_its_watch_item_a_training_still_ends_at_the_deadline(url: String) {
    let sim = SimConfig::default()
        .paused()
        .with_webhook(WebhookBehaviour {
            drop_rate: 1.0,
            ..WebhookBehaviour::default()
        });
    let world = World::new(url, sim).await;
    let settings = ActorSettings {
        training_deadline: Duration::from_secs(3),
        ..ActorSettings::fast()
    };
    let instance = world.instance(settings).await;
    let id = world.training_asked_for().await;
    eventually("the watch item", Duration::from_secs(20), || async {
        let mut conn = world.db.acquire().await.ok()?;
        let n = conn
            .tx()
            .execute("DELETE FROM work_items WHERE kind = 'watch'", vec![])
            .await
            .ok()?;
        (n > 0).then_some(())
    })
    .await;

    let told = eventually("the user to hear", Duration::from_secs(30), || async {
        world
            .inbox
            .all()
            .into_iter()
            .find(|n| matches!(n, Notification::TrainingFailed { .. }))
    })
    .await;
    assert!(
        matches!(&told, Notification::TrainingFailed { reason, .. } if reason.contains("no result")),
        "{told:?}"
    );
    assert_eq!(world.status(id).await, AvatarStatus::TrainingFailed);
    eventually("the cancel", Duration::from_secs(20), || async {
        (world.cancels() == 1).then_some(())
    })
    .await;
    assert_eq!(world.paid_trainings(), 1);
    instance.stop().await;
}

/// A notifier that panics on the first try of every message: each message is retried and
/// delivered, and the worker keeps all its slots (more panics than it has slots).
async fn a_panicking_handler_is_retried_and_keeps_its_worker_whole(url: String) {
    let inbox = Inbox {
        panic_first: true,
        ..Inbox::default()
    };
    let world = World::with_inbox(url, SimConfig::default(), inbox).await;
    let count = 20; // the notifier runs 8 at a time
    let mut conn = world.db.acquire().await.unwrap();
    for n in 0..count {
        let avatar_id = Uuid::new_v4();
        let notification = Notification::TrainingFailed {
            owner: OWNER,
            avatar_id,
            reason: format!("reason {n}"),
        };
        enqueue(
            &mut conn.tx(),
            "notify",
            &format!("notify:{avatar_id}:1"),
            avatar_id,
            &notification,
            Utc::now(),
        )
        .await
        .unwrap();
    }
    drop(conn);
    let instance = world.instance(ActorSettings::fast()).await;
    eventually("every message", Duration::from_secs(30), || async {
        (world.inbox.all().len() >= count).then_some(())
    })
    .await;
    settle(&world).await;
    assert_eq!(world.inbox.all().len(), count, "each once");
    let queue = WorkQueue::new(world.db.clone());
    assert_eq!(queue.count("notify", "done").await.unwrap(), count as i64);
    instance.stop().await;
}

/// The status poller meets ten database failures spread over about fifty polls (the avatar's
/// tables vanish for a moment, as in a failover) and still delivers the result.
#[sqlx::test(migrations = false)]
async fn the_status_poller_survives_transient_database_failures(pool: sqlx::PgPool) {
    let sim = SimConfig::default()
        .paused()
        .with_webhook(WebhookBehaviour {
            drop_rate: 1.0,
            ..WebhookBehaviour::default()
        });
    let world = World::new(postgres_url(&pool), sim).await;
    let settings = ActorSettings {
        status_poll_after: Duration::from_millis(100),
        status_poll_every: Duration::from_millis(100),
        ..ActorSettings::fast()
    };
    let instance = world.instance(settings).await;
    let id = world.training_asked_for().await;
    let polls = || world.sim.requests_of(RequestKind::Status).len();
    eventually("the first poll", Duration::from_secs(20), || async {
        (polls() > 0).then_some(())
    })
    .await;

    let last_error = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT last_error FROM work_items WHERE kind = 'watch'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    for _ in 0..10 {
        let before = polls();
        eventually("four healthy polls", Duration::from_secs(20), || async {
            (polls() >= before + 4).then_some(())
        })
        .await;
        sqlx::query("UPDATE work_items SET last_error = NULL WHERE kind = 'watch'")
            .execute(&pool)
            .await
            .unwrap();
        // The poller loads the avatar through its snapshot table: take it away for a moment.
        sqlx::query("ALTER TABLE snapshots RENAME TO snapshots_away")
            .execute(&pool)
            .await
            .unwrap();
        eventually(
            "the poller to fail once",
            Duration::from_secs(20),
            || async { last_error().await.map(drop) },
        )
        .await;
        sqlx::query("ALTER TABLE snapshots_away RENAME TO snapshots")
            .execute(&pool)
            .await
            .unwrap();
    }
    assert!(polls() >= 40, "{} polls", polls());
    world.sim.resume_jobs();
    eventually(
        "the training to complete",
        Duration::from_secs(30),
        || async { (world.status(id).await == AvatarStatus::Trained).then_some(()) },
    )
    .await;
    eventually("the user to hear", Duration::from_secs(20), || async {
        world
            .inbox
            .all()
            .iter()
            .any(|n| matches!(n, Notification::TrainingCompleted { .. }))
            .then_some(())
    })
    .await;
    assert_eq!(world.paid_trainings(), 1);
    instance.stop().await;
}

/// `aisha serve` is killed (SIGKILL) while its training submit is in flight: FAL took the job,
/// the server never learned its request id. After the restart the job's webhook adopts it and
/// completes the training: one paid job, one "ready", and no "start again".
#[sqlx::test(migrations = false)]
async fn a_server_killed_mid_submit_adopts_the_job_from_its_webhook(pool: sqlx::PgPool) {
    use fake_telegram::{Entry, FakeTelegram};

    use crate::process::{Secrets, ServerProcess};

    let secrets = Secrets::generate();
    let telegram = FakeTelegram::spawn(&secrets.bot_token).await.unwrap();
    let user = telegram.user(OWNER, "Ася", "ru");
    // FAL takes the job but answers the submit only after 5 s; the job itself waits for us.
    let sim = SimConfig::default()
        .paused()
        .with_webhook(WebhookBehaviour {
            attempts: 40,
            retry_delay: Duration::from_millis(300),
            ..WebhookBehaviour::default()
        });
    let mut world = World::new(postgres_url(&pool), SimConfig::default()).await;
    world.sim = FalSimulator::spawn(sim.with_accepted_key(secrets.fal_key.clone()))
        .await
        .unwrap();
    world
        .sim
        .fail_next(RequestKind::Submit, &[Fault::stall(Duration::from_secs(5))]);
    let dir = tempfile::tempdir().unwrap();
    let env = ServerProcess::env(
        &world.url,
        telegram.api_url().as_str(),
        &world.sim,
        world.photos_dir.path(),
        &secrets,
    );
    let mut server = ServerProcess::start(env, dir.path().join("server.log")).await;

    let id = world.training_asked_for().await;
    eventually(
        "the submit to reach FAL",
        Duration::from_secs(30),
        || async { (world.paid_trainings() == 1).then_some(()) },
    )
    .await;
    server.kill();
    server.restart().await;
    world.sim.resume_jobs();

    eventually(
        "the training to complete",
        Duration::from_secs(60),
        || async { (world.status(id).await == AvatarStatus::Trained).then_some(()) },
    )
    .await;
    user.wait_for_bot_text("готов!")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", user.render_transcript(), server.log_text()));
    let history = world.store.history(id).await.unwrap();
    let submitted = history
        .iter()
        .find(|h| h.event_type == "TrainingSubmitted")
        .expect("the submission was recorded");
    assert_eq!(
        submitted.actor.as_deref(),
        Some("system:fal-webhook"),
        "adopted from the webhook"
    );
    assert_eq!(world.paid_trainings(), 1, "one paid job");
    let texts: Vec<String> = user
        .transcript()
        .iter()
        .filter_map(|e| match e {
            Entry::Bot(m) => m.text().map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(
        texts.iter().filter(|t| t.contains("готов!")).count(),
        1,
        "{texts:?}"
    );
    assert!(
        !texts.iter().any(|t| t.contains("Не удалось обучить")),
        "{texts:?}"
    );
    server.kill();
}

/// A trained avatar with one generation submitted to FAL and still running there.
async fn generation_running(world: &World) -> (Uuid, Uuid) {
    let id = world.training_asked_for().await;
    eventually("the training", Duration::from_secs(30), || async {
        (world.status(id).await == AvatarStatus::Trained).then_some(())
    })
    .await;
    world.sim.pause_jobs();
    let generation_id = Uuid::new_v4();
    world
        .run(
            id,
            Actor::User(OWNER),
            Action::Generate {
                generation_id,
                prompt: "on a boat".into(),
                preset: None,
                num_images: 1,
                aspect: None,
                batch: None,
                origin: None,
            },
        )
        .await;
    eventually(
        "the generation's submission",
        Duration::from_secs(20),
        || async {
            world
                .events(id)
                .await
                .iter()
                .any(|e| matches!(e, AvatarEvent::GenerationSubmitted { .. }))
                .then_some(())
        },
    )
    .await;
    (id, generation_id)
}

/// Deleting an avatar while its generation runs at FAL cancels that job.
async fn a_generation_running_when_its_avatar_is_deleted_is_cancelled(url: String) {
    let world = World::new(url, SimConfig::default()).await;
    let instance = world.instance(ActorSettings::fast()).await;
    let (id, _) = generation_running(&world).await;
    world.run(id, Actor::User(OWNER), Action::Delete).await;
    eventually(
        "the generation's cancel",
        Duration::from_secs(20),
        || async { (world.cancels() == 1).then_some(()) },
    )
    .await;
    settle(&world).await;
    assert_eq!(world.cancels(), 1);
    assert!(world.orphans(&[id]).await.is_empty());
    instance.stop().await;
}

/// A generation FAL never finishes fails at its deadline: its job is cancelled and the user
/// hears that it failed.
async fn a_generation_past_its_deadline_is_failed_cancelled_and_told(url: String) {
    let world = World::new(url, SimConfig::default()).await;
    let settings = ActorSettings {
        generation_deadline: Duration::from_secs(2),
        ..ActorSettings::fast()
    };
    let instance = world.instance(settings).await;
    let (id, generation_id) = generation_running(&world).await;
    let told = eventually("the user to hear", Duration::from_secs(30), || async {
        world.inbox.all().into_iter().find(|n| {
            matches!(n, Notification::GenerationFailed { generation_id: g, .. } if *g == generation_id)
        })
    })
    .await;
    assert!(
        matches!(&told, Notification::GenerationFailed { reason, .. } if reason.contains("no images")),
        "{told:?}"
    );
    eventually("the cancel", Duration::from_secs(20), || async {
        (world.cancels() == 1).then_some(())
    })
    .await;
    assert!(world.orphans(&[id]).await.is_empty());
    instance.stop().await;
}
