//! Shared test fixtures: fresh databases and avatars in a known state.

#![allow(dead_code)]

pub mod s3;
pub mod settle;

use aggregates::{
    Action, Actor, AvatarType, Command, Gender, ImageFormat, PhotoMeta, TrainingOutput,
    TrainingPreset,
};
use aisha::store::{AvatarStore, Database};
use chrono::Utc;
use tempfile::TempDir;
use uuid::Uuid;

/// Runs each named scenario `async fn name(db: Database)` once per backend: on a fresh SQLite
/// file and on a fresh PostgreSQL database of its own.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (db, _dir) = crate::support::sqlite().await;
                    super::$name(db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[sqlx::test(migrations = false)]
                async fn $name(pool: sqlx::PgPool) {
                    let db = aisha::store::Database::Postgres(pool);
                    db.migrate().await.expect("migrate postgres");
                    super::$name(db).await;
                }
            )*
        }
    };
}

pub const OWNER: i64 = 4242;

/// A fresh SQLite database in its own temporary folder (kept alive by the returned guard).
pub async fn sqlite() -> (Database, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Database::connect(&sqlite_url(&dir))
        .await
        .expect("open sqlite");
    db.migrate().await.expect("migrate sqlite");
    (db, dir)
}

pub fn sqlite_url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("aisha.db").display())
}

pub fn by_owner(action: Action) -> Command {
    Command::new(Actor::User(OWNER), Utc::now(), action)
}

pub fn by_system(action: Action) -> Command {
    Command::new(Actor::System("test".into()), Utc::now(), action)
}

pub fn photo(n: usize) -> PhotoMeta {
    PhotoMeta {
        photo_id: format!("photo-{n}"),
        content_hash: format!("{n:064x}"),
        byte_size: 50_000,
        width: 768,
        height: 1024,
        format: ImageFormat::Jpeg,
        storage_key: format!("photos/{n}.jpg"),
    }
}

pub async fn run(store: &AvatarStore, id: Uuid, command: Command) {
    let name = command.name();
    store
        .execute(id, command, Uuid::new_v4())
        .await
        .unwrap_or_else(|e| panic!("{name} failed: {e}"));
}

/// Creates a portrait avatar with `photos` photos.
pub async fn avatar_with_photos(store: &AvatarStore, photos: usize) -> Uuid {
    let id = Uuid::new_v4();
    run(
        store,
        id,
        by_owner(Action::Create {
            avatar_id: id,
            name: "Тест".into(),
            gender: Gender::Male,
            avatar_type: AvatarType::Portrait,
        }),
    )
    .await;
    for n in 1..=photos {
        run(store, id, by_owner(Action::UploadPhoto { photo: photo(n) })).await;
    }
    id
}

/// Creates a trained portrait avatar.
pub async fn trained_avatar(store: &AvatarStore) -> Uuid {
    let id = avatar_with_photos(store, 10).await;
    run(
        store,
        id,
        by_owner(Action::StartTraining {
            training_id: Uuid::new_v4(),
            preset: TrainingPreset::Fast,
            style: Default::default(),
        }),
    )
    .await;
    run(
        store,
        id,
        by_system(Action::RecordTrainingSubmission {
            request_id: format!("req-{id}"),
            endpoint: "fal-ai/flux-lora-portrait-trainer".into(),
            status_url: "http://fal/status".into(),
            response_url: "http://fal/response".into(),
            cancel_url: "http://fal/cancel".into(),
            archive_url: Some("http://fal/files/photos.zip".into()),
        }),
    )
    .await;
    run(
        store,
        id,
        by_system(Action::CompleteTraining {
            request_id: format!("req-{id}"),
            output: TrainingOutput {
                lora_file_url: Some("http://fal/files/lora.safetensors".into()),
                config_file_url: None,
                finetune_id: None,
            },
        }),
    )
    .await;
    id
}

