//! The upscaler (`fal-ai/seedvr/upscale/image`) on the FAL simulator, through our client: an
//! image generated there is upscaled ×2 and ×4 with the input Aisha sends, the answer reads as a
//! generator output (from the result and from the webhook) and serves a real, bigger picture, and
//! inputs outside FAL's schema are refused with its 422 `detail` naming the field.

use std::time::Duration;

use aggregates::presets::{UpscaleInput, PORTRAIT_GENERATOR, UPSCALER};
use aisha::fal::types::{GeneratorOutput, QueueStatus, SubmitResponse, WebhookPayload};
use aisha::fal::{FalClient, FalClientConfig, FalError, FalSimulator, RetryPolicy, SimConfig};
use aisha::results::generated_images as images;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const KEY: &str = "upscale-key-5e1d";
/// Generous: only a hung test waits this long.
const PATIENCE: Duration = Duration::from_secs(30);

async fn sim() -> FalSimulator {
    FalSimulator::spawn(SimConfig::default())
        .await
        .expect("start the FAL simulator")
}

fn client(sim: &FalSimulator) -> FalClient {
    FalClient::new(
        FalClientConfig::new(sim.queue_url(), sim.rest_url(), Some(KEY.to_owned())).with_retry(
            RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
            },
        ),
    )
    .expect("client")
}

async fn until_completed(client: &FalClient, submitted: &SubmitResponse) -> QueueStatus {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let status = client
                .status(&submitted.status_url, true)
                .await
                .expect("status");
            if status.is_completed() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the job completes")
}

/// A picture made by the simulator's generator: (its URL, width, height).
async fn generated_image(client: &FalClient) -> (String, u32, u32) {
    let submitted = client
        .submit(
            PORTRAIT_GENERATOR,
            &json!({"prompt": "a lighthouse at dusk", "image_size": "landscape_4_3",
                "num_images": 1}),
            None,
        )
        .await
        .expect("submit the generation");
    until_completed(client, &submitted).await;
    let output: GeneratorOutput = client.result(&submitted.response_url).await.unwrap();
    let image = output.output_images().next().expect("one image").clone();
    let decoded = image::load_from_memory(&client.download(&image.url).await.unwrap()).unwrap();
    assert_eq!(
        (Some(decoded.width()), Some(decoded.height())),
        (image.width, image.height)
    );
    (image.url, decoded.width(), decoded.height())
}

fn upscale_input(image_url: &str, factor: f64) -> UpscaleInput {
    UpscaleInput {
        image_url: image_url.to_owned(),
        upscale_mode: "factor".into(),
        upscale_factor: factor,
    }
}

/// Receives webhooks: their raw bodies, in order.
async fn webhook_receiver() -> (String, mpsc::UnboundedReceiver<Bytes>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hook",
        post(move |body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), rx)
}

/// Checks an upscaler output the way the webhook handler and the poller do, then fetches it:
/// answers the decoded picture and its bytes.
async fn check_and_fetch(
    client: &FalClient,
    output: &GeneratorOutput,
) -> (image::DynamicImage, Bytes) {
    client
        .check_output_images(output)
        .await
        .expect("our own FAL's media pass the check");
    let recorded = images(output);
    assert_eq!(recorded.len(), 1, "one upscaled image");
    assert!(!recorded[0].nsfw);
    let bytes = client.download(&recorded[0].url).await.unwrap();
    let decoded = image::load_from_memory(&bytes).expect("a real picture");
    assert_eq!(
        (Some(decoded.width()), Some(decoded.height())),
        (recorded[0].width, recorded[0].height),
        "the reported size is the served file's"
    );
    (decoded, bytes)
}

