//! The actors against the FAL simulator over real HTTP: trainings end to end, the poller as the
//! webhook's fallback, duplicate and forged webhooks, faults, and the exact generation requests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aggregates::{
    Action, Actor, AvatarEvent, AvatarStatus, AvatarType, Command, Gender, GenerationPreset,
    StyleTrainer, TrainedModel, TrainingPreset,
};
use aisha::actors::notify::NotifyError;
use aisha::actors::{ActorSettings, Notification, Notifier};
use aisha::app::{AppOptions, Application};
use aisha::config::Config;
use aisha::fal::sim::{FaultRates, RequestKind, WebhookBehaviour};
use aisha::fal::{FalSimulator, SimConfig, WebhookSigner};
use aisha::store::AvatarStore;
use chrono::Utc;
use futures::future::BoxFuture;
use tempfile::TempDir;
use uuid::Uuid;

const OWNER: i64 = 5150;

/// Records every notification instead of sending it.
#[derive(Default)]
struct Inbox(Mutex<Vec<Notification>>);

impl Notifier for Inbox {
    fn notify<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            self.0.lock().unwrap().push(n.clone());
            Ok(())
        })
    }
}

struct Harness {
    store: Arc<AvatarStore>,
    sim: FalSimulator,
    inbox: Arc<Inbox>,
    http: String,
    photos: aisha::photos::PhotoStore,
    _dir: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    async fn start(sim: SimConfig) -> Self {
        Self::start_with(sim, ActorSettings::fast()).await
    }

