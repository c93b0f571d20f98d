//! FAL forgets what it can; what must last is our copy. Over real HTTP to the simulator: a
//! trained avatar's model and images are copied into our store and served from it (to FAL by
//! signed URLs, to the user by the bot), FAL deletes each request's payloads and files once we
//! hold our copies (retried when FAL fails), and after the avatar's deletion every URL ever
//! recorded for it answers 404, at FAL and at our own route. Without a URL FAL can reach, our
//! copies go to FAL as uploads that FAL deletes at the job's deadline.

use std::future::Future;
use std::time::Duration;

use aggregates::{Action, Actor, AvatarEvent, AvatarType, Command, Gender, TrainedModel};
use aisha::actors::ActorSettings;
use aisha::app::{AppOptions, Application};
use aisha::bot::callbacks::Callback;
use aisha::config::{Config, FalMode, FalSettings};
use aisha::fal::sim::{Fault, RequestKind};
use aisha::fal::{FalClient, FalClientConfig, FalError, FalSimulator, SimConfig};
use aisha::photos::store::copy_key;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::bot::{nth_bot_photo, recorded_images, submitted, trained_portrait};
use crate::steps::{button, press, press_and_see};
use crate::support::{spawn_app, spawn_app_on_postgres, spawn_app_with, TestApp, TestAppSettings};

const ZOE: i64 = 7007;

/// How long a condition may take to come true before a test gives up.
const PATIENCE: Duration = Duration::from_secs(30);

/// Waits until `check` gives a value, looking again every 25 ms for at most [`PATIENCE`]:
/// tests wait on conditions, never for a fixed time.
pub(crate) async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn status(url: &str) -> u16 {
    reqwest::get(url).await.unwrap().status().as_u16()
}

