//! The FAL simulator behaves like FAL does today, over real HTTP: inputs are checked when the job
//! runs (accepted at submit, refused on the result and in an `ERROR` webhook), FAL's lenient
//! shapes pass, the deprecated pro trainer is refused unless re-enabled, the LoRA trainer's style
//! mode works, statuses stream as server-sent events, failed jobs carry `error`/`error_type`, and
//! uploads work the ways FAL's own clients upload.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aggregates::{Action, Actor, GenerationPreset};
use aisha::actors::notify::NotifyError;
use aisha::actors::{ActorSettings, Notification, Notifier};
use aisha::app::{AppOptions, Application};
use aisha::config::Config;
use aisha::fal::sim::RequestKind;
use aisha::fal::types::WebhookStatus;
use aisha::fal::{FalSimulator, SimConfig, WebhookVerifier};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

const KEY: &str = "faithful-key-1";
/// Generous: only a hung test waits this long.
const PATIENCE: Duration = Duration::from_secs(30);

async fn sim(config: SimConfig) -> FalSimulator {
    FalSimulator::spawn(config)
        .await
        .expect("start the FAL simulator")
}

/// Raw HTTP against the simulator, with the key FAL calls carry.
struct Fal {
    http: reqwest::Client,
    queue: String,
    rest: String,
    base: String,
}

impl Fal {
    fn new(sim: &FalSimulator) -> Self {
        Self {
            http: reqwest::Client::new(),
            queue: sim.queue_url(),
            rest: sim.rest_url(),
            base: sim.base_url().to_owned(),
        }
    }

    fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.http
            .get(url)
            .header("authorization", format!("Key {KEY}"))
    }

    /// Submits `input` and expects FAL's queue to take it.
    async fn submit(&self, model: &str, input: &Value, webhook: Option<&str>) -> Value {
        let (status, body) = self.try_submit(model, input, webhook).await;
        assert_eq!(status, StatusCode::OK, "submit {model}: {body}");
        assert_eq!(body["status"], "IN_QUEUE");
        body
    }

    async fn try_submit(
        &self,
        model: &str,
        input: &Value,
        webhook: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}/{model}", self.queue))
            .header("authorization", format!("Key {KEY}"))
            .json(input);
        if let Some(url) = webhook {
            request = request.query(&[("fal_webhook", url)]);
        }
        let response = request.send().await.expect("submit");
        let status = response.status();
        (status, response.json().await.expect("JSON answer"))
    }

    /// Polls the status (with logs) until COMPLETED.
    async fn until_completed(&self, submitted: &Value) -> Value {
        let url = submitted["status_url"].as_str().unwrap().to_owned();
        tokio::time::timeout(PATIENCE, async {
            loop {
                let response = self.get(&url).query(&[("logs", "1")]).send().await.unwrap();
                let code = response.status();
                let body: Value = response.json().await.unwrap();
                if body["status"] == "COMPLETED" {
                    assert_eq!(code, StatusCode::OK);
                    return body;
                }
                assert_eq!(code, StatusCode::ACCEPTED, "{body}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the job completes")
    }

    async fn result(&self, submitted: &Value) -> reqwest::Response {
        self.get(submitted["response_url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
    }

    async fn ok_result(&self, submitted: &Value) -> Value {
        let response = self.result(submitted).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Uploads through the storage initiate + PUT flow; answers the file URL.
    async fn upload(&self, bytes: Vec<u8>, content_type: &str, name: &str) -> String {
        let ticket: Value = self
            .http
            .post(format!("{}/storage/upload/initiate", self.rest))
            .query(&[("storage_type", "fal-cdn-v3")])
            .header("authorization", format!("Key {KEY}"))
            .json(&json!({"content_type": content_type, "file_name": name}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let put = self
            .http
            .put(ticket["upload_url"].as_str().unwrap())
            .header("content-type", content_type)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
        ticket["file_url"].as_str().unwrap().to_owned()
    }

    async fn download(&self, url: &str) -> Bytes {
        let response = self.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        response.bytes().await.unwrap()
    }
}

/// A zip of `n` small PNG photos.
fn photo_zip(n: usize) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..n {
        let image = image::RgbImage::from_pixel(8, 8, image::Rgb([i as u8 * 30, 90, 160]));
        let mut png = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        zip.start_file(
            format!("img_{i}.png"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.write_all(&png).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// The input Aisha submits for a style avatar.
fn style_training_input(archive: &str) -> Value {
    json!({"images_data_url": archive, "trigger_word": "STYLE_5e1f2a3b", "is_style": true,
        "create_masks": false, "steps": 500})
}

/// Trains a style LoRA on the LoRA trainer; answers its output.
async fn train_style_lora(fal: &Fal) -> Value {
    let archive = fal
        .upload(photo_zip(3), "application/zip", "style.zip")
        .await;
    let submitted = fal
        .submit(
            "fal-ai/flux-lora-fast-training",
            &style_training_input(&archive),
            None,
        )
        .await;
    fal.until_completed(&submitted).await;
    fal.ok_result(&submitted).await
}

/// A small server standing in for Aisha's webhook endpoint.
struct Receiver {
    url: String,
    deliveries: mpsc::UnboundedReceiver<(HeaderMap, Bytes)>,
}

impl Receiver {
    async fn start() -> Self {
        let (tx, deliveries) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((headers, body));
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
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

fn locs(detail: &Value) -> Vec<String> {
    detail
        .as_array()
        .expect("a detail list")
        .iter()
        .map(|issue| issue["loc"].to_string())
        .collect()
}

#[tokio::test]
async fn fals_lenient_image_size_and_aspect_ratio_are_accepted() {
    let sim = sim(SimConfig::default().with_check_references(false)).await;
    let fal = Fal::new(&sim);

    // One side given: FAL fills the other with 512.
    let submitted = fal
        .submit(
            "fal-ai/flux-lora",
            &json!({"prompt": "a lighthouse", "image_size": {"width": 768}, "num_images": 1,
                "acceleration": "regular",
                "loras": [{"path": "https://example.com/l.safetensors", "scale": 1.0, "force": false}]}),
            None,
        )
        .await;
    let status = fal.until_completed(&submitted).await;
    assert!(status.get("error").is_none(), "{status}");
    let output = fal.ok_result(&submitted).await;
    let image = &output["images"][0];
    let (w, h) = (
        image["width"].as_u64().unwrap(),
        image["height"].as_u64().unwrap(),
    );
    assert!(w > h, "768 wide, 512 high: {w}x{h}");
    assert_eq!(w * 512 / 768, h, "the proportions of 768x512");
    let decoded = image::load_from_memory(&fal.download(image["url"].as_str().unwrap()).await)
        .expect("a real image");
    assert_eq!(u64::from(decoded.width()), w);

    // Any string is an aspect ratio; the image follows a ratio it can read.
    let submitted = fal
        .submit(
            "fal-ai/flux-pro/v1.1-ultra-finetuned",
            &json!({"prompt": "STYLE_1 a castle", "finetune_id": "any", "finetune_strength": 1.1,
                "aspect_ratio": "5:4", "enable_safety_checker": false}),
            None,
        )
        .await;
    fal.until_completed(&submitted).await;
    let output = fal.ok_result(&submitted).await;
    let image = &output["images"][0];
    let (w, h) = (
        image["width"].as_f64().unwrap(),
        image["height"].as_f64().unwrap(),
    );
    assert!((w / h - 1.25).abs() < 0.05, "5:4, got {w}x{h}");
}

#[tokio::test]
async fn invalid_input_is_taken_at_submit_and_refused_on_the_result_and_webhook() {
    let sim = sim(SimConfig::default()).await;
    let fal = Fal::new(&sim);
    let mut receiver = Receiver::start().await;

    let submitted = fal
        .submit(
            "fal-ai/flux-lora",
            &json!({"num_images": 9, "loras": []}),
            Some(&receiver.url),
        )
        .await;
    assert_eq!(sim.job_count(), 1, "the queue took the job");

    // COMPLETED, with the error on the status.
    let status = fal.until_completed(&submitted).await;
    assert_eq!(status["error_type"], "validation_error");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("body.prompt: Field required"), "{error}");
    assert!(
        error.contains("body.num_images: Input should be less than or equal to 4"),
        "{error}"
    );

    // The result answers 422 with FastAPI's detail list.
    let result = fal.result(&submitted).await;
    assert_eq!(result.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(result.headers()["x-fal-error-type"], "validation_error");
    let body: Value = result.json().await.unwrap();
    assert_eq!(
        locs(&body["detail"]),
        [r#"["body","prompt"]"#, r#"["body","num_images"]"#]
    );
    assert_eq!(body["detail"][0]["type"], "missing");

    // The webhook says ERROR, signed as any other, with the detail as its payload.
    let (headers, raw) = receiver.next().await;
    let hook = WebhookVerifier::new(sim.jwks_url())
        .verify(&headers, &raw, chrono::Utc::now().timestamp())
        .await
        .expect("a genuine webhook");
    assert_eq!(hook.status, WebhookStatus::Error);
    assert_eq!(hook.request_id, submitted["request_id"].as_str().unwrap());
    let body: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(body["status"], "ERROR");
    assert_eq!(body["error"], "Invalid status code: 422");
    assert_eq!(
        locs(&body["payload"]["detail"]),
        [r#"["body","prompt"]"#, r#"["body","num_images"]"#]
    );
}

#[tokio::test]
async fn references_are_checked_when_the_job_runs() {
    let sim = sim(SimConfig::default()).await;
    let fal = Fal::new(&sim);
    let not_uploaded = format!("{}/files/0123/photos.zip", fal.base);
    let not_zip = fal
        .upload(b"plain text".to_vec(), "application/zip", "a.zip")
        .await;
    let cases = [
        (
            "fal-ai/flux-lora",
            json!({"prompt": "x", "loras": [{"path": "https://elsewhere/l.safetensors"}]}),
            r#"["body","loras",0,"path"]"#,
            "Could not load LoRA weights",
        ),
        (
            "fal-ai/flux-pro/v1.1-ultra-finetuned",
            json!({"prompt": "x", "finetune_id": "nope", "finetune_strength": 1.0}),
            r#"["body","finetune_id"]"#,
            "Finetune not found",
        ),
        (
            "fal-ai/flux-lora-fast-training",
            style_training_input(&not_uploaded),
            r#"["body","images_data_url"]"#,
            "not found",
        ),
        (
            "fal-ai/flux-lora-portrait-trainer",
            json!({"images_data_url": not_zip}),
            r#"["body","images_data_url"]"#,
            "not a valid zip",
        ),
    ];
    for (model, input, loc, why) in cases {
        let submitted = fal.submit(model, &input, None).await;
        let status = fal.until_completed(&submitted).await;
        assert_eq!(status["error_type"], "validation_error", "{model}");
        assert!(
            status["error"].as_str().unwrap().contains(why),
            "{model}: {status}"
        );
        let result = fal.result(&submitted).await;
        assert_eq!(result.status(), StatusCode::UNPROCESSABLE_ENTITY, "{model}");
        let body: Value = result.json().await.unwrap();
        assert_eq!(locs(&body["detail"]), [loc], "{model}");
    }
    assert_eq!(sim.job_count(), 4);
}

#[tokio::test]
async fn the_pro_trainer_is_refused_as_deprecated_unless_re_enabled() {
    let refusing = sim(SimConfig::default()).await;
    let fal = Fal::new(&refusing);
    let archive = fal.upload(photo_zip(2), "application/zip", "p.zip").await;
    let input = json!({"data_url": archive, "mode": "style", "finetune_comment": "Ink"});
    let (status, body) = fal
        .try_submit("fal-ai/flux-pro-trainer", &input, None)
        .await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(
        body["detail"],
        "This endpoint is deprecated. This model is no longer supported."
    );
    assert_eq!(refusing.job_count(), 0, "nothing was queued");

    let serving = sim(SimConfig::default().with_pro_trainer(true)).await;
    let fal = Fal::new(&serving);
    let archive = fal.upload(photo_zip(2), "application/zip", "p.zip").await;

    // Served, it still requires its finetune_comment.
    let without_comment = fal
        .submit(
            "fal-ai/flux-pro-trainer",
            &json!({"data_url": archive, "mode": "style"}),
            None,
        )
        .await;
    let status = fal.until_completed(&without_comment).await;
    assert_eq!(status["error_type"], "validation_error");
    let result = fal.result(&without_comment).await;
    assert_eq!(result.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = result.json().await.unwrap();
    assert_eq!(locs(&body["detail"]), [r#"["body","finetune_comment"]"#]);

    let input = json!({"data_url": archive, "mode": "style", "finetune_comment": "Ink"});
    let submitted = fal.submit("fal-ai/flux-pro-trainer", &input, None).await;
    fal.until_completed(&submitted).await;
    let output = fal.ok_result(&submitted).await;
    let finetune_id = output["finetune_id"].as_str().unwrap();

    // A finetune trained before is found once imported.
    serving.import_finetune("ft-from-before");
    let old = fal
        .submit(
            "fal-ai/flux-pro/v1.1-ultra-finetuned",
            &json!({"prompt": "a boat", "finetune_id": "ft-from-before", "finetune_strength": 1.0}),
            None,
        )
        .await;
    let status = fal.until_completed(&old).await;
    assert!(status.get("error").is_none(), "{status}");

    // The finetune it produced is one the ultra endpoint finds.
    let generation = fal
        .submit(
            "fal-ai/flux-pro/v1.1-ultra-finetuned",
            &json!({"prompt": "Ink a boat", "finetune_id": finetune_id, "finetune_strength": 1.0}),
            None,
        )
        .await;
    fal.until_completed(&generation).await;
    fal.ok_result(&generation).await;
}

#[tokio::test]
async fn the_lora_trainer_in_style_mode_yields_a_real_lora_for_flux_lora() {
    let sim = sim(SimConfig::default()).await;
    let fal = Fal::new(&sim);
    let output = train_style_lora(&fal).await;
    let sent = &sim.submissions()[0];
    assert_eq!(sent.model_id(), Some("fal-ai/flux-lora-fast-training"));

    let lora_url = output["diffusers_lora_file"]["url"].as_str().unwrap();
    assert!(lora_url.ends_with(".safetensors"), "{lora_url}");
    let lora = fal.download(lora_url).await;
    let header_len = u64::from_le_bytes(lora[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&lora[8..8 + header_len]).unwrap();
    assert_eq!(header["__metadata__"]["trigger_word"], "STYLE_5e1f2a3b");

    let config = fal
        .download(output["config_file"]["url"].as_str().unwrap())
        .await;
    let config: Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(config["is_style"], true);
    assert_eq!(config["steps"], 500);

    let generation = fal
        .submit(
            "fal-ai/flux-lora",
            &json!({"prompt": "STYLE_5e1f2a3b a harbour", "loras": [{"path": lora_url, "scale": 1.0}],
                "image_size": "square"}),
            None,
        )
        .await;
    fal.until_completed(&generation).await;
    let images = fal.ok_result(&generation).await;
    assert_eq!(images["images"].as_array().unwrap().len(), 1);
}

/// The `data:` payloads of a server-sent event stream, read to its end.
async fn read_events(response: reqwest::Response) -> Vec<Value> {
    let mut text = String::new();
    let mut chunks = response.bytes_stream();
    tokio::time::timeout(PATIENCE, async {
        while let Some(chunk) = chunks.next().await {
            text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    })
    .await
    .expect("the stream ends");
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let data: String = block
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            serde_json::from_str(&data).unwrap_or_else(|e| panic!("{block:?}: {e}"))
        })
        .collect()
}

#[tokio::test]
async fn the_status_stream_sends_each_change_and_ends_with_completed() {
    let sim = sim(SimConfig::default().paused()).await;
    let fal = Fal::new(&sim);
    let submitted = fal
        .submit(
            "fal-ai/flux-lora",
            &json!({"prompt": "a tree", "image_size": "square"}),
            None,
        )
        .await;
    let stream_url = format!("{}/stream", submitted["status_url"].as_str().unwrap());
    assert!(stream_url.ends_with("/status/stream"));
    let response = fal
        .get(&stream_url)
        .query(&[("logs", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );

    // Held in the queue while the stream is open; then let go.
    sim.resume_jobs();
    let events = read_events(response).await;
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"IN_QUEUE"), "{states:?}");
    assert_eq!(states.last(), Some(&"COMPLETED"), "{states:?}");
    assert_eq!(
        states.iter().filter(|s| **s == "COMPLETED").count(),
        1,
        "{states:?}"
    );
    assert!(states.contains(&"IN_PROGRESS"), "{states:?}");
    let mut sorted = states.clone();
    sorted.sort_by_key(|s| {
        ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
            .iter()
            .position(|x| x == s)
    });
    assert_eq!(states, sorted, "never backwards");
    for pair in events.windows(2) {
        assert_ne!(pair[0], pair[1], "one event per change");
    }
    let last = events.last().unwrap();
    let logs = last["logs"].as_array().expect("logs, as asked for");
    assert!(logs.iter().any(|l| l["message"] == "Request completed"));
    assert!(last["metrics"]["inference_time"].is_number());
    assert_eq!(sim.requests_of(RequestKind::StatusStream).len(), 1);

    // A finished job's stream is its final status alone; without logs, none are sent.
    let response = fal.get(&stream_url).send().await.unwrap();
    let events = read_events(response).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["status"], "COMPLETED");
    assert!(events[0]["logs"].is_null());

    let unknown = stream_url.replace(submitted["request_id"].as_str().unwrap(), "nope");
    let response = fal.get(&unknown).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_job_that_fails_at_random_reports_error_and_error_type() {
    let sim = sim(SimConfig::default()).await;
    let fal = Fal::new(&sim);
    let mut receiver = Receiver::start().await;
    sim.fail_next_jobs(1);
    let submitted = fal
        .submit(
            "fal-ai/flux-lora",
            &json!({"prompt": "a bridge"}),
            Some(&receiver.url),
        )
        .await;
    let status = fal.until_completed(&submitted).await;
    assert_eq!(status["error"], "The job failed (simulated)");
    assert_eq!(status["error_type"], "runner_server_error");

    let result = fal.result(&submitted).await;
    assert_eq!(result.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(result.headers()["x-fal-error-type"], "runner_server_error");
    let body: Value = result.json().await.unwrap();
    assert_eq!(
        body,
        json!({"detail": "The job failed (simulated)", "error_type": "runner_server_error"})
    );

    let (_, raw) = receiver.next().await;
    let hook: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(hook["status"], "ERROR");
    assert_eq!(hook["error"], "Invalid status code: 500");
    assert_eq!(hook["payload"]["detail"], "The job failed (simulated)");

    // A job that succeeds has neither field.
    let fine = fal
        .submit("fal-ai/flux-lora", &json!({"prompt": "a bridge"}), None)
        .await;
    let status = fal.until_completed(&fine).await;
    assert!(status.get("error").is_none() && status.get("error_type").is_none());
}

#[tokio::test]
async fn uploads_work_the_ways_fals_clients_upload() {
    let sim = sim(SimConfig::default()).await;
    let fal = Fal::new(&sim);

    // A CDN token, then the bytes in one POST.
    let token: Value = fal
        .http
        .post(format!("{}/storage/auth/token", fal.rest))
        .query(&[("storage_type", "fal-cdn-v3")])
        .header("authorization", format!("Key {KEY}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["base_url"], fal.base);
    chrono::DateTime::parse_from_rfc3339(token["expires_at"].as_str().unwrap())
        .expect("an ISO time with its offset");
    let bearer = format!(
        "{} {}",
        token["token_type"].as_str().unwrap(),
        token["token"].as_str().unwrap()
    );
    let zip = photo_zip(2);
    let uploaded: Value = fal
        .http
        .post(format!(
            "{}/files/upload",
            token["base_url"].as_str().unwrap()
        ))
        .header("authorization", &bearer)
        .header("content-type", "application/zip")
        .header("x-fal-file-name", "photos.zip")
        .body(zip.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = uploaded["access_url"].as_str().unwrap();
    assert!(url.ends_with("/photos.zip"), "{url}");
    assert_eq!(fal.download(url).await, zip);

    // Without a valid token the CDN refuses.
    let refused = fal
        .http
        .post(format!("{}/files/upload", fal.base))
        .header("authorization", format!("Key {KEY}"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // Multipart: parts sent out of order, listed as they finished, joined in part order.
    let created: Value = fal
        .http
        .post(format!("{}/files/upload/multipart", fal.base))
        .header("authorization", &bearer)
        .header("content-type", "application/zip")
        .header("x-fal-file-name", "big.zip")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access_url = created["access_url"].as_str().unwrap();
    let upload_id = created["uploadId"].as_str().unwrap();
    let (first, second) = zip.split_at(zip.len() / 2);
    let mut parts = Vec::new();
    for (number, data) in [(2, second), (1, first)] {
        let response = fal
            .http
            .put(format!("{access_url}/multipart/{upload_id}/{number}"))
            .header("authorization", &bearer)
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        parts.push(json!({"partNumber": number, "etag": etag}));
    }
    let completed = fal
        .http
        .post(format!("{access_url}/multipart/{upload_id}/complete"))
        .header("authorization", &bearer)
        .json(&json!({ "parts": parts }))
        .send()
        .await
        .unwrap();
    assert_eq!(completed.status(), StatusCode::OK);
    assert_eq!(fal.download(access_url).await, zip);
    assert_eq!(sim.requests_of(RequestKind::CdnUpload).len(), 6);

    // A CDN upload is a training archive like any other.
    let submitted = fal
        .submit(
            "fal-ai/flux-lora-fast-training",
            &style_training_input(access_url),
            None,
        )
        .await;
    let status = fal.until_completed(&submitted).await;
    assert!(status.get("error").is_none(), "{status}");
}

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

#[tokio::test]
async fn an_input_error_after_submit_fails_the_generation_with_fals_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::offline(
        format!("sqlite://{}", dir.path().join("aisha.db").display()),
        &dir.path().join("photos"),
    );
    let inbox = Arc::new(Inbox::default());
    let options = AppOptions {
        actor_settings: ActorSettings::fast(),
        simulator: SimConfig::default(),
        notifier: Some(inbox.clone()),
    };
    let mut app = Application::build(config, options).await.unwrap();
    let sim = app.simulator.take().unwrap();
    let store = app.store.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });

    // Trained elsewhere: its LoRA is not a file this FAL can load, which FAL finds out only
    // when the generation runs.
    let id = crate::support::trained_avatar(&store).await;
    let generation_id = Uuid::new_v4();
    store
        .execute(
            id,
            aggregates::Command::new(
                Actor::User(crate::support::OWNER),
                chrono::Utc::now(),
                Action::Generate {
                    generation_id,
                    prompt: "on a beach".into(),
                    preset: Some(GenerationPreset::Fast),
                    num_images: 1,
                    aspect: None,
                    batch: None,
                    origin: None,
                },
            ),
            Uuid::new_v4(),
        )
        .await
        .unwrap();

    let reason = tokio::time::timeout(PATIENCE, async {
        loop {
            let failed = inbox.0.lock().unwrap().iter().find_map(|n| match n {
                Notification::GenerationFailed {
                    generation_id: g,
                    reason,
                    ..
                } if *g == generation_id => Some(reason.clone()),
                _ => None,
            });
            if let Some(reason) = failed {
                return reason;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the generation fails and the user hears it");
    assert!(
        reason.contains("Could not load LoRA weights"),
        "FAL's own message reaches the user: {reason}"
    );
    // The queue took the job: the refusal came from the job, not the submit.
    assert_eq!(sim.job_count(), 1);
    assert_eq!(sim.submissions().len(), 1);

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}
