//! The FAL client and webhook verifier against the FAL simulator, over real HTTP.

use std::io::Write;
use std::time::Duration;

use aggregates::presets::{
    FluxLoraInput, LoraWeight, TrainerParams, UltraFinetunedInput, PORTRAIT_GENERATOR,
    PORTRAIT_TRAINER, STYLE_GENERATOR, STYLE_TRAINER,
};
use aggregates::{AvatarType, TrainingPreset};
use aisha::fal::sim::{Fault, FaultRates, RequestKind, WebhookBehaviour};
use aisha::fal::types::{
    GeneratorOutput, PortraitTrainerOutput, QueueState, QueueStatus, StyleTrainerOutput,
    SubmitResponse, WebhookStatus,
};
use aisha::fal::webhook::{VerifierConfig, WebhookHeaders};
use aisha::fal::{
    FalClient, FalClientConfig, FalError, FalSimulator, RetryPolicy, SimConfig, Timeouts,
    WebhookError, WebhookSigner, WebhookVerifier,
};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const KEY: &str = "test-key-7f3a9c";
/// Generous: only a hung test waits this long.
const PATIENCE: Duration = Duration::from_secs(30);
const SEED: [u8; 32] = [42; 32];

/// These tests also cover the deprecated pro trainer, which the simulator serves only when told.
async fn sim(config: SimConfig) -> FalSimulator {
    FalSimulator::spawn(config.with_pro_trainer(true))
        .await
        .expect("start the FAL simulator")
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
    }
}

fn config_for(sim: &FalSimulator) -> FalClientConfig {
    FalClientConfig::new(sim.queue_url(), sim.rest_url(), Some(KEY.to_owned()))
        .with_retry(fast_retries())
}

fn client(sim: &FalSimulator) -> FalClient {
    FalClient::new(config_for(sim)).expect("client")
}