    async fn start_with(sim: SimConfig, settings: ActorSettings) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), sim, settings).await
    }

    /// Starts the service over an existing folder (database and photos), as after a restart.
    async fn start_in(dir: TempDir, sim: SimConfig, settings: ActorSettings) -> Self {
        let config = Config::offline(
            format!("sqlite://{}", dir.path().join("aisha.db").display()),
            &dir.path().join("photos"),
        );
        let inbox = Arc::new(Inbox::default());
        let options = AppOptions {
            actor_settings: settings,
            simulator: sim,
            notifier: Some(inbox.clone()),
        };
        let mut app = Application::build(config, options).await.unwrap();
        let sim = app.simulator.take().unwrap();
        let store = app.store.clone();
        let photos = app.photos.clone();
        let http = format!("http://{}", app.http_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Self {
            store,
            sim,
            inbox,
            http,
            photos,
            _dir: dir,
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

    async fn run(&self, id: Uuid, by: Actor, action: Action) {
        self.store
            .execute(id, Command::new(by, Utc::now(), action), Uuid::new_v4())
            .await
            .unwrap();
    }

    /// A created avatar with 10 real, stored photos.
    async fn avatar_ready_to_train(&self, avatar_type: AvatarType) -> Uuid {
        let id = Uuid::new_v4();
        let user = Actor::User(OWNER);
        self.run(
            id,
            user.clone(),
            Action::Create {
                avatar_id: id,
                name: "Тест".into(),
                gender: Gender::Female,
                avatar_type,
            },
        )
        .await;
        for n in 0..10u8 {
            let bytes = fake_telegram::sample_jpeg(640, 640, n.wrapping_mul(23));
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
        id
    }

    async fn train(&self, avatar_type: AvatarType) -> Uuid {
        self.train_on(avatar_type, StyleTrainer::default()).await
    }

    /// Trains with the operator's choice of style trainer.
    async fn train_on(&self, avatar_type: AvatarType, style: StyleTrainer) -> Uuid {
        let id = self.avatar_ready_to_train(avatar_type).await;
        self.run(
            id,
            Actor::User(OWNER),
            Action::StartTraining {
                training_id: Uuid::new_v4(),
                preset: TrainingPreset::Fast,
                style,
            },
        )
        .await;
        id
    }

    async fn wait_for_status(&self, id: Uuid, want: &[AvatarStatus]) -> aggregates::Avatar {
        for _ in 0..400 {
            let avatar = self.store.load(id).await.unwrap();
            if want.contains(&avatar.status) {
                return avatar;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "avatar {id} never reached {want:?}: {:?}",
            self.store.load(id).await.unwrap().status
        );
    }

    async fn wait_for_notifications(&self, count: usize) -> Vec<Notification> {
        for _ in 0..400 {
            let inbox = self.inbox.0.lock().unwrap().clone();
            if inbox.len() >= count {
                return inbox;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "expected {count} notifications, got {:?}",
            self.inbox.0.lock().unwrap()
        );
    }

    fn notifications(&self) -> Vec<Notification> {
        self.inbox.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_portrait_trains_end_to_end_through_the_webhook() {
    let h = Harness::start(SimConfig::default()).await;
    let id = h.train(AvatarType::Portrait).await;
    let avatar = h.wait_for_status(id, &[AvatarStatus::Trained]).await;

    let Some(TrainedModel::Portrait {
        lora_file_url,
        config_file_url,
        trigger_phrase,
    }) = avatar.model
    else {
        panic!("{:?}", avatar.model);
    };
    assert!(lora_file_url.ends_with(".safetensors"), "{lora_file_url}");
    assert!(config_file_url.is_some());
    assert!(trigger_phrase.starts_with("PERSON_"));

    // Exactly one paid submission, on the portrait trainer, with the preset's parameters, the
    // zip served from our own store (nothing uploaded to FAL) and our webhook.
    let submissions = h.sim.submissions();
    assert_eq!(submissions.len(), 1);
    let s = &submissions[0];
    assert_eq!(s.model_id(), Some("fal-ai/flux-lora-portrait-trainer"));
    let body = s.body.as_ref().unwrap();
    assert_eq!(body["steps"], 300);
    assert_eq!(body["learning_rate"], 0.0003);
    assert_eq!(body["trigger_phrase"], trigger_phrase.as_str());
    let archive = body["images_data_url"].as_str().unwrap();
    assert!(
        archive.starts_with(&format!("{}/fal-inputs/avatars/{id}/archives/", h.http)),
        "{archive}"
    );
    let webhook = s.query_param("fal_webhook").unwrap();
    assert!(webhook.contains(&format!("avatar_id={id}")), "{webhook}");
    assert!(h.sim.requests_of(RequestKind::Upload).is_empty());
    assert!(h.sim.requests_of(RequestKind::StorageInitiate).is_empty());

    // The completion came by webhook, and the user heard exactly once.
    let history = h.store.history(id).await.unwrap();
    let completed = history
        .iter()
        .find(|e| e.event_type == "TrainingCompleted")
        .unwrap();
    assert_eq!(completed.actor.as_deref(), Some("system:fal-webhook"));
    let inbox = h.wait_for_notifications(1).await;
    assert_eq!(
        inbox,
        vec![Notification::TrainingCompleted {
            owner: OWNER,
            avatar_id: id
        }]
    );
    h.stop().await;
}

#[tokio::test]
async fn a_style_trains_on_the_lora_trainer_in_style_mode_and_keeps_a_style_lora() {
    let h = Harness::start(SimConfig::default()).await;
    let id = h.train(AvatarType::Style).await;
    let avatar = h.wait_for_status(id, &[AvatarStatus::Trained]).await;
    assert!(
        matches!(avatar.model, Some(TrainedModel::StyleLora { ref lora_file_url, .. }) if !lora_file_url.is_empty()),
        "{:?}",
        avatar.model
    );
    let s = &h.sim.submissions()[0];
    assert_eq!(s.model_id(), Some("fal-ai/flux-lora-fast-training"));
    let body = s.body.as_ref().unwrap();
    assert_eq!(body["is_style"], true);
    assert_eq!(body["steps"], 500);
    assert!(body["images_data_url"]
        .as_str()
        .unwrap()
        .starts_with("http"));
    h.stop().await;
}

/// Where the operator chose the pro trainer (and FAL still serves it), a style avatar trains a
/// pro finetune and keeps its id.
#[tokio::test]
async fn a_style_trains_on_the_pro_trainer_when_chosen_and_keeps_a_finetune_id() {
    let h = Harness::start(SimConfig::default().with_pro_trainer(true)).await;
    let id = h
        .train_on(AvatarType::Style, StyleTrainer::ProFinetune)
        .await;
    let avatar = h.wait_for_status(id, &[AvatarStatus::Trained]).await;
    assert!(
        matches!(avatar.model, Some(TrainedModel::ProFinetune { ref finetune_id, .. }) if !finetune_id.is_empty())
    );
    let s = &h.sim.submissions()[0];
    assert_eq!(s.model_id(), Some("fal-ai/flux-pro-trainer"));
    let body = s.body.as_ref().unwrap();
    assert!(body["data_url"].as_str().unwrap().starts_with("http"));
    assert!(body.get("images_data_url").is_none());
    assert_eq!(body["iterations"], 300);
    h.stop().await;
}

#[tokio::test]
async fn the_poller_completes_a_training_whose_webhook_was_dropped() {
    let sim = SimConfig::default().with_webhook(WebhookBehaviour {
        drop_rate: 1.0,
        ..WebhookBehaviour::default()
    });
    let h = Harness::start(sim).await;
    let id = h.train(AvatarType::Portrait).await;
    h.wait_for_status(id, &[AvatarStatus::Trained]).await;
    let history = h.store.history(id).await.unwrap();
    let completed = history
        .iter()
        .find(|e| e.event_type == "TrainingCompleted")
        .unwrap();
    assert_eq!(completed.actor.as_deref(), Some("system:status-poller"));
    assert!(h.sim.webhook_deliveries().iter().all(|d| d.dropped));
    assert_eq!(h.wait_for_notifications(1).await.len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn duplicate_webhooks_produce_one_completion_and_one_notification() {
    let sim = SimConfig::default().with_webhook(WebhookBehaviour {
        duplicate_rate: 1.0,
        ..WebhookBehaviour::default()
    });
    let h = Harness::start(sim).await;
    let id = h.train(AvatarType::Portrait).await;
    h.wait_for_status(id, &[AvatarStatus::Trained]).await;
    for _ in 0..100 {
        if h.sim
            .webhook_deliveries()
            .iter()
            .filter(|d| d.status == Some(200))
            .count()
            >= 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(h
        .sim
        .webhook_deliveries()
        .iter()
        .any(|d| d.duplicate && d.status == Some(200)));
    // Whatever the duplicate could (wrongly) set off has run by then.
    crate::support::settle::settle(h.store.database(), None).await;
    let history = h.store.history(id).await.unwrap();
    assert_eq!(
        history
            .iter()
            .filter(|e| e.event_type == "TrainingCompleted")
            .count(),
        1
    );
    assert_eq!(h.notifications().len(), 1, "{:?}", h.notifications());
    h.stop().await;
}

#[tokio::test]
async fn a_failed_training_job_fails_the_avatar_and_tells_the_user() {
    let h = Harness::start(SimConfig::default().with_failure_rate(1.0)).await;
    let id = h.train(AvatarType::Portrait).await;
    h.wait_for_status(id, &[AvatarStatus::TrainingFailed]).await;
    let inbox = h.wait_for_notifications(1).await;
    assert!(
        matches!(&inbox[0], Notification::TrainingFailed { avatar_id, .. } if *avatar_id == id)
    );
    h.stop().await;
}

#[tokio::test]
async fn a_submit_answered_500_is_never_resubmitted_and_fails_visibly() {
    let h = Harness::start(SimConfig::default()).await;
    h.sim
        .fail_next(RequestKind::Submit, &[aisha::fal::sim::Fault::Status(500)]);
    let id = h.train(AvatarType::Portrait).await;
    h.wait_for_status(id, &[AvatarStatus::TrainingFailed]).await;
    assert_eq!(
        h.sim.submissions().len(),
        1,
        "a maybe-started paid job is not submitted again"
    );
    let inbox = h.wait_for_notifications(1).await;
    assert!(matches!(&inbox[0], Notification::TrainingFailed { .. }));
    h.stop().await;
}

#[tokio::test]
async fn a_submit_refused_with_429_is_retried_and_trains() {
    let h = Harness::start(SimConfig::default()).await;
    h.sim
        .fail_next(RequestKind::Submit, &[aisha::fal::sim::Fault::Status(429)]);
    let id = h.train(AvatarType::Portrait).await;
    h.wait_for_status(id, &[AvatarStatus::Trained]).await;
    let submits = h.sim.submissions();
    assert_eq!(submits.len(), 2);
    assert!(submits[0].fault.is_some() && submits[1].fault.is_none());
    h.stop().await;
}

#[tokio::test]
async fn trainings_end_under_random_faults_and_dropped_webhooks() {
    // 30% of FAL calls answer 429, 500 or time out, and 30% of webhooks never arrive.
    let sim = SimConfig::default()
        .with_faults(FaultRates {
            too_many_requests: 0.1,
            server_error: 0.1,
            stall: 0.1,
            stall_for: Duration::from_secs(4),
        })
        .with_webhook(WebhookBehaviour {
            drop_rate: 0.3,
            ..WebhookBehaviour::default()
        });
    // A submit whose answer stalls past the client's timeout may still have started a job,
    // so it is never resubmitted: its webhook (unless dropped) adopts it, else the deadline
    // ends it.
    let settings = ActorSettings {
        training_deadline: Duration::from_secs(8),
        ..ActorSettings::fast()
    };
    let h = Harness::start_with(sim, settings).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(h.train(AvatarType::Portrait).await);
    }
    // Every training ends, completed or failed, and its user hears about each outcome exactly
    // once. An outcome is one event — or two, when FAL's success came after the deadline had
    // failed the training: the model the user paid for is still theirs, and they hear both.
    for id in &ids {
        h.wait_for_status(*id, &[AvatarStatus::Trained, AvatarStatus::TrainingFailed])
            .await;
    }
    let mut outcomes = std::collections::HashMap::new();
    let mut settled = false;
    for _ in 0..400 {
        outcomes.clear();
        for id in &ids {
            let history = h.store.history(*id).await.unwrap();
            let ends: Vec<String> = history
                .iter()
                .filter_map(|e| match &e.event {
                    AvatarEvent::TrainingCompleted { .. } => Some("completed".to_owned()),
                    AvatarEvent::TrainingFailed { reason, .. } => Some(format!("failed: {reason}")),
                    _ => None,
                })
                .collect();
            outcomes.insert(*id, ends);
        }
        let total: usize = outcomes.values().map(Vec::len).sum();
        if h.notifications().len() == total {
            settled = true;
            break;
        }
        assert!(
            h.notifications().len() < total + 1,
            "more notifications than outcomes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(settled, "{outcomes:?}\n{:?}", h.notifications());
    for (id, ends) in &outcomes {
        match ends.as_slice() {
            [_] => {}
            [first, second] => {
                assert!(
                    first.contains("no result within") && second == "completed",
                    "{id}: {ends:?}"
                );
            }
            other => panic!("{id}: {other:?}"),
        }
        let heard = h
            .notifications()
            .iter()
            .filter(|n| match n {
                Notification::TrainingCompleted { avatar_id, .. }
                | Notification::TrainingFailed { avatar_id, .. } => avatar_id == id,
                _ => false,
            })
            .count();
        assert_eq!(heard, ends.len(), "{id}: {ends:?}");
    }
    h.stop().await;
}

#[tokio::test]
async fn generation_sends_exactly_the_preset_tables_endpoint_and_arguments() {
    let h = Harness::start(SimConfig::default().with_pro_trainer(true)).await;
    let portrait = h.train(AvatarType::Portrait).await;
    let style = h
        .train_on(AvatarType::Style, StyleTrainer::ProFinetune)
        .await;
    let portrait_avatar = h.wait_for_status(portrait, &[AvatarStatus::Trained]).await;
    h.wait_for_status(style, &[AvatarStatus::Trained]).await;
    let Some(TrainedModel::Portrait {
        lora_file_url,
        trigger_phrase,
        ..
    }) = portrait_avatar.model
    else {
        panic!()
    };

    let presets: Vec<Option<GenerationPreset>> = std::iter::once(None)
        .chain(GenerationPreset::ALL.map(Some))
        .collect();
    let prompt_for = |preset: &Option<GenerationPreset>| match preset {
        Some(p) => format!("on a bicycle, {}", p.as_str()),
        None => "on a bicycle".to_owned(),
    };
    for avatar in [portrait, style] {
        for preset in &presets {
            h.run(
                avatar,
                Actor::User(OWNER),
                Action::Generate {
                    generation_id: Uuid::new_v4(),
                    prompt: prompt_for(preset),
                    preset: *preset,
                    num_images: 1,
                    aspect: None,
                    batch: None,
                    origin: None,
                },
            )
            .await;
        }
    }
    // 2 training notifications + 18 generations.
    let inbox = h.wait_for_notifications(20).await;
    let completed = inbox
        .iter()
        .filter(
            |n| matches!(n, Notification::GenerationCompleted { images, .. } if images.len() == 1),
        )
        .count();
    assert_eq!(completed, 18, "{inbox:?}");

    // FAL gets our copy of the LoRA by a signed URL of ours; the recorded arguments name the
    // URL FAL made it at, which leads to that copy.
    let ours = format!(
        "{}/fal-inputs/{}?",
        h.http,
        aisha::photos::store::copy_key(portrait, &lora_file_url)
    );
    let submissions: Vec<_> = h
        .sim
        .submissions()
        .into_iter()
        .map(|mut s| {
            if let Some(path) = s.body.as_mut().and_then(|b| b.pointer_mut("/loras/0/path")) {
                assert!(path.as_str().unwrap().starts_with(&ours), "{path}");
                *path = serde_json::json!(lora_file_url);
            }
            s
        })
        .collect();
    let lora: Vec<_> = submissions
        .iter()
        .filter(|s| s.model_id() == Some("fal-ai/flux-lora"))
        .collect();
    let ultra: Vec<_> = submissions
        .iter()
        .filter(|s| s.model_id() == Some("fal-ai/flux-pro/v1.1-ultra-finetuned"))
        .collect();
    assert_eq!((lora.len(), ultra.len()), (9, 9));
    // Seed 000's defaults, exactly.
    let default_lora = lora
        .iter()
        .map(|s| s.body.clone().unwrap())
        .find(|b| b.get("num_inference_steps").is_none())
        .unwrap();
    assert_eq!(
        default_lora,
        serde_json::json!({
            "prompt": format!("{trigger_phrase} on a bicycle"),
            "loras": [{"path": lora_file_url, "scale": 1.0}],
            "image_size": "square_hd",
            "num_images": 1,
        })
    );
    let quality = lora
        .iter()
        .map(|s| s.body.clone().unwrap())
        .find(|b| b["num_inference_steps"] == 50)
        .unwrap();
    assert_eq!(quality["guidance_scale"], 4.0);
    assert_eq!(quality["loras"][0]["scale"], 1.2);
    let default_ultra = ultra
        .iter()
        .map(|s| s.body.clone().unwrap())
        .find(|b| {
            b["finetune_strength"] == 1.1 && b["aspect_ratio"] == "1:1" && b.get("raw").is_none()
        })
        .expect("seed 000 style defaults");
    assert!(default_ultra["finetune_id"].as_str().is_some());

    // Every preset, on both endpoints, exactly as the preset table says.
    let body_with = |list: &[&aisha::fal::sim::RecordedRequest], prompt: &str| {
        list.iter()
            .map(|s| s.body.clone().unwrap())
            .find(|b| b["prompt"].as_str().is_some_and(|p| p.ends_with(prompt)))
            .unwrap_or_else(|| panic!("no submission for {prompt}"))
    };
    for preset in GenerationPreset::ALL {
        let v = preset.values();
        let prompt = prompt_for(&Some(preset));
        let l = body_with(&lora, &prompt);
        assert_eq!(l["num_inference_steps"], v.steps, "{preset:?}");
        assert_eq!(l["guidance_scale"], v.guidance, "{preset:?}");
        assert_eq!(l["image_size"], v.image_size, "{preset:?}");
        assert_eq!(
            l["loras"],
            serde_json::json!([{"path": lora_file_url, "scale": v.lora_scale}]),
            "{preset:?}"
        );
        let u = body_with(&ultra, &prompt);
        assert_eq!(u["finetune_strength"], v.finetune_strength, "{preset:?}");
        assert_eq!(
            u["aspect_ratio"],
            aggregates::presets::aspect_ratio_for(v.image_size),
            "{preset:?}"
        );
        assert_eq!(u.get("raw").is_some(), v.raw, "{preset:?}");
        assert!(
            u["prompt"].as_str().unwrap().starts_with("STYLE_"),
            "{preset:?}"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn one_failed_generation_does_not_fail_the_others() {
    let h = Harness::start(SimConfig::default()).await;
    let id = h.train(AvatarType::Portrait).await;
    h.wait_for_status(id, &[AvatarStatus::Trained]).await;
    h.sim.fail_next_jobs(1);
    for _ in 0..4 {
        h.run(
            id,
            Actor::User(OWNER),
            Action::Generate {
                generation_id: Uuid::new_v4(),
                prompt: "in the snow".into(),
                preset: Some(GenerationPreset::Fast),
                num_images: 2,
                aspect: None,
                batch: None,
                origin: None,
            },
        )
        .await;
    }
    let inbox = h.wait_for_notifications(5).await;
    let failed = inbox
        .iter()
        .filter(|n| matches!(n, Notification::GenerationFailed { .. }))
        .count();
    let done = inbox
        .iter()
        .filter(
            |n| matches!(n, Notification::GenerationCompleted { images, .. } if images.len() == 2),
        )
        .count();
    assert_eq!((failed, done), (1, 3), "{inbox:?}");
    h.stop().await;
}

/// Forged, unsigned, stale and malformed webhooks never reach an avatar.
#[tokio::test]
async fn bad_webhooks_are_refused_with_the_right_status() {
    let seed = [7u8; 32];
    let h = Harness::start(SimConfig::default().with_signing_seed(seed)).await;
    let genuine = WebhookSigner::from_seed(seed, "sim-user");
    let signed =
        |request_id: &str, ts: i64, body: &[u8]| header_map(&genuine.sign(request_id, ts, body));
    let id = h.avatar_ready_to_train(AvatarType::Portrait).await;
    let url = format!("{}/webhooks/fal?avatar_id={id}", h.http);
    let client = reqwest::Client::new();
    let body = serde_json::to_vec(&serde_json::json!({
        "request_id": "r1", "gateway_request_id": "r1", "status": "OK",
        "payload": {"diffusers_lora_file": {"url": "http://x/lora.safetensors"}}
    }))
    .unwrap();
    let post = |headers: reqwest::header::HeaderMap, body: Vec<u8>| {
        client.post(&url).headers(headers).body(body).send()
    };
    let now = Utc::now().timestamp();

    let unsigned = post(Default::default(), body.clone()).await.unwrap();
    assert_eq!(unsigned.status(), 401);

    let forger = WebhookSigner::generate("sim-user");
    let forged = post(header_map(&forger.sign("r1", now, &body)), body.clone())
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    let stale = signed("r1", now - 3600, &body);
    assert_eq!(post(stale, body.clone()).await.unwrap().status(), 401);

    let tampered = signed("r1", now, &body);
    let mut other = body.clone();
    other.push(b' ');
    assert_eq!(post(tampered, other).await.unwrap().status(), 401);

    let garbage = b"not json".to_vec();
    let malformed = signed("r1", now, &garbage);
    assert_eq!(post(malformed, garbage).await.unwrap().status(), 400);

    let huge = vec![b'x'; 2 * 1024 * 1024];
    assert_eq!(post(Default::default(), huge).await.unwrap().status(), 413);

    assert_eq!(
        h.store.history(id).await.unwrap().len(),
        11,
        "nothing was recorded"
    );
    h.stop().await;
}

fn header_map(headers: &aisha::fal::webhook::WebhookHeaders) -> reqwest::header::HeaderMap {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers.pairs() {
        map.insert(name, value.parse().unwrap());
    }
    map
}

/// A crash while a training was being submitted, with no job ever reaching FAL (so no webhook
/// will come), is never resubmitted blindly: the deadline ends it visibly.
#[tokio::test]
async fn an_interrupted_submission_is_not_resubmitted_and_the_deadline_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("aisha.db").display());
    let id = Uuid::new_v4();
    {
        // The state a crash mid-submission leaves: training started, the work item marked as
        // submitting, no request id recorded.
        let db = aisha::store::Database::connect(&db_url).await.unwrap();
        db.migrate().await.unwrap();
        let store = AvatarStore::new(db.clone());
        let user = Actor::User(OWNER);
        let exec = |action| {
            store.execute(
                id,
                Command::new(user.clone(), Utc::now(), action),
                Uuid::new_v4(),
            )
        };
        exec(Action::Create {
            avatar_id: id,
            name: "x".into(),
            gender: Gender::Male,
            avatar_type: AvatarType::Portrait,
        })
        .await
        .unwrap();
        for n in 0..10 {
            exec(Action::UploadPhoto {
                photo: aggregates::PhotoMeta {
                    photo_id: format!("p{n}"),
                    content_hash: format!("{n:064x}"),
                    byte_size: 10,
                    width: 600,
                    height: 600,
                    format: aggregates::ImageFormat::Jpeg,
                    storage_key: format!("k{n}"),
                },
            })
            .await
            .unwrap();
        }
        exec(Action::StartTraining {
            training_id: Uuid::new_v4(),
            preset: TrainingPreset::Fast,
            style: Default::default(),
        })
        .await
        .unwrap();
        let aisha::store::Database::Sqlite(pool) = &db else {
            unreachable!()
        };
        left_claimed_by_a_dead_process(
            pool,
            "train",
            &format!("train:{id}:12"),
            id,
            serde_json::json!({"endpoint": "fal-ai/flux-lora-portrait-trainer",
                "params": {"trainer": "portrait", "trigger_phrase": "P", "steps": 300, "learning_rate": 0.0003,
                    "multiresolution_training": true, "subject_crop": true, "create_masks": false}}),
            Some("submitting"),
        )
        .await;
        db.close().await;
    }
    let settings = ActorSettings {
        training_deadline: Duration::from_secs(2),
        ..ActorSettings::fast()
    };
    let h = Harness::start_in(dir, SimConfig::default(), settings).await;
    h.wait_for_status(id, &[AvatarStatus::TrainingFailed]).await;
    let inbox = h.wait_for_notifications(1).await;
    assert!(
        matches!(&inbox[0], Notification::TrainingFailed { reason, .. } if reason.contains("no result")),
        "{inbox:?}"
    );
    assert!(
        h.sim.submissions().is_empty(),
        "nothing may be submitted again"
    );
    h.stop().await;
}

/// A notification whose delivery began before a crash (its item still marked `sending`) is sent
/// again after the restart rather than lost, and counted as a possible repeat; one that never
/// began is sent once and not counted.
#[tokio::test]
async fn a_notification_cut_short_by_a_crash_is_sent_again_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("aisha.db").display());
    let (cut_short, untouched) = (Uuid::new_v4(), Uuid::new_v4());
    {
        let db = aisha::store::Database::connect(&db_url).await.unwrap();
        db.migrate().await.unwrap();
        let aisha::store::Database::Sqlite(pool) = &db else {
            unreachable!()
        };
        for (avatar_id, phase) in [(cut_short, Some("sending")), (untouched, None)] {
            let notification = Notification::TrainingFailed {
                owner: OWNER,
                avatar_id,
                reason: "the trainer gave up".into(),
            };
            left_claimed_by_a_dead_process(
                pool,
                "notify",
                &format!("notify:{avatar_id}:7"),
                avatar_id,
                serde_json::to_value(&notification).unwrap(),
                phase,
            )
            .await;
        }
        db.close().await;
    }
    let h = Harness::start_in(dir, SimConfig::default(), ActorSettings::fast()).await;
    let inbox = h.wait_for_notifications(2).await;
    let mut told: Vec<Uuid> = inbox
        .iter()
        .map(|n| match n {
            Notification::TrainingFailed { avatar_id, .. } => *avatar_id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    told.sort();
    let mut expected = vec![cut_short, untouched];
    expected.sort();
    assert_eq!(told, expected, "each notification reaches the user");

    let metrics = aisha::telemetry::prometheus().render();
    let resent = metrics
        .lines()
        .find(|l| l.starts_with("notifications_resent_total"))
        .unwrap_or_else(|| panic!("no notifications_resent_total in\n{metrics}"));
    assert_eq!(
        resent, "notifications_resent_total 1",
        "only the cut-short one"
    );

    crate::support::settle::settle(h.store.database(), None).await;
    assert_eq!(h.notifications().len(), 2, "and each only once more");
    h.stop().await;
}

/// A work item as a crashed process leaves it: claimed once, in `phase`, its lease long lapsed.
async fn left_claimed_by_a_dead_process(
    pool: &sqlx::SqlitePool,
    kind: &str,
    key: &str,
    avatar_id: Uuid,
    payload: serde_json::Value,
    phase: Option<&str>,
) {
    sqlx::query(
        "INSERT INTO work_items (kind, key, avatar_id, payload, phase, attempts, due_at, claimed_until, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6, ?6)",
    )
    .bind(kind)
    .bind(key)
    .bind(avatar_id.to_string())
    .bind(payload.to_string())
    .bind(phase)
    .bind(Utc::now() - chrono::Duration::seconds(60))
    .execute(pool)
    .await
    .unwrap();
}

/// A notifier whose Telegram never answers: each call hangs until it is given up on.
struct Hanging(Arc<tokio::sync::Notify>);

impl Notifier for Hanging {
    fn notify<'a>(&'a self, _: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            self.0.notify_one();
            futures::future::pending().await
        })
    }
}

/// The claim of the `notify` item `key`: (claimed_until set, claim_token set, attempts, status).
async fn claim_of(pool: &sqlx::SqlitePool, key: &str) -> (bool, bool, i64, String) {
    sqlx::query_as(
        "SELECT claimed_until IS NOT NULL, claim_token IS NOT NULL, attempts, status
           FROM work_items WHERE key = ?1",
    )
    .bind(key)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_stop_gives_work_in_flight_its_grace_then_releases_its_claim() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("aisha.db").display());
    let avatar_id = Uuid::new_v4();
    let key = format!("notify:{avatar_id}:3");
    let db = aisha::store::Database::connect(&db_url).await.unwrap();
    db.migrate().await.unwrap();
    let aisha::store::Database::Sqlite(pool) = &db else {
        unreachable!()
    };
    let notification = Notification::TrainingFailed {
        owner: OWNER,
        avatar_id,
        reason: "the trainer gave up".into(),
    };
    sqlx::query(
        "INSERT INTO work_items (kind, key, avatar_id, payload, attempts, due_at, created_at)
         VALUES ('notify', ?1, ?2, ?3, 0, ?4, ?4)",
    )
    .bind(&key)
    .bind(avatar_id.to_string())
    .bind(serde_json::to_value(&notification).unwrap().to_string())
    .bind(Utc::now() - chrono::Duration::seconds(1))
    .execute(pool)
    .await
    .unwrap();

    let called = Arc::new(tokio::sync::Notify::new());
    let config = Config::offline(db_url.clone(), &dir.path().join("photos"));
    let options = AppOptions {
        actor_settings: ActorSettings::fast(),
        simulator: SimConfig::default(),
        notifier: Some(Arc::new(Hanging(called.clone()))),
    };
    let mut app = Application::build(config, options).await.unwrap();
    let grace = Duration::from_secs(2);
    app.inbox.grace = grace;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    // Given a notification in flight, its claim held and renewed,
    tokio::time::timeout(Duration::from_secs(20), called.notified())
        .await
        .expect("the notifier was called");
    let (claimed, token, _, status) = claim_of(pool, &key).await;
    assert!(
        claimed && token && status == "pending",
        "claimed while sent"
    );

    // when the instance is stopped,
    let asked = std::time::Instant::now();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the application stops within its grace and a little more")
        .unwrap()
        .unwrap();

    // then the hanging send had the grace to finish, no more: it was cut short and its claim
    // released, due again at once for whoever runs next, without counting as a failed attempt.
    assert!(
        asked.elapsed() >= grace * 3 / 4,
        "the work got its grace: {:?}",
        asked.elapsed()
    );
    assert_eq!(
        claim_of(pool, &key).await,
        (false, false, 0, "pending".to_owned()),
        "released, still pending, no attempt counted"
    );
    db.close().await;
}