#[tokio::test]
async fn an_image_is_upscaled_by_two_and_four_and_reads_as_a_generator_output() {
    let sim = sim().await;
    let client = client(&sim);
    let (source, width, height) = generated_image(&client).await;
    let (hook_url, mut hooks) = webhook_receiver().await;

    for factor in [2u32, 4] {
        let submitted = client
            .submit_input(
                UPSCALER,
                &upscale_input(&source, f64::from(factor)),
                Some(&hook_url),
            )
            .await
            .expect("submit the upscale");
        let status = until_completed(&client, &submitted).await;
        assert!(!status.is_failed(), "{status:?}");
        let logs = status.logs.unwrap_or_default();
        assert!(logs.iter().any(|l| l.message.starts_with("Upscaling: ")));

        // The result, in FAL's shape: one `image` and the seed.
        let raw: Value = client.result(&submitted.response_url).await.unwrap();
        assert!(raw.get("images").is_none(), "{raw}");
        assert!(raw["seed"].is_i64(), "{raw}");
        for field in [
            "url",
            "content_type",
            "file_name",
            "file_size",
            "width",
            "height",
        ] {
            assert!(raw["image"].get(field).is_some(), "{field} in {raw}");
        }
        let output: GeneratorOutput = serde_json::from_value(raw).unwrap();
        let (decoded, bytes) = check_and_fetch(&client, &output).await;
        assert_eq!(
            (decoded.width(), decoded.height()),
            (width * factor, height * factor)
        );
        // Aisha sends no output format: FAL's default, `jpg`.
        assert_eq!(
            image::guess_format(&bytes).unwrap(),
            image::ImageFormat::Jpeg
        );
        assert_eq!(
            output.image.as_ref().unwrap().content_type.as_deref(),
            Some("image/jpeg")
        );

        // The webhook carries the same output, which reads the same way.
        let body = tokio::time::timeout(PATIENCE, hooks.recv())
            .await
            .expect("a webhook arrives")
            .expect("receiver open");
        let hook: WebhookPayload = serde_json::from_slice(&body).unwrap();
        assert_eq!(hook.request_id, submitted.request_id);
        let from_hook: GeneratorOutput = hook.output().expect("an OK webhook").unwrap();
        assert_eq!(from_hook, output);
    }

    // A PNG when asked for one.
    let mut input = serde_json::to_value(upscale_input(&source, 2.0)).unwrap();
    input["output_format"] = json!("png");
    let submitted = client.submit(UPSCALER, &input, None).await.unwrap();
    until_completed(&client, &submitted).await;
    let output: GeneratorOutput = client.result(&submitted.response_url).await.unwrap();
    let (decoded, bytes) = check_and_fetch(&client, &output).await;
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        image::ImageFormat::Png
    );
    assert_eq!((decoded.width(), decoded.height()), (width * 2, height * 2));
}

/// Submits `input`, lets it run, and answers the raw 422 body of its result, after checking
/// that our client reads it as a validation error naming `field`.
async fn refused(client: &FalClient, input: &Value, field: &str) -> Value {
    let submitted = client
        .submit(UPSCALER, input, None)
        .await
        .expect("the queue takes any input; the runner refuses it");
    let status = until_completed(client, &submitted).await;
    assert!(status.is_failed(), "{status:?}");
    assert_eq!(status.error_type.as_deref(), Some("validation_error"));

    let read = client
        .result::<GeneratorOutput>(&submitted.response_url)
        .await;
    match &read {
        Err(FalError::Validation { detail }) => {
            assert!(detail.contains(&format!("body.{field}: ")), "{detail}")
        }
        other => panic!("expected a validation error, got {other:?}"),
    }

    let response = reqwest::Client::new()
        .get(&submitted.response_url)
        .header("authorization", format!("Key {KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(response.headers()["x-fal-error-type"], "validation_error");
    let body: Value = response.json().await.unwrap();
    let detail = body["detail"].as_array().expect("a detail list");
    assert_eq!(detail.len(), 1, "{body}");
    assert_eq!(detail[0]["loc"], json!(["body", field]), "{body}");
    assert!(detail[0]["msg"].is_string(), "{body}");
    detail[0].clone()
}

#[tokio::test]
async fn inputs_outside_fals_schema_are_refused_naming_the_field() {
    let sim = sim().await;
    let client = client(&sim);
    let (source, _, _) = generated_image(&client).await;

    let too_big = refused(
        &client,
        &serde_json::to_value(upscale_input(&source, 11.0)).unwrap(),
        "upscale_factor",
    )
    .await;
    assert_eq!(too_big["type"], "less_than_equal");
    assert_eq!(too_big["msg"], "Input should be less than or equal to 10");

    let too_small = refused(
        &client,
        &serde_json::to_value(upscale_input(&source, 0.5)).unwrap(),
        "upscale_factor",
    )
    .await;
    assert_eq!(too_small["type"], "greater_than_equal");
    assert_eq!(
        too_small["msg"],
        "Input should be greater than or equal to 1"
    );

    let missing = refused(
        &client,
        &json!({"upscale_mode": "factor", "upscale_factor": 2.0}),
        "image_url",
    )
    .await;
    assert_eq!(missing["type"], "missing");
    assert_eq!(missing["msg"], "Field required");

    let mode = refused(
        &client,
        &json!({"image_url": source, "upscale_mode": "double"}),
        "upscale_mode",
    )
    .await;
    assert_eq!(mode["type"], "literal_error");

    // Valid fields, but nothing the runner can download.
    let nowhere = refused(
        &client,
        &json!({"image_url": format!("{}/files/0000/gone.png", sim.base_url())}),
        "image_url",
    )
    .await;
    assert_eq!(nowhere["type"], "file_download_error");
}