/// A zip of `n` small PNG photos, as the training actor would pack them.
fn photo_zip(n: usize) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..n {
        let image = image::RgbImage::from_pixel(8, 8, image::Rgb([i as u8 * 20, 100, 200]));
        let mut png = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        zip.start_file(
            format!("photo_{i}.png"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.write_all(&png).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

async fn upload_photos(client: &FalClient) -> String {
    client
        .upload(photo_zip(3), "application/zip", "photos.zip")
        .await
        .expect("upload photos")
}

/// Polls until COMPLETED, checking that the state never goes backwards.
async fn until_completed(client: &FalClient, status_url: &str) -> QueueStatus {
    let rank = |s: QueueState| match s {
        QueueState::InQueue => 0,
        QueueState::InProgress => 1,
        QueueState::Completed => 2,
        QueueState::Unknown => panic!("unknown state"),
    };
    let mut last = 0;
    tokio::time::timeout(PATIENCE, async {
        loop {
            let status = client.status(status_url, true).await.expect("status");
            assert!(rank(status.status) >= last, "state went backwards");
            last = rank(status.status);
            if status.is_completed() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("job completes")
}

async fn until_state(client: &FalClient, status_url: &str, wanted: QueueState) -> QueueStatus {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let status = client.status(status_url, true).await.expect("status");
            if status.status == wanted {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("job reaches the state")
}

/// Waits for a condition that becomes true without our doing anything.
async fn eventually(mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("condition holds in time")
}

async fn train_portrait(
    client: &FalClient,
    webhook: Option<&str>,
) -> (SubmitResponse, PortraitTrainerOutput) {
    let archive = upload_photos(client).await;
    let params = TrainerParams::for_preset(
        AvatarType::Portrait,
        aggregates::StyleTrainer::ProFinetune,
        TrainingPreset::Fast,
        "PERSON_1a2b3c4d",
        "Ann",
    );
    let submitted = client
        .submit(params.endpoint(), &params.to_fal_input(&archive), webhook)
        .await
        .expect("submit portrait training");
    until_completed(client, &submitted.status_url).await;
    let output = client
        .result(&submitted.response_url)
        .await
        .expect("result");
    (submitted, output)
}

async fn train_style(
    client: &FalClient,
    webhook: Option<&str>,
) -> (SubmitResponse, StyleTrainerOutput) {
    let archive = upload_photos(client).await;
    let params = TrainerParams::for_preset(
        AvatarType::Style,
        aggregates::StyleTrainer::ProFinetune,
        TrainingPreset::Fast,
        "STYLE_1a2b3c4d",
        "Ink",
    );
    let submitted = client
        .submit(params.endpoint(), &params.to_fal_input(&archive), webhook)
        .await
        .expect("submit style training");
    until_completed(client, &submitted.status_url).await;
    let output = client
        .result(&submitted.response_url)
        .await
        .expect("result");
    (submitted, output)
}

fn assert_submit_shape(sim: &FalSimulator, submitted: &SubmitResponse, app_id: &str) {
    let id = uuid::Uuid::parse_str(&submitted.request_id).expect("request id is a UUID");
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(
        submitted.gateway_request_id.as_deref(),
        Some(submitted.request_id.as_str())
    );
    assert_eq!(submitted.status, QueueState::InQueue);
    let base = format!(
        "{}/{app_id}/requests/{}",
        sim.queue_url(),
        submitted.request_id
    );
    assert_eq!(submitted.response_url, base);
    assert_eq!(submitted.status_url, format!("{base}/status"));
    assert_eq!(submitted.cancel_url, format!("{base}/cancel"));
}

/// A small server standing in for Aisha's `POST /webhooks/fal`.
struct Receiver {
    url: String,
    deliveries: mpsc::UnboundedReceiver<(HeaderMap, Bytes)>,
}

impl Receiver {
    async fn start() -> Self {
        let (tx, deliveries) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/webhooks/fal",
            post(move |headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((headers, body));
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhooks/fal", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, deliveries }
    }

    async fn next(&mut self) -> (HeaderMap, Bytes) {
        tokio::time::timeout(PATIENCE, self.deliveries.recv())
            .await
            .expect("a webhook arrives")
            .expect("receiver open")
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn portrait_training_moves_through_the_queue_to_real_lora_files() {
    let sim = sim(SimConfig::default().paused()).await;
    let client = client(&sim);
    let archive = upload_photos(&client).await;
    let params = TrainerParams::for_preset(
        AvatarType::Portrait,
        aggregates::StyleTrainer::ProFinetune,
        TrainingPreset::Balanced,
        "PERSON_0badf00d",
        "Ann",
    );
    let submitted = client
        .submit(PORTRAIT_TRAINER, &params.to_fal_input(&archive), None)
        .await
        .unwrap();
    assert_submit_shape(&sim, &submitted, PORTRAIT_TRAINER);

    // Held in the queue until the test lets it move.
    let queued = client.status(&submitted.status_url, false).await.unwrap();
    assert_eq!(queued.status, QueueState::InQueue);
    assert!(queued.queue_position.is_some());
    assert!(queued.logs.is_none(), "no logs unless asked for");

    sim.step_jobs(); // out of the queue
    let running = until_state(&client, &submitted.status_url, QueueState::InProgress).await;
    assert!(running.queue_position.is_none());
    sim.step_jobs(); // one training step, which writes a progress line
    tokio::time::timeout(PATIENCE, async {
        loop {
            let status = client.status(&submitted.status_url, true).await.unwrap();
            assert_eq!(
                status.status,
                QueueState::InProgress,
                "held before completing"
            );
            let logs = status.logs.unwrap_or_default();
            if logs.iter().any(|l| l.message.starts_with("Training step")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a progress line appears");

    // Not finished: the result is refused, and nothing is invented.
    let early = client
        .result::<PortraitTrainerOutput>(&submitted.response_url)
        .await;
    assert!(
        matches!(early, Err(FalError::Http { status: 400, .. })),
        "{early:?}"
    );

    sim.resume_jobs();
    let done = until_completed(&client, &submitted.status_url).await;
    assert!(done.metrics.and_then(|m| m.inference_time).is_some());

    let output: PortraitTrainerOutput = client.result(&submitted.response_url).await.unwrap();
    let lora = client.download(output.lora_url().unwrap()).await.unwrap();
    let header_len = u64::from_le_bytes(lora[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&lora[8..8 + header_len]).unwrap();
    assert_eq!(header["__metadata__"]["trigger_phrase"], "PERSON_0badf00d");

    let config_file = output.config_file.clone().unwrap();
    assert_eq!(config_file.file_name.as_deref(), Some("config.json"));
    let config_bytes = client.download(output.config_url().unwrap()).await.unwrap();
    assert_eq!(config_file.file_size, Some(config_bytes.len() as u64));
    let config: Value = serde_json::from_slice(&config_bytes).unwrap();
    assert_eq!(config["steps"], 600);
}

#[tokio::test]
async fn style_training_returns_a_finetune_id() {
    let sim = sim(SimConfig::default()).await;
    let client = client(&sim);
    let (submitted, output) = train_style(&client, None).await;
    assert_submit_shape(&sim, &submitted, STYLE_TRAINER);
    assert!(!output.finetune_id.is_empty());
    let sent = &sim.submissions()[0];
    assert_eq!(sent.model_id(), Some(STYLE_TRAINER));
    assert_eq!(
        sent.body.as_ref().unwrap()["trigger_word"],
        "STYLE_1a2b3c4d"
    );
}

#[tokio::test]
async fn portrait_generation_returns_real_images() {
    let sim = sim(SimConfig::default()).await;
    let client = client(&sim);
    let (_, trained) = train_portrait(&client, None).await;
    let input = FluxLoraInput {
        prompt: "PERSON_1a2b3c4d in a field of sunflowers".into(),
        loras: vec![LoraWeight {
            path: trained.lora_url().unwrap().to_owned(),
            scale: 1.0,
        }],
        image_size: "portrait_4_3".into(),
        num_inference_steps: Some(28),
        guidance_scale: Some(3.5),
        num_images: 2,
    };
    let submitted = client
        .submit_input(PORTRAIT_GENERATOR, &input, None)
        .await
        .unwrap();
    assert_submit_shape(&sim, &submitted, PORTRAIT_GENERATOR);
    until_completed(&client, &submitted.status_url).await;
    let output: GeneratorOutput = client.result(&submitted.response_url).await.unwrap();
    assert_eq!(output.images.len(), 2);
    assert_eq!(output.has_nsfw_concepts, vec![false, false]);
    assert_eq!(output.prompt.as_deref(), Some(input.prompt.as_str()));
    assert!(output.seed.is_some());

    let mut pictures = Vec::new();
    for image in &output.images {
        // FAL's default output format is JPEG.
        assert_eq!(image.content_type.as_deref(), Some("image/jpeg"));
        let bytes = client.download(&image.url).await.unwrap();
        let decoded = image::load_from_memory(&bytes).expect("a real image");
        assert_eq!(Some(decoded.width()), image.width);
        assert_eq!(Some(decoded.height()), image.height);
        assert!(
            decoded.height() > decoded.width(),
            "portrait_4_3 is taller than wide"
        );
        pictures.push(bytes);
    }
    assert_ne!(pictures[0], pictures[1]);

    // PNG when asked for.
    let mut png_input = serde_json::to_value(&input).unwrap();
    png_input["output_format"] = json!("png");
    png_input["num_images"] = json!(1);
    let submitted = client
        .submit(PORTRAIT_GENERATOR, &png_input, None)
        .await
        .unwrap();
    until_completed(&client, &submitted.status_url).await;
    let output: GeneratorOutput = client.result(&submitted.response_url).await.unwrap();
    let bytes = client.download(&output.images[0].url).await.unwrap();
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        image::ImageFormat::Png
    );
}

#[tokio::test]
async fn style_generation_on_a_sub_path_model_uses_urls_built_on_the_app_id() {
    let sim = sim(SimConfig::default()).await;
    let client = client(&sim);
    let (_, trained) = train_style(&client, None).await;
    let input = UltraFinetunedInput {
        prompt: "STYLE_1a2b3c4d a lighthouse".into(),
        finetune_id: trained.finetune_id.clone(),
        finetune_strength: 1.1,
        aspect_ratio: "1:1".into(),
        num_images: 1,
        raw: false,
    };
    let submitted = client
        .submit_input(STYLE_GENERATOR, &input, None)
        .await
        .unwrap();
    // Submitted to the full model id, answered with URLs on the app id alone.
    assert_eq!(
        sim.submissions().last().unwrap().path,
        "/queue/fal-ai/flux-pro/v1.1-ultra-finetuned"
    );
    assert_submit_shape(&sim, &submitted, "fal-ai/flux-pro");
    until_completed(&client, &submitted.status_url).await;
    let output: GeneratorOutput = client.result(&submitted.response_url).await.unwrap();
    let image = &output.images[0];
    assert_eq!(image.width, image.height, "1:1");
    let decoded = image::load_from_memory(&client.download(&image.url).await.unwrap()).unwrap();
    assert_eq!(Some(decoded.width()), image.width);

    // Rebuilding the URL from the model id, as the old code did, finds nothing.
    let wrong = format!(
        "{}/{STYLE_GENERATOR}/requests/{}/status",
        sim.queue_url(),
        submitted.request_id
    );
    assert!(matches!(
        client.status(&wrong, false).await,
        Err(FalError::NotFound { .. })
    ));
}

/// Submits `input`, which FAL's queue takes, and answers the error the finished job's result
/// gives: as on FAL, inputs are checked when the job runs, not at submit.
async fn refused_when_run(client: &FalClient, model: &str, input: &Value) -> FalError {
    let submitted = client
        .submit(model, input, None)
        .await
        .expect("taken at submit");
    until_completed(client, &submitted.status_url).await;
    client
        .result::<Value>(&submitted.response_url)
        .await
        .expect_err("the job refuses its input")
}

#[tokio::test]
async fn invalid_inputs_are_refused_with_fals_validation_detail() {
    let sim = sim(SimConfig::default()).await;
    let client = client(&sim);

    let err = refused_when_run(
        &client,
        PORTRAIT_GENERATOR,
        &json!({"num_images": 9, "loras": []}),
    )
    .await;
    let FalError::Validation { detail } = err else {
        panic!("expected a validation error, got {err:?}");
    };
    assert!(detail.contains("body.prompt: Field required"), "{detail}");
    assert!(
        detail.contains("body.num_images: Input should be less than or equal to 4"),
        "{detail}"
    );

    let err = refused_when_run(
        &client,
        STYLE_GENERATOR,
        &json!({"prompt": "x", "finetune_id": "nope", "finetune_strength": 1.0}),
    )
    .await;
    assert!(
        matches!(&err, FalError::Validation { detail } if detail.contains("finetune_id")),
        "{err:?}"
    );

    let err = refused_when_run(
        &client,
        PORTRAIT_GENERATOR,
        &json!({"prompt": "x", "loras": [{"path": "https://elsewhere/l.safetensors"}]}),
    )
    .await;
    assert!(
        matches!(&err, FalError::Validation { detail } if detail.contains("body.loras.0.path")),
        "{err:?}"
    );

    // Archives: never uploaded, not a zip, a zip without images.
    let params = TrainerParams::for_preset(
        AvatarType::Portrait,
        aggregates::StyleTrainer::ProFinetune,
        TrainingPreset::Fast,
        "P",
        "x",
    );
    let not_uploaded = format!("{}/files/0123/photos.zip", sim.base_url());
    let not_zip = client
        .upload(b"plain text".to_vec(), "application/zip", "a.zip")
        .await
        .unwrap();
    let mut empty = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    empty
        .start_file("notes.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    empty.write_all(b"no photos here").unwrap();
    let no_images = client
        .upload(
            empty.finish().unwrap().into_inner(),
            "application/zip",
            "b.zip",
        )
        .await
        .unwrap();
    for (archive, why) in [
        (not_uploaded, "not found"),
        (not_zip, "not a valid zip"),
        (no_images, "no images"),
    ] {
        let input = params.to_fal_input(&archive);
        let err = refused_when_run(&client, PORTRAIT_TRAINER, &input).await;
        assert!(
            matches!(&err, FalError::Validation { detail } if detail.contains("body.images_data_url") && detail.contains(why)),
            "{why}: {err:?}"
        );
    }

    let err = client
        .submit("fal-ai/no-such-model", &json!({}), None)
        .await
        .unwrap_err();
    assert!(matches!(err, FalError::NotFound { .. }), "{err:?}");
    // Only the unknown model was refused at submit; every invalid input was queued.
    assert_eq!(sim.job_count(), 6);
}

#[tokio::test]
async fn uploads_round_trip_through_storage_without_the_key_leaving_for_storage() {
    let sim = sim(SimConfig::default()).await;
    let client = client(&sim);
    let data = photo_zip(2);
    let url = client
        .upload(data.clone(), "application/zip", "photos.zip")
        .await
        .unwrap();
    assert!(url.starts_with(&format!("{}/files/", sim.base_url())));
    assert_eq!(
        client.download(&url).await.unwrap(),
        Bytes::from(data.clone())
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive.zip");
    std::fs::write(&path, &data).unwrap();
    let from_file = client
        .upload(path, "application/zip", "archive.zip")
        .await
        .unwrap();
    assert_eq!(sim.file_bytes(&from_file).unwrap(), Bytes::from(data));

    let initiate = &sim.requests_of(RequestKind::StorageInitiate)[0];
    assert_eq!(
        initiate.query_param("storage_type").as_deref(),
        Some("fal-cdn-v3")
    );
    assert_eq!(
        initiate.body.as_ref().unwrap()["content_type"],
        "application/zip"
    );
    assert_eq!(initiate.body.as_ref().unwrap()["file_name"], "photos.zip");
    assert!(initiate.authorized);
    let puts = sim.requests_of(RequestKind::Upload);
    assert_eq!(puts.len(), 2);
    assert!(
        puts.iter().all(|put| !put.authorized),
        "pre-signed uploads get no API key"
    );

    // The size cap holds.
    let small = FalClient::new(config_for(&sim).with_max_download_bytes(10)).unwrap();
    assert!(matches!(
        small.download(&url).await,
        Err(FalError::TooLarge { limit: 10 })
    ));
}

#[tokio::test]
async fn cancel_works_until_the_job_completes() {
    let sim = sim(SimConfig::default().paused()).await;
    let client = client(&sim);
    let archive = upload_photos(&client).await;
    let params = TrainerParams::for_preset(
        AvatarType::Style,
        aggregates::StyleTrainer::ProFinetune,
        TrainingPreset::Fast,
        "S",
        "x",
    );
    let input = params.to_fal_input(&archive);

    let first = client.submit(STYLE_TRAINER, &input, None).await.unwrap();
    client
        .cancel(&first.cancel_url)
        .await
        .expect("cancel a queued job");
    until_completed(&client, &first.status_url).await;
    let result = client
        .result::<StyleTrainerOutput>(&first.response_url)
        .await;
    assert!(
        matches!(result, Err(FalError::Http { status: 400, .. })),
        "{result:?}"
    );

    sim.resume_jobs();
    let second = client.submit(STYLE_TRAINER, &input, None).await.unwrap();
    until_completed(&client, &second.status_url).await;
    let late = client.cancel(&second.cancel_url).await;
    assert!(matches!(late, Err(FalError::AlreadyCompleted)), "{late:?}");
    assert!(client
        .result::<StyleTrainerOutput>(&second.response_url)
        .await
        .is_ok());
}

#[tokio::test]
async fn webhooks_arrive_signed_and_verify_against_the_simulators_jwks() {
    let sim = sim(SimConfig::default().with_gateway_retry_rate(1.0)).await;
    let client = client(&sim);
    let mut receiver = Receiver::start().await;
    let (submitted, output) = train_style(&client, Some(&receiver.url)).await;
    assert_eq!(
        sim.submissions()[0].query_param("fal_webhook").as_deref(),
        Some(receiver.url.as_str())
    );
    // An internal retry on FAL's side: the ids differ, and `request_id` is the one we keep.
    assert_ne!(
        submitted.gateway_request_id.as_deref(),
        Some(submitted.request_id.as_str())
    );

    let (headers, body) = receiver.next().await;
    let verifier = WebhookVerifier::new(sim.jwks_url());
    let hook = verifier
        .verify(&headers, &body, now())
        .await
        .expect("a genuine webhook");
    assert_eq!(hook.request_id, submitted.request_id);
    assert_eq!(hook.gateway_request_id, submitted.gateway_request_id);
    assert_eq!(hook.status, WebhookStatus::Ok);
    assert_eq!(
        hook.output::<StyleTrainerOutput>().unwrap().unwrap(),
        output
    );
    assert_eq!(headers["x-fal-webhook-user-id"], sim.user_id());
}

#[tokio::test]
async fn failed_jobs_report_their_error_in_result_and_webhook() {
    let sim = sim(SimConfig::default()).await;
    let client = client(&sim);
    let mut receiver = Receiver::start().await;
    sim.fail_next_jobs(1);
    let archive = upload_photos(&client).await;
    let params = TrainerParams::for_preset(
        AvatarType::Portrait,
        aggregates::StyleTrainer::ProFinetune,
        TrainingPreset::Fast,
        "P",
        "x",
    );
    let submitted = client
        .submit(
            PORTRAIT_TRAINER,
            &params.to_fal_input(&archive),
            Some(&receiver.url),
        )
        .await
        .unwrap();
    // COMPLETED means finished, not succeeded.
    until_completed(&client, &submitted.status_url).await;
    let err = client
        .result::<PortraitTrainerOutput>(&submitted.response_url)
        .await
        .unwrap_err();
    // A job failing at random is a runner error (500), as FAL reports one.
    assert!(
        matches!(&err, FalError::Server { status: 500, detail, .. } if detail.contains("simulated")),
        "{err:?}"
    );

    let (headers, body) = receiver.next().await;
    let hook = WebhookVerifier::new(sim.jwks_url())
        .verify(&headers, &body, now())
        .await
        .unwrap();
    assert_eq!(hook.status, WebhookStatus::Error);
    assert!(hook.error_message().unwrap().contains("500"));
    assert!(hook.output::<PortraitTrainerOutput>().is_none());
}

#[tokio::test]
async fn forged_unsigned_stale_tampered_and_malformed_webhooks_are_refused() {
    let sim = sim(SimConfig::default().with_signing_seed(SEED)).await;
    let client = client(&sim);
    let mut receiver = Receiver::start().await;
    train_style(&client, Some(&receiver.url)).await;
    let (headers, body) = receiver.next().await;
    let verifier = WebhookVerifier::new(sim.jwks_url());
    verifier
        .verify(&headers, &body, now())
        .await
        .expect("the genuine one passes");
    let request_id = headers["x-fal-webhook-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    // Another key, whatever it signs.
    let forger = WebhookSigner::generate(sim.user_id());
    let forged = forger.sign(&request_id, now(), &body).to_header_map();
    let err = verifier.verify(&forged, &body, now()).await.unwrap_err();
    assert!(matches!(err, WebhookError::InvalidSignature), "{err:?}");

    // No signature headers at all.
    let err = verifier
        .verify(&HeaderMap::new(), &body, now())
        .await
        .unwrap_err();
    assert!(matches!(err, WebhookError::MissingHeader(_)), "{err:?}");

    // The right key, but too old (a replay) or from the future.
    let genuine = WebhookSigner::from_seed(SEED, sim.user_id());
    let stale = genuine
        .sign(&request_id, now() - 301, &body)
        .to_header_map();
    let err = verifier.verify(&stale, &body, now()).await.unwrap_err();
    assert!(matches!(err, WebhookError::StaleTimestamp), "{err:?}");
    let future = genuine
        .sign(&request_id, now() + 3600, &body)
        .to_header_map();
    assert!(matches!(
        verifier.verify(&future, &body, now()).await,
        Err(WebhookError::StaleTimestamp)
    ));

    // A genuine signature over another body.
    let mut tampered = body.to_vec();
    let text = String::from_utf8(tampered.clone())
        .unwrap()
        .replace("\"OK\"", "\"ERROR\"");
    tampered = text.into_bytes();
    assert_ne!(tampered, body.to_vec());
    let err = verifier
        .verify(&headers, &tampered, now())
        .await
        .unwrap_err();
    assert!(matches!(err, WebhookError::InvalidSignature), "{err:?}");

    // Garbled signature.
    let mut garbled = headers.clone();
    garbled.insert("x-fal-webhook-signature", "not-hex".parse().unwrap());
    let err = verifier.verify(&garbled, &body, now()).await.unwrap_err();
    assert!(matches!(err, WebhookError::BadSignatureEncoding), "{err:?}");

    // Correctly signed, but not a webhook body, or about another request.
    let junk = b"not json at all";
    let signed_junk = genuine.sign(&request_id, now(), junk).to_header_map();
    let err = verifier
        .verify(&signed_junk, junk, now())
        .await
        .unwrap_err();
    assert!(matches!(err, WebhookError::Malformed(_)), "{err:?}");
    let other = genuine
        .sign("another-request", now(), &body)
        .to_header_map();
    let err = verifier.verify(&other, &body, now()).await.unwrap_err();
    assert!(matches!(err, WebhookError::RequestIdMismatch), "{err:?}");

    // The forgeries did not make the verifier hammer the JWKS: one fetch, one refresh at most.
    let fetches = sim.requests_of(RequestKind::Jwks).len();
    assert!((1..=2).contains(&fetches), "{fetches} JWKS fetches");
    for _ in 0..5 {
        let _ = verifier.verify(&forged, &body, now()).await;
    }
    assert_eq!(sim.requests_of(RequestKind::Jwks).len(), fetches);
}

#[tokio::test]
async fn padded_and_unpadded_jwks_keys_both_verify() {
    for padded in [true, false] {
        let sim = sim(SimConfig::default()
            .with_signing_seed(SEED)
            .with_jwks_padded(padded)
            .with_jwks_decoy_keys(2))
        .await;
        let document: Value = reqwest::get(sim.jwks_url())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let keys = document["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 3);
        for key in keys {
            assert_eq!(key["kty"], "OKP");
            assert_eq!(key["crv"], "Ed25519");
            assert_eq!(key["x"].as_str().unwrap().ends_with('='), padded);
        }

        let body = br#"{"request_id":"r-1","gateway_request_id":"r-1","status":"OK","payload":{"finetune_id":"f"}}"#;
        let headers = WebhookSigner::from_seed(SEED, "u")
            .sign("r-1", now(), body)
            .to_header_map();
        let hook = WebhookVerifier::new(sim.jwks_url())
            .verify(&headers, body, now())
            .await
            .unwrap_or_else(|e| panic!("padded={padded}: {e}"));
        assert_eq!(hook.request_id, "r-1");
    }
}

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_by_refreshing_the_jwks() {
    let sim = sim(SimConfig::default()).await;
    let client = client(&sim);
    let mut receiver = Receiver::start().await;
    let verifier = WebhookVerifier::with_config(
        VerifierConfig::new(sim.jwks_url()).with_min_refresh_interval(Duration::ZERO),
    );
    train_style(&client, Some(&receiver.url)).await;
    let (headers, body) = receiver.next().await;
    verifier.verify(&headers, &body, now()).await.unwrap();

    sim.rotate_signing_key();
    train_style(&client, Some(&receiver.url)).await;
    let (headers, body) = receiver.next().await;
    verifier
        .verify(&headers, &body, now())
        .await
        .expect("verified after a refresh");
    assert_eq!(sim.requests_of(RequestKind::Jwks).len(), 2);

    // Without a reachable JWKS there is nothing to verify against.
    let nowhere = WebhookVerifier::new(format!("{}/missing/jwks.json", sim.base_url()));
    let err = nowhere.verify(&headers, &body, now()).await.unwrap_err();
    assert!(matches!(err, WebhookError::KeysUnavailable(_)), "{err:?}");
}

#[tokio::test]
async fn webhooks_can_be_duplicated_or_dropped() {
    let duplicating = sim(SimConfig::default().with_webhook(WebhookBehaviour {
        duplicate_rate: 1.0,
        ..WebhookBehaviour::default()
    }))
    .await;
    let client_a = client(&duplicating);
    let mut receiver = Receiver::start().await;
    let (submitted, _) = train_style(&client_a, Some(&receiver.url)).await;
    let verifier = WebhookVerifier::new(duplicating.jwks_url());
    for _ in 0..2 {
        let (headers, body) = receiver.next().await;
        let hook = verifier.verify(&headers, &body, now()).await.unwrap();
        assert_eq!(hook.request_id, submitted.request_id);
    }

    let dropping = sim(SimConfig::default().with_webhook(WebhookBehaviour {
        drop_rate: 1.0,
        ..WebhookBehaviour::default()
    }))
    .await;
    let client_b = client(&dropping);
    let mut quiet = Receiver::start().await;
    train_style(&client_b, Some(&quiet.url)).await;
    eventually(|| !dropping.webhook_deliveries().is_empty()).await;
    assert!(dropping.webhook_deliveries().iter().all(|d| d.dropped));
    assert!(
        quiet.deliveries.try_recv().is_err(),
        "a dropped webhook never arrives"
    );
}

#[tokio::test]
async fn transient_faults_on_idempotent_calls_are_retried() {
    let sim = sim(SimConfig::default()).await;
    let client = client(&sim);

    sim.fail_next(RequestKind::StorageInitiate, &[Fault::TOO_MANY_REQUESTS]);
    sim.fail_next(RequestKind::Upload, &[Fault::SERVER_ERROR]);
    let archive = upload_photos(&client).await;

    let params = TrainerParams::for_preset(
        AvatarType::Style,
        aggregates::StyleTrainer::ProFinetune,
        TrainingPreset::Fast,
        "S",
        "x",
    );
    let submitted = client
        .submit(STYLE_TRAINER, &params.to_fal_input(&archive), None)
        .await
        .unwrap();

    sim.fail_next(
        RequestKind::Status,
        &[
            Fault::TOO_MANY_REQUESTS,
            Fault::SERVER_ERROR,
            Fault::Status(503),
        ],
    );
    until_completed(&client, &submitted.status_url).await;
    let statuses = sim.requests_of(RequestKind::Status);
    assert_eq!(statuses.iter().filter(|r| r.fault.is_some()).count(), 3);

    sim.fail_next(
        RequestKind::Result,
        &[Fault::SERVER_ERROR, Fault::TOO_MANY_REQUESTS],
    );
    client
        .result::<StyleTrainerOutput>(&submitted.response_url)
        .await
        .expect("result after retries");
    assert_eq!(sim.requests_of(RequestKind::Result).len(), 3);

    sim.fail_next(RequestKind::File, &[Fault::SERVER_ERROR]);
    client
        .download(&archive)
        .await
        .expect("download after a retry");

    sim.fail_next(RequestKind::Cancel, &[Fault::SERVER_ERROR]);
    let late = client.cancel(&submitted.cancel_url).await;
    assert!(matches!(late, Err(FalError::AlreadyCompleted)), "{late:?}");
    assert_eq!(sim.requests_of(RequestKind::Cancel).len(), 2);

    // Random faults too: every call still gets through.
    sim.set_fault_rates(FaultRates {
        too_many_requests: 0.2,
        server_error: 0.2,
        ..FaultRates::default()
    });
    let patient = FalClient::new(config_for(&sim).with_retry(RetryPolicy {
        max_attempts: 30,
        ..fast_retries()
    }))
    .unwrap();
    for _ in 0..5 {
        patient
            .status(&submitted.status_url, false)
            .await
            .expect("status through random faults");
    }
}

#[tokio::test]
async fn persistent_faults_fail_cleanly_with_typed_errors() {
    let sim = sim(SimConfig::default()).await;
    let client = client(&sim);
    let archive = upload_photos(&client).await;
    let params = TrainerParams::for_preset(
        AvatarType::Style,
        aggregates::StyleTrainer::ProFinetune,
        TrainingPreset::Fast,
        "S",
        "x",
    );
    let submitted = client
        .submit(STYLE_TRAINER, &params.to_fal_input(&archive), None)
        .await
        .unwrap();

    sim.fail_next(RequestKind::Status, &[Fault::SERVER_ERROR; 4]);
    let err = client
        .status(&submitted.status_url, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FalError::Server { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(
        sim.requests_of(RequestKind::Status).len(),
        4,
        "max_attempts in all"
    );

    sim.fail_next(RequestKind::Result, &[Fault::TOO_MANY_REQUESTS; 4]);
    let err = client
        .result::<Value>(&submitted.response_url)
        .await
        .unwrap_err();
    assert!(matches!(err, FalError::RateLimited { .. }), "{err:?}");
}

#[tokio::test]
async fn a_submit_is_never_repeated_once_it_may_have_reached_fal() {
    let sim = sim(SimConfig::default()).await;
    let client = client(&sim);
    let input = json!({"prompt": "x", "loras": []});

    sim.fail_next(RequestKind::Submit, &[Fault::SERVER_ERROR]);
    let err = client
        .submit(PORTRAIT_GENERATOR, &input, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FalError::Server { status: 500, .. }),
        "{err:?}"
    );
    assert_eq!(sim.submissions().len(), 1, "exactly one submission arrived");

    sim.fail_next(RequestKind::Submit, &[Fault::TOO_MANY_REQUESTS]);
    let err = client
        .submit(PORTRAIT_GENERATOR, &input, None)
        .await
        .unwrap_err();
    assert!(matches!(err, FalError::RateLimited { .. }), "{err:?}");
    assert_eq!(sim.submissions().len(), 2);
    assert_eq!(sim.job_count(), 0);
}

#[tokio::test]
async fn timeouts_are_retried_for_reads_but_never_for_submits() {
    // Well past the client's one-second limit, so that only the stall can cause a timeout.
    const STALL: Duration = Duration::from_secs(5);
    let sim = sim(SimConfig::default()).await;
    let impatient = FalClient::new(config_for(&sim).with_timeouts(Timeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(1),
        transfer: Duration::from_secs(5),
    }))
    .unwrap();
    let archive = upload_photos(&impatient).await;
    let params = TrainerParams::for_preset(
        AvatarType::Style,
        aggregates::StyleTrainer::ProFinetune,
        TrainingPreset::Fast,
        "S",
        "x",
    );
    let input = params.to_fal_input(&archive);

    sim.fail_next(RequestKind::Submit, &[Fault::stall(STALL)]);
    let err = impatient
        .submit(STYLE_TRAINER, &input, None)
        .await
        .unwrap_err();
    assert!(matches!(err, FalError::Timeout), "{err:?}");
    assert_eq!(
        sim.submissions().len(),
        1,
        "a timed-out submit is not repeated"
    );
    // The job exists all the same: FAL got the request, only the answer was lost.
    eventually(|| sim.job_count() == 1).await;

    let submitted = impatient.submit(STYLE_TRAINER, &input, None).await.unwrap();
    sim.fail_next(RequestKind::Status, &[Fault::stall(STALL)]);
    impatient
        .status(&submitted.status_url, false)
        .await
        .expect("status retried after a timeout");
    assert!(sim.requests_of(RequestKind::Status).len() >= 2);

    sim.fail_next(RequestKind::Status, &[Fault::stall(STALL); 4]);
    let err = impatient
        .status(&submitted.status_url, false)
        .await
        .unwrap_err();
    assert!(matches!(err, FalError::Timeout), "{err:?}");
}

#[tokio::test]
async fn a_submit_that_cannot_connect_fails_as_a_connect_error() {
    // A port with nothing listening: bound, then released.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let base = format!("http://127.0.0.1:{port}");
    let client = FalClient::new(
        FalClientConfig::new(
            format!("{base}/queue"),
            format!("{base}/rest"),
            Some(KEY.into()),
        )
        .with_retry(fast_retries()),
    )
    .unwrap();
    let err = client
        .submit(PORTRAIT_GENERATOR, &json!({"prompt": "x"}), None)
        .await
        .unwrap_err();
    assert!(matches!(err, FalError::Connect(_)), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn calls_without_a_valid_key_are_unauthorized_and_keys_are_never_logged() {
    let sim = sim(SimConfig::default().with_accepted_key(KEY)).await;
    let keyless =
        FalClient::new(FalClientConfig::new(sim.queue_url(), sim.rest_url(), None)).unwrap();
    let err = keyless
        .submit(PORTRAIT_GENERATOR, &json!({"prompt": "x"}), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FalError::Unauthorized { status: 401 }),
        "{err:?}"
    );
    assert!(!sim.submissions()[0].authorized);

    let wrong = FalClient::new(FalClientConfig::new(
        sim.queue_url(),
        sim.rest_url(),
        Some("wrong-key".into()),
    ))
    .unwrap();
    let err = wrong
        .upload(b"x".to_vec(), "text/plain", "x.txt")
        .await
        .unwrap_err();
    assert!(matches!(err, FalError::Unauthorized { .. }), "{err:?}");

    let good = client(&sim);
    upload_photos(&good).await;
    let log = reqwest::get(format!("{}/_sim/requests", sim.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let entries: Vec<Value> = serde_json::from_str(&log).unwrap();
    assert!(entries.len() >= 4);
    assert!(entries
        .iter()
        .any(|e| e["kind"] == "storage_initiate" && e["authorized"] == true));
    assert!(
        !log.contains(KEY) && !log.contains("wrong-key"),
        "keys never stored"
    );
}

#[tokio::test]
async fn webhook_headers_round_trip_through_a_header_map() {
    let signer = WebhookSigner::from_seed(SEED, "u");
    let headers = signer.sign("r", 1_700_000_000, b"{}");
    let parsed = WebhookHeaders::from_headers(&headers.to_header_map()).unwrap();
    assert_eq!(parsed, headers);
}