/// Waits until every URL answers 404.
async fn all_gone(what: &str, urls: &[String]) {
    until(what, || async {
        for url in urls {
            if status(url).await != 404 {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// The FAL requests an avatar's history records, with their endpoints.
async fn requests_of(app: &TestApp, avatar: Uuid) -> Vec<String> {
    app.store
        .history(avatar)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            AvatarEvent::TrainingSubmitted { request_id, .. }
            | AvatarEvent::GenerationSubmitted { request_id, .. } => Some(request_id),
            _ => None,
        })
        .collect()
}

async fn forgotten(app: &TestApp, request_id: &str) {
    until("FAL to delete the request's payloads", || async {
        (app.sim.payloads_deleted(request_id) == Some(true)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_avatar_lives_on_our_copies_and_leaves_nothing_at_fal_when_deleted() {
    lives_on_our_copies(spawn_app().await).await;
}

#[sqlx::test(migrations = false)]
async fn our_copies_on_postgres(pool: sqlx::PgPool) {
    lives_on_our_copies(spawn_app_on_postgres(pool, SimConfig::default()).await).await;
}

async fn lives_on_our_copies(app: TestApp) {
    let zoe = app.user(ZOE, "Zoe", "en");
    let (ready, avatar) = trained_portrait(&zoe, "Zoe", 60).await;
    let photos = app.bot_photos();
    let history = app.store.history(avatar).await.unwrap();
    let (training, archive) = history
        .iter()
        .find_map(|e| match &e.event {
            AvatarEvent::TrainingSubmitted {
                request_id,
                archive_url,
                ..
            } => Some((request_id.clone(), archive_url.clone().unwrap())),
            _ => None,
        })
        .expect("a submitted training");
    let Some(TrainedModel::Portrait {
        lora_file_url: lora,
        config_file_url: Some(config),
        ..
    }) = app.store.load(avatar).await.unwrap().model
    else {
        panic!("a portrait model");
    };

    // Given a trained avatar, when FAL is done with the training: we hold the model's files,
    // and FAL has deleted the training's payloads and its files.
    forgotten(&app, &training).await;
    for url in [&lora, &config] {
        assert!(
            photos.exists(&copy_key(avatar, url)).await.unwrap(),
            "no copy of {url}"
        );
        assert_eq!(status(url).await, 404, "{url} is still at FAL");
    }
    let training_job = app
        .sim
        .job_timings()
        .into_iter()
        .find(|j| j.request_id == training)
        .unwrap();
    assert_eq!(training_job.input, Value::Null, "FAL dropped the input");

    // When the user generates: FAL loads our copy of the LoRA from our route, and the bot
    // sends our copy of the image.
    let presets = press_and_see(&zoe, &ready, &button(&ready, "ge:"), "Choose a preset").await;
    press_and_see(
        &zoe,
        &presets,
        &button(&presets, "gp:b:"),
        "Describe the image",
    )
    .await;
    zoe.send_text("a kite over the dunes");
    let shown = nth_bot_photo(&zoe, 1).await;
    let path = submitted(&app, "fal-ai/flux-lora")[0]["loras"][0]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    let ours = format!("{}/fal-inputs/{}?", app.http, copy_key(avatar, &lora));
    assert!(path.starts_with(&ours), "{path}");
    let lora_copy = photos.get(&copy_key(avatar, &lora)).await.unwrap();
    assert_eq!(
        reqwest::get(&path).await.unwrap().bytes().await.unwrap(),
        lora_copy
    );
    let images = recorded_images(&app, avatar).await;
    let generation = requests_of(&app, avatar).await.pop().unwrap();
    forgotten(&app, &generation).await;
    let image_copy = photos.get(&copy_key(avatar, &images[0].url)).await.unwrap();
    assert_eq!(
        shown.photo().unwrap().bytes,
        image_copy,
        "the bot showed our copy"
    );
    assert_eq!(
        status(&images[0].url).await,
        404,
        "the image is still at FAL"
    );

    // When the avatar is deleted: the warning says what FAL keeps (nothing: it read our copies
    // from us), and afterwards every URL ever recorded for the avatar, and every URL of ours
    // FAL was given, answers 404.
    zoe.send_command("/avatars");
    let gallery = crate::steps::text(&zoe, "🖼").await;
    let card = press_and_see(&zoe, &gallery, &Callback::Card(avatar).encode(), "Type:").await;
    let confirm = press_and_see(&zoe, &card, &button(&card, "d:"), "Confirm deletion").await;
    let warning = confirm.text().unwrap();
    for line in [
        "• The trained model",
        "• The uploaded photos",
        "• The generation history: images and prompts",
        "At FAL (the service that trains the model and makes the images) we delete every \
         request of this avatar with its files as soon as FAL has finished it.",
    ] {
        assert!(warning.contains(line), "{line:?} missing from {warning}");
    }
    assert!(!warning.contains("uploaded to FAL"), "{warning}");
    press(&zoe, &confirm, &format!("avatar_delete_confirm:{avatar}")).await;
    let mut urls = vec![archive, lora, config, path];
    urls.extend(images.iter().map(|i| i.url.clone()));
    all_gone("every URL of the deleted avatar to answer 404", &urls).await;
    until("the avatar's files to leave our store", || async {
        let left: Vec<String> = app
            .stored_photo_files()
            .into_iter()
            .filter(|f| f.contains(&avatar.to_string()))
            .collect();
        left.is_empty().then_some(())
    })
    .await;
    for request in requests_of(&app, avatar).await {
        forgotten(&app, &request).await;
    }
    let at_fal: Vec<String> = app.sim.stored_files().into_iter().map(|(u, _)| u).collect();
    assert!(
        urls.iter().all(|u| !at_fal.contains(u)),
        "FAL still stores one of {urls:?}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn payload_deletion_is_retried_after_fal_fails_it() {
    let app = spawn_app().await;
    // More failures than the client's own retries: the work item must come back to it.
    app.sim
        .fail_next(RequestKind::DeletePayloads, &[Fault::SERVER_ERROR; 6]);
    let zoe = app.user(ZOE, "Zoe", "en");
    let (_, avatar) = trained_portrait(&zoe, "Zoe", 90).await;
    let training = requests_of(&app, avatar).await.remove(0);
    forgotten(&app, &training).await;

    let attempts = app.sim.requests_of(RequestKind::DeletePayloads);
    let failed = attempts.iter().filter(|r| r.fault.is_some()).count();
    assert_eq!(failed, 6, "{attempts:#?}");
    assert!(attempts.len() > failed);
    assert!(attempts.iter().all(|r| r.authorized), "sent with our key");
    let Some(TrainedModel::Portrait { lora_file_url, .. }) =
        app.store.load(avatar).await.unwrap().model
    else {
        panic!("a portrait model");
    };
    assert_eq!(status(&lora_file_url).await, 404);
    assert!(app
        .bot_photos()
        .exists(&copy_key(avatar, &lora_file_url))
        .await
        .unwrap());
    app.shutdown().await;
}

/// Live mode against a standalone simulator with no URL FAL could reach us at (so results are
/// polled): the archive and our copy of the LoRA are uploaded to FAL with the lifetime of the
/// job they are for, and are gone from FAL when it ends.
#[tokio::test]
async fn without_a_url_fal_can_reach_our_copies_go_to_fal_as_uploads_that_expire() {
    let sim = FalSimulator::spawn(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::offline(
        format!("sqlite://{}", dir.path().join("aisha.db").display()),
        &dir.path().join("photos"),
    );
    config.fal = FalSettings {
        mode: Some(FalMode::Live),
        key: Some("live-key".into()),
        queue_url: sim.queue_url().into(),
        rest_url: sim.rest_url().into(),
        jwks_url: sim.jwks_url().into(),
        platform_url: sim.platform_url().into(),
        ..config.fal
    };
    let settings = ActorSettings::fast();
    let app = Application::build(
        config,
        AppOptions {
            actor_settings: settings.clone(),
            simulator: SimConfig::default(),
            notifier: None,
        },
    )
    .await
    .unwrap();
    let (store, photos) = (app.store.clone(), app.photos.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    // Given a portrait avatar with ten stored photos, trained.
    let avatar = Uuid::new_v4();
    let user = Actor::User(ZOE);
    let run = |by: Actor, action: Action| {
        let store = store.clone();
        async move {
            store
                .execute(
                    avatar,
                    Command::new(by, chrono::Utc::now(), action),
                    Uuid::new_v4(),
                )
                .await
                .unwrap();
        }
    };
    run(
        user.clone(),
        Action::Create {
            avatar_id: avatar,
            name: "Zoe".into(),
            gender: Gender::Female,
            avatar_type: AvatarType::Portrait,
        },
    )
    .await;
    for n in 0..10u8 {
        let bytes = fake_telegram::sample_jpeg(640, 640, n.wrapping_mul(29));
        let checked = aisha::photos::inspect(&bytes).unwrap();
        let key = aisha::photos::photo_key(avatar, &format!("p{n}"), checked.format);
        photos.put(&key, bytes).await.unwrap();
        let photo = checked.photo_meta(format!("p{n}"), &key);
        run(user.clone(), Action::UploadPhoto { photo }).await;
    }
    run(
        user.clone(),
        Action::StartTraining {
            training_id: Uuid::new_v4(),
            preset: aggregates::TrainingPreset::Fast,
            style: Default::default(),
        },
    )
    .await;
    let model = until("the training to complete", || async {
        store.load(avatar).await.unwrap().model
    })
    .await;
    let lora = model.lora_file_url().unwrap().to_owned();

    // The archive was uploaded with the training deadline as its lifetime, and no webhook was
    // asked for.
    let trainings = sim.submissions();
    let archive = trainings[0].body.as_ref().unwrap()["images_data_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(trainings[0].query_param("fal_webhook").is_none());
    let lifetime = |url: &str| {
        let at = sim.file_expires_at(url).flatten().expect("a lifetime");
        (at - chrono::Utc::now()).num_seconds()
    };
    let deadline = settings.training_deadline.as_secs() as i64;
    assert!((deadline - 45..=deadline).contains(&lifetime(&archive)));

    // When it generates: FAL gets an upload of our copy of the LoRA that lasts until the
    // generation's deadline, not the LoRA FAL made (deleted once we held our copy).
    let generation_id = Uuid::new_v4();
    run(
        user.clone(),
        Action::Generate {
            generation_id,
            prompt: "a kite over the dunes".into(),
            preset: None,
            num_images: 1,
            aspect: None,
            batch: None,
            origin: None,
        },
    )
    .await;
    until("the generation to complete", || async {
        let avatar = store.load(avatar).await.unwrap();
        (avatar.pending_generation(generation_id).is_none()).then_some(())
    })
    .await;
    let generation = sim
        .submissions()
        .into_iter()
        .find(|s| s.model_id() == Some("fal-ai/flux-lora"))
        .unwrap();
    let path = generation.body.unwrap()["loras"][0]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(path, lora);
    let bytes = reqwest::get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        bytes,
        photos.get(&copy_key(avatar, &lora)).await.unwrap(),
        "FAL got our copy"
    );
    let generation_deadline = settings.generation_deadline.as_secs() as i64;
    assert!((generation_deadline - 45..=generation_deadline).contains(&lifetime(&path)));
    until("FAL to forget the LoRA it made", || async {
        (status(&lora).await == 404).then_some(())
    })
    .await;

    // When the job deadlines pass, the uploads are gone from FAL too.
    sim.advance_storage_clock(settings.training_deadline);
    for url in [&archive, &path] {
        assert_eq!(status(url).await, 404, "{url}");
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
}

// ---------------------------------------------------------------------------------------------
// The simulator's side: the Platform API's payload deletion and the submit's lifecycle header,
// as FAL documents them, through our own client.
// ---------------------------------------------------------------------------------------------

async fn sim_and_client() -> (FalSimulator, FalClient) {
    let sim = FalSimulator::spawn(SimConfig::default()).await.unwrap();
    let client = FalClient::new(
        FalClientConfig::new(sim.queue_url(), sim.rest_url(), Some("key".into()))
            .with_platform_url(sim.platform_url()),
    )
    .unwrap();
    (sim, client)
}

async fn finished(client: &FalClient, status_url: &str) {
    until("the job to finish", || async {
        client
            .status(status_url, false)
            .await
            .unwrap()
            .is_completed()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_a_requests_payloads_deletes_its_output_files_but_not_its_inputs() {
    let (sim, client) = sim_and_client().await;
    let upscale_source = client
        .upload(
            fake_telegram::sample_jpeg(64, 48, 3).to_vec(),
            "image/jpeg",
            "in.jpg",
        )
        .await
        .unwrap();
    let submitted = client
        .submit(
            "fal-ai/seedvr/upscale/image",
            &json!({"image_url": upscale_source, "upscale_factor": 2}),
            None,
        )
        .await
        .unwrap();
    // Given a job still running, FAL has nothing to delete yet: the simulator refuses.
    match client.delete_payloads(&submitted.request_id).await {
        Err(FalError::Http { status: 400, .. }) => {}
        other => panic!("a running job's payloads were deleted: {other:?}"),
    }
    finished(&client, &submitted.status_url).await;
    let output: Value = client.result(&submitted.response_url).await.unwrap();
    let image = output["image"]["url"].as_str().unwrap().to_owned();
    assert_eq!(status(&image).await, 200);

    // When its payloads are deleted: its output file goes, its result answers 404, and the
    // file it read (our upload) stays, as FAL documents.
    let answer = client.delete_payloads(&submitted.request_id).await.unwrap();
    assert_eq!(answer.cdn_delete_results.len(), 1);
    assert_eq!(answer.cdn_delete_results[0].link, image);
    assert_eq!(answer.failures().count(), 0);
    assert_eq!(status(&image).await, 404);
    assert!(matches!(
        client.result::<Value>(&submitted.response_url).await,
        Err(FalError::NotFound { .. })
    ));
    assert_eq!(status(&upscale_source).await, 200);
    assert_eq!(sim.payloads_deleted(&submitted.request_id), Some(true));

    // Asked again (our retries send the same idempotency key, the request id): the same answer.
    let again = client.delete_payloads(&submitted.request_id).await.unwrap();
    assert_eq!(again, answer);
    let keys: Vec<_> = sim
        .requests_of(RequestKind::DeletePayloads)
        .into_iter()
        .map(|r| (r.method, r.authorized))
        .collect();
    assert_eq!(keys, vec![("DELETE".to_owned(), true); 3]);
    // A request FAL never had.
    assert!(matches!(
        client.delete_payloads(&Uuid::new_v4().to_string()).await,
        Err(FalError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_submits_lifecycle_header_sets_how_long_its_outputs_are_kept() {
    let (sim, client) = sim_and_client().await;
    let input = json!({"prompt": "a kite", "loras": [], "num_images": 1});
    let kept = client
        .submit("fal-ai/flux-lora", &input, None)
        .await
        .unwrap();
    let expiring = client
        .submit_expiring("fal-ai/flux-lora", &input, None, Duration::from_secs(600))
        .await
        .unwrap();
    let image = |submitted: aisha::fal::types::SubmitResponse| {
        let client = client.clone();
        async move {
            finished(&client, &submitted.status_url).await;
            let output: Value = client.result(&submitted.response_url).await.unwrap();
            output["images"][0]["url"].as_str().unwrap().to_owned()
        }
    };
    let (kept, expiring) = (image(kept).await, image(expiring).await);
    let seconds =
        (sim.file_expires_at(&expiring).flatten().unwrap() - chrono::Utc::now()).num_seconds();
    assert!((550..=600).contains(&seconds), "{seconds}");
    assert_eq!(sim.file_expires_at(&kept), Some(None));

    sim.advance_storage_clock(Duration::from_secs(601));
    assert_eq!(status(&expiring).await, 404);
    assert_eq!(status(&kept).await, 200);
}

#[tokio::test]
async fn a_file_of_ours_is_served_only_under_a_valid_unexpired_signature() {
    let app = spawn_app_with(TestAppSettings::default()).await;
    let photos = app.bot_photos();
    let avatar = Uuid::new_v4();
    let key = copy_key(
        avatar,
        "https://v3.fal.media/files/x/pytorch_lora_weights.safetensors",
    );
    photos
        .put(&key, bytes::Bytes::from_static(b"weights"))
        .await
        .unwrap();
    // Signed with the deployment's own key, as the actors sign what they hand to FAL.
    let targets = aisha::actors::WebhookTargets::load(&app.db, Some(app.http.clone()))
        .await
        .unwrap();
    let soon = chrono::Utc::now() + chrono::Duration::minutes(5);
    let valid = targets.file_url(&key, soon).unwrap();
    let served = reqwest::get(&valid).await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "application/octet-stream");
    assert_eq!(served.bytes().await.unwrap(), &b"weights"[..]);

    // Whatever is wrong, the same 404: expired, forged, unsigned, or not a file we keep.
    let expired = targets
        .file_url(&key, chrono::Utc::now() - chrono::Duration::seconds(1))
        .unwrap();
    let forged = format!("{}0", valid);
    let unsigned = format!("{}/fal-inputs/{key}", app.http);
    let photo_key = format!("avatars/{avatar}/photo.jpg");
    photos
        .put(&photo_key, bytes::Bytes::from_static(b"a photo"))
        .await
        .unwrap();
    let photo = targets.file_url(&photo_key, soon).unwrap();
    for url in [&expired, &forged, &unsigned, &photo] {
        assert_eq!(status(url).await, 404, "{url}");
    }
    // Once our copy is deleted, its valid URL is dead too.
    photos.delete(&key).await.unwrap();
    assert_eq!(status(&valid).await, 404);
    app.shutdown().await;
}
