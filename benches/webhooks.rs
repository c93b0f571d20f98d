//! Webhook throughput: verified FAL webhooks per second on loopback, with 10% duplicates, into
//! the real `/webhooks/fal` route backed by PostgreSQL (and SQLite), then a check that every
//! training was completed exactly once and none was lost.
//!
//! Run: `cargo bench --bench webhooks` (PostgreSQL from `DATABASE_URL`, default
//! postgres://postgres@127.0.0.1:5432/postgres; a scratch database is created and dropped).
//! `BENCH_WEBHOOKS` sets the number of distinct trainings (default 2000).

use std::sync::Arc;
use std::time::Instant;

use aggregates::{
    Action, Actor, AvatarType, Command, Gender, ImageFormat, PhotoMeta, TrainingPreset,
};
use aisha::actors::notify::LogNotifier;
use aisha::actors::work::WorkQueue;
use aisha::actors::{ActorSettings, Services, WebhookTargets};
use aisha::fal::webhook::Jwks;
use aisha::fal::{FalClient, FalClientConfig, WebhookSigner, WebhookVerifier};
use aisha::http::webhooks::{router, WebhookState};
use aisha::photos::PhotoStore;
use aisha::store::{AvatarStore, Database};
use axum::routing::get;
use axum::Json;
use chrono::Utc;
use futures::StreamExt;
use uuid::Uuid;

mod common;

// The production binary's allocator (src/main.rs), so in-process figures match it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONCURRENCY: usize = 32;

#[tokio::main]
async fn main() {
    let admin_url = common::admin_url();
    let trainings: usize = common::env_number("BENCH_WEBHOOKS", 2000);
    println!("# webhook benchmark: {trainings} trainings, 10% duplicate deliveries, {CONCURRENCY} concurrent senders");

    let scratch = common::Scratch::create(
        &admin_url,
        format!("aisha_bench_webhooks_{}", std::process::id()),
    )
    .await;
    let pg = Database::connect(&scratch.url).await.unwrap();
    pg.migrate().await.unwrap();
    run("postgres", pg.clone(), trainings).await;
    pg.close().await;
    scratch.drop().await;

    let dir = tempfile::tempdir().unwrap();
    let sqlite = Database::connect(&format!("sqlite://{}", dir.path().join("b.db").display()))
        .await
        .unwrap();
    sqlite.migrate().await.unwrap();
    run("sqlite", sqlite, trainings).await;
}