/// Adds `n` generation requests (each one event) to a trained avatar.
pub async fn generate_many(store: &AvatarStore, id: Uuid, n: usize) {
    for _ in 0..n {
        run(
            store,
            id,
            by_owner(Action::Generate {
                generation_id: Uuid::new_v4(),
                prompt: "a portrait in the rain".into(),
                preset: None,
                num_images: 1,
                aspect: None,
                batch: None,
                origin: None,
            }),
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------------
// The whole application: bot, HTTP server, actors, FAL simulator and a fresh database.
// ---------------------------------------------------------------------------------------------

use std::sync::Arc;

use aisha::actors::ActorSettings;
use aisha::app::{AppError, AppOptions, Application};
use aisha::config::Config;
use aisha::fal::{FalSimulator, SimConfig};
use fake_telegram::{FakeTelegram, FakeUser};

/// The token of the test bot (the fake Bot API accepts only it).
pub const BOT_TOKEN: &str = "424242:AAH-test-token-for-the-fake-bot-api";

/// Every file under `dir` (none if it does not exist), as paths relative to it, sorted.
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if let Ok(relative) = path.strip_prefix(base) {
                out.push(relative.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A running application with its fakes, for end-to-end tests of the bot.
pub struct TestApp {
    /// The fake Telegram Bot API the bot talks to.
    pub telegram: FakeTelegram,
    /// The in-process FAL simulator (its request log tells what FAL was asked).
    pub sim: FalSimulator,
    pub store: Arc<AvatarStore>,
    pub db: Database,
    /// `http://127.0.0.1:PORT` of the application's HTTP server.
    pub http: String,
    config: Config,
    options: AppOptions,
    bot_deps: Option<std::sync::Arc<aisha::bot::BotDeps>>,
    _dir: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), AppError>>>,
}

/// What a test may change about the application it spawns.
pub struct TestAppSettings {
    pub simulator: SimConfig,
    /// `None`: a fresh SQLite database in the test's temporary folder.
    pub database_url: Option<String>,
    /// Webhook mode for Telegram (and FAL) when set.
    pub public_base_url: Option<String>,
    /// Where the HTTP server listens; a free port by default.
    pub http_addr: std::net::SocketAddr,
    /// Sample images when a training completes (off by default: they add to every story).
    pub starter_images: u32,
    /// Whether credits are sold and what work costs (off by default, as in production).
    pub payments: aisha::bot::pricing::PaymentsConfig,
    /// The actors' timings ([`ActorSettings::fast`] by default).
    pub actors: ActorSettings,
    /// Photos in an S3 bucket ([`s3::S3Bucket::photos`]) instead of the test's folder.
    pub s3_photos: Option<s3::S3Photos>,
    /// How long photos are kept after a successful training (the production default).
    pub training_photo_retention: Option<std::time::Duration>,
}

impl Default for TestAppSettings {
    fn default() -> Self {
        Self {
            simulator: SimConfig::default(),
            database_url: None,
            public_base_url: None,
            http_addr: "127.0.0.1:0".parse().expect("address"),
            starter_images: 0,
            payments: aisha::bot::pricing::PaymentsConfig::off(),
            actors: ActorSettings::fast(),
            s3_photos: None,
            training_photo_retention: Some(aisha::config::DEFAULT_PHOTO_RETENTION),
        }
    }
}

/// The application on a fresh SQLite database, with the fast simulator.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestAppSettings::default()).await
}

/// The application on a fresh PostgreSQL database (from `#[sqlx::test]`).
pub async fn spawn_app_on_postgres(pool: sqlx::PgPool, simulator: SimConfig) -> TestApp {
    spawn_app_with(TestAppSettings {
        simulator,
        database_url: Some(postgres_url(&pool)),
        ..TestAppSettings::default()
    })
    .await
}

/// The URL of a `#[sqlx::test]` database.
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

/// The application as `settings` say, running until [`TestApp::shutdown`].
pub async fn spawn_app_with(settings: TestAppSettings) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let telegram = FakeTelegram::spawn(BOT_TOKEN).await.expect("fake Telegram");
    let database_url = settings.database_url.unwrap_or_else(|| sqlite_url(&dir));
    let mut config = Config::offline(database_url, &dir.path().join("photos"));
    config.telegram.token = Some(BOT_TOKEN.into());
    config.telegram.api_url = telegram.api_url().to_string().into();
    config.http.public_base_url = settings.public_base_url.map(Into::into);
    config.http.addr = settings.http_addr;
    config.avatars.starter_images = settings.starter_images;
    config.payments = settings.payments;
    config.storage.training_photo_retention =
        aisha::config::PhotoRetention(settings.training_photo_retention);
    let config = match &settings.s3_photos {
        Some(s3) => s3.apply_to(config),
        None => config,
    };
    let options = AppOptions {
        actor_settings: settings.actors,
        simulator: settings.simulator,
        notifier: None,
    };
    start(config, options, telegram, dir).await
}

async fn start(
    config: Config,
    options: AppOptions,
    telegram: FakeTelegram,
    dir: TempDir,
) -> TestApp {
    let mut app = Application::build(config.clone(), options.clone())
        .await
        .expect("build the application");
    let bot_deps = app.telegram.as_ref().map(|bot| bot.deps());
    if let Some(bot) = &app.telegram {
        // The fake has no flood control; production budgets would spend minutes waiting.
        bot.set_limits(aisha::bot::SendLimits::relaxed());
    }
    let sim = app.simulator.take().expect("simulated FAL");
    let store = app.store.clone();
    let db = app.db.clone();
    let http = format!("http://{}", app.http_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        telegram,
        sim,
        store,
        db,
        http,
        config,
        options,
        bot_deps,
        _dir: dir,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    /// Waits until nothing is left to happen on its own (see [`settle::settle`]).
    pub async fn settle(&self) {
        settle::settle(&self.db, Some(&self.telegram)).await;
    }

    /// Waits until what has been set off already is done (see [`settle::settle_within`]).
    pub async fn settle_within(&self, horizon: std::time::Duration) {
        settle::settle_within(&self.db, Some(&self.telegram), horizon).await;
    }

    /// The configuration the application was built with (its database and photo store).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The folder the application's photo store writes to.
    pub fn photos_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("photos")
    }

    /// Every file under the photo store's folder, as paths relative to it, sorted.
    pub fn stored_photo_files(&self) -> Vec<String> {
        files_under(&self.photos_dir())
    }

    /// Stops the application and starts a new one on the same database, photo folder and fake
    /// Telegram (chats and pending updates included), as after a crash or a deploy.
    pub async fn restart(mut self) -> TestApp {
        self.stop_and_wait().await;
        let Self {
            telegram,
            config,
            options,
            _dir: dir,
            ..
        } = self;
        start(config, options, telegram, dir).await
    }

    /// Changes the bot's send budgets while it runs (tests start with relaxed ones).
    pub fn set_send_limits(&self, limits: aisha::bot::SendLimits) {
        self.bot_deps
            .as_ref()
            .expect("the app runs a bot")
            .limiter
            .set_limits(limits);
    }

    /// The photo store the bot and the actors use.
    pub fn bot_photos(&self) -> aisha::photos::PhotoStore {
        self.bot_deps
            .as_ref()
            .expect("the app runs a bot")
            .photos
            .clone()
    }

    /// Changes the bot's quotas while it runs.
    pub fn set_quotas(&self, quotas: aisha::bot::quotas::Quotas) {
        self.bot_deps
            .as_ref()
            .expect("the app runs a bot")
            .set_quotas(quotas);
    }

    /// A Telegram user with a private chat with the bot.
    pub fn user(&self, id: i64, first_name: &str, language_code: &str) -> FakeUser {
        self.telegram.user(id, first_name, language_code)
    }

    /// Stops the application and waits for it; panics if it failed.
    pub async fn shutdown(mut self) {
        self.stop_and_wait().await;
    }

    async fn stop_and_wait(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(std::time::Duration::from_secs(15), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("the application failed: {e}"),
                Ok(Err(e)) => panic!("the application panicked: {e}"),
                Err(_) => panic!("the application did not stop within 15 s"),
            }
        }
    }
}

/// Each story on SQLite and on PostgreSQL, with the app its settings function builds (the
/// caller imports `spawn_app_with` and `postgres_url`).
macro_rules! on_both_backends_with_app {
    ($($name:ident => $settings:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(spawn_app_with($settings(None)).await).await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[sqlx::test(migrations = false)]
                async fn $name(pool: sqlx::PgPool) {
                    super::$name(spawn_app_with($settings(Some(postgres_url(&pool)))).await)
                        .await;
                }
            )*
        }
    };
}