async fn run(backend: &str, db: Database, trainings: usize) {
    let store = Arc::new(AvatarStore::new(db.clone()));
    let signer = Arc::new(WebhookSigner::from_seed([9; 32], "bench-user"));

    // JWKS served like FAL's, on loopback.
    let jwks = Jwks {
        keys: vec![signer.jwk(false)],
    };
    let jwks_app =
        axum::Router::new().route("/jwks.json", get(move || async move { Json(jwks.clone()) }));
    let jwks_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks.json", jwks_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(jwks_listener, jwks_app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    // The URLs FAL would have been given: ours, with their tokens.
    let targets = WebhookTargets::with_key(Some("http://bench".into()), [5; 32]);
    let services = Services {
        store: store.clone(),
        queue: WorkQueue::new(db.clone()),
        fal: FalClient::new(FalClientConfig::new(
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
            None,
        ))
        .unwrap(),
        photos: PhotoStore::local(dir.path()).unwrap(),
        notifier: Arc::new(LogNotifier),
        progress: Arc::new(aisha::actors::NoProgress),
        webhooks: targets.clone(),
        settings: ActorSettings::default(),
        starter: aisha::packs::StarterPlan::off(),
        refunds: std::sync::Arc::new(aisha::actors::refund::NoStarRefunds),
        accounts: Arc::new(aisha::store::accounts::AccountStore::new(db.clone())),
        charging: false,
    };
    let app = router(WebhookState {
        verifier: Arc::new(WebhookVerifier::new(jwks_url)),
        services,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // Avatars whose trainings were submitted (setup, not measured).
    let setup = Instant::now();
    let avatars: Vec<(Uuid, String)> = futures::stream::iter(0..trainings)
        .map(|_| {
            let store = store.clone();
            async move { submitted_training(&store).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    eprintln!(
        "{backend}: setup of {trainings} submitted trainings took {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    // Deliveries: one per training plus 10% duplicates, interleaved.
    let mut deliveries: Vec<(Uuid, String)> = avatars.clone();
    deliveries.extend(avatars.iter().step_by(10).cloned());
    let client = reqwest::Client::new();
    let start = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(deliveries.iter().cloned())
        .map(|(avatar_id, request_id)| {
            let client = client.clone();
            let signer = signer.clone();
            let url = targets
                .training(avatar_id)
                .unwrap()
                .replace("http://bench", &base);
            async move {
                let body = serde_json::to_vec(&serde_json::json!({
                    "request_id": request_id, "gateway_request_id": request_id, "status": "OK",
                    "payload": {
                        "diffusers_lora_file": {"url": format!("https://fal.media/{request_id}.safetensors"),
                            "content_type": "application/octet-stream", "file_name": "lora.safetensors", "file_size": 1},
                        "config_file": {"url": format!("https://fal.media/{request_id}.json"),
                            "content_type": "application/json", "file_name": "config.json", "file_size": 1}
                    }
                }))
                .unwrap();
                let headers = signer.sign(&request_id, Utc::now().timestamp(), &body);
                let mut request = client.post(&url).body(body);
                for (name, value) in headers.pairs() {
                    request = request.header(name, value);
                }
                request.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = start.elapsed();
    let ok = statuses.iter().filter(|s| **s == 200).count();

    // None lost, none doubled.
    let mut completed = 0;
    let mut doubled = 0;
    for (avatar_id, _) in &avatars {
        let n = store
            .history(*avatar_id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.event_type == "TrainingCompleted")
            .count();
        completed += usize::from(n >= 1);
        doubled += usize::from(n > 1);
    }
    println!(
        "{backend}: {} deliveries in {:.2} s = {:.0} verified webhooks/s; {} answered 200; trainings completed {}/{} ({} lost, {} doubled)",
        deliveries.len(),
        elapsed.as_secs_f64(),
        deliveries.len() as f64 / elapsed.as_secs_f64(),
        ok,
        completed,
        avatars.len(),
        avatars.len() - completed,
        doubled
    );
}

async fn submitted_training(store: &AvatarStore) -> (Uuid, String) {
    let id = Uuid::new_v4();
    let user = Actor::User(1);
    let exec = |by: Actor, action: Action| async move {
        store
            .execute(id, Command::new(by, Utc::now(), action), Uuid::new_v4())
            .await
            .expect("setup command");
    };
    exec(
        user.clone(),
        Action::Create {
            avatar_id: id,
            name: "bench".into(),
            gender: Gender::Other,
            avatar_type: AvatarType::Portrait,
        },
    )
    .await;
    for n in 0..10 {
        exec(
            user.clone(),
            Action::UploadPhoto {
                photo: PhotoMeta {
                    photo_id: format!("p{n}"),
                    content_hash: format!("{n:064x}"),
                    byte_size: 1000,
                    width: 600,
                    height: 600,
                    format: ImageFormat::Jpeg,
                    storage_key: format!("k{n}"),
                },
            },
        )
        .await;
    }
    exec(
        user,
        Action::StartTraining {
            training_id: Uuid::new_v4(),
            preset: TrainingPreset::Fast,
            style: Default::default(),
        },
    )
    .await;
    let request_id = Uuid::new_v4().to_string();
    exec(
        Actor::System("bench".into()),
        Action::RecordTrainingSubmission {
            request_id: request_id.clone(),
            endpoint: "fal-ai/flux-lora-portrait-trainer".into(),
            status_url: String::new(),
            response_url: String::new(),
            cancel_url: String::new(),
            archive_url: None,
        },
    )
    .await;
    (id, request_id)
}
