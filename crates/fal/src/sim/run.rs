//! A job's life once accepted: the IN_QUEUE → IN_PROGRESS → COMPLETED steps (one tokio task per
//! job), the work, and the webhook delivery with its retries.

use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use chrono::Utc;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::inputs::{self, Fetched};
use super::job::{Job, JobError, Outcome, Phase};
use super::output;
use super::state::{SimState, WebhookDelivery};
use super::storage;
use super::validate::{self, Endpoint};

/// Checks that the files and finetunes an input names exist here, as FAL's runner finds out when
/// it fetches them.
pub(super) fn check_references(
    state: &SimState,
    endpoint: Endpoint,
    request_id: &str,
    input: &Value,
    fetched: &Fetched,
) -> Vec<Value> {
    let mut issues = Vec::new();
    if let Some(field) = endpoint.archive_field() {
        let url = input.get(field).and_then(Value::as_str).unwrap_or_default();
        if let Err(msg) = storage::check_archive(state, url, fetched) {
            issues.push(validate::issue(
                &[json!("body"), json!(field)],
                &msg,
                "value_error",
                Some(&json!(url)),
            ));
        }
    }
    // Read whatever the setting: without the picture there is nothing to upscale.
    if endpoint == Endpoint::Upscaler {
        let url = input
            .get("image_url")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Err(error) = output::source_image(state, request_id, url, fetched) {
            issues.push(error.issue("image_url", url));
        }
    }
    if !state.config.check_references {
        return issues;
    }
    if endpoint == Endpoint::PortraitGenerator {
        let loras = input.get("loras").and_then(Value::as_array);
        for (index, lora) in loras.into_iter().flatten().enumerate() {
            let path = lora.get("path").and_then(Value::as_str).unwrap_or_default();
            if !storage::is_lora_file(state, path, fetched) {
                issues.push(validate::issue(
                    &[json!("body"), json!("loras"), json!(index), json!("path")],
                    "Could not load LoRA weights from this URL",
                    "value_error",
                    Some(&json!(path)),
                ));
            }
        }
    }
    if endpoint == Endpoint::StyleGenerator {
        let id = input
            .get("finetune_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !state.lock().finetunes.contains(id) {
            issues.push(validate::issue(
                &[json!("body"), json!("finetune_id")],
                "Finetune not found",
                "value_error",
                Some(&json!(id)),
            ));
        }
    }
    issues
}

/// One job's life, until it completes and its webhook is delivered, or the simulator stops.
pub(super) async fn run_job(state: Arc<SimState>, id: String, cancel: Arc<Notify>) {
    tokio::select! {
        _ = state.stopped() => {}
        _ = live(&state, &id, &cancel) => {}
    }
}

async fn live(state: &Arc<SimState>, id: &str, cancel: &Notify) {
    let outcome = work(state, id, cancel).await;
    let (webhook, expiring) = {
        let mut inner = state.lock();
        let Some(job) = inner.jobs.get_mut(id) else {
            return;
        };
        let elapsed = job.submitted_at.elapsed().as_secs_f64();
        let run = (elapsed - state.config.queue_time.as_secs_f64()).max(0.0);
        job.inference_time = Some((run * 1000.0).round() / 1000.0);
        job.log(match &outcome {
            Outcome::Output(_) => "Request completed".to_owned(),
            Outcome::Error(error) => format!("Request failed with status {}", error.status),
        });
        job.phase = Phase::Completed;
        if let Outcome::Output(output) = &outcome {
            job.output_files = storage::file_ids_in(state, output);
        }
        let expiring = job
            .results_lifetime
            .map(|lifetime| (job.output_files.clone(), lifetime));
        job.outcome = Some(outcome.clone());
        job.touch();
        tracing::info!(
            request_id = id,
            ok = matches!(outcome, Outcome::Output(_)),
            "FAL simulator job completed"
        );
        let webhook = job
            .webhook_url
            .clone()
            .map(|url| (url, webhook_body(job, &outcome)));
        (webhook, expiring)
    };
    // Counted from completion, when the files were made, as the submission asked.
    if let Some((files, lifetime)) = expiring {
        storage::expire_in(state, &files, lifetime);
    }
    if let Some((url, body)) = webhook {
        deliver(state, &url, id, body).await;
    }
}

/// Sleeps for `duration`, then waits for the gate; true when a cancellation arrived instead.
async fn cancelled_during(state: &SimState, id: &str, duration: Duration, cancel: &Notify) -> bool {
    tokio::select! {
        _ = async {
            tokio::time::sleep(duration).await;
            state.gate_open(id).await;
        } => false,
        _ = cancel.notified() => true,
    }
}

fn cancelled_outcome() -> Outcome {
    Outcome::Error(JobError::cancelled())
}

async fn work(state: &SimState, id: &str, cancel: &Notify) -> Outcome {
    let config = &state.config;
    if cancelled_during(state, id, config.queue_time, cancel).await {
        return cancelled_outcome();
    }
    let Some((endpoint, fails, input)) = ({
        let mut inner = state.lock();
        inner.jobs.get_mut(id).map(|job| {
            job.phase = Phase::InProgress;
            job.log("Starting");
            (job.endpoint, job.fails, job.input.clone())
        })
    }) else {
        return cancelled_outcome();
    };
    // The runner validates the input as it takes the job, then fetches what it names (archive,
    // LoRA weights, finetune, image to upscale); either failing ends the job at once with a 422.
    let mut issues = validate::check(endpoint, &input);
    let fetched = if issues.is_empty() {
        inputs::fetch(state, endpoint, &input).await
    } else {
        Fetched::default()
    };
    if issues.is_empty() {
        issues = check_references(state, endpoint, id, &input, &fetched);
    }
    if !issues.is_empty() {
        tracing::debug!(
            request_id = id,
            issues = issues.len(),
            "FAL simulator job refused its input"
        );
        return Outcome::Error(JobError::validation(issues));
    }
    let run_time = if endpoint.is_trainer() {
        config.training_time
    } else {
        config.generation_time
    };
    let steps = config.progress_steps.max(1);
    for step in 1..=steps {
        if cancelled_during(state, id, run_time / steps, cancel).await {
            return cancelled_outcome();
        }
        if let Some(job) = state.lock().jobs.get_mut(id) {
            let message = output::progress_line(endpoint, &job.input, step, steps);
            job.log(message);
        }
    }
    if fails {
        return Outcome::Error(if config.failure_status == 422 {
            JobError::validation(vec![validate::issue(
                &[json!("body")],
                &config.failure_message,
                "value_error",
                None,
            )])
        } else {
            JobError::request(config.failure_status, &config.failure_message)
        });
    }
    if !state.lock().jobs.contains_key(id) {
        return cancelled_outcome();
    }
    match output::produce(state, endpoint, id, &input, &fetched) {
        Ok(output) => Outcome::Output(output),
        Err(issues) => Outcome::Error(JobError::validation(issues)),
    }
}

fn webhook_body(job: &Job, outcome: &Outcome) -> Vec<u8> {
    let body = match outcome {
        Outcome::Output(output) => json!({
            "request_id": job.request_id,
            "gateway_request_id": job.gateway_request_id,
            "status": "OK",
            "payload": output,
            "error": null,
            "payload_error": null,
        }),
        // The payload is the error body the result answers with.
        Outcome::Error(error) => json!({
            "request_id": job.request_id,
            "gateway_request_id": job.gateway_request_id,
            "status": "ERROR",
            "error": format!("Invalid status code: {}", error.status),
            "payload": error.body(),
            "payload_error": null,
        }),
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Sends a job's webhook, with the configured delay, drops, duplicates and retries.
async fn deliver(state: &SimState, url: &str, request_id: &str, body: Vec<u8>) {
    let behaviour = &state.config.webhook;
    let record = |attempt, duplicate, status, error, dropped| {
        state.lock().deliveries.push(WebhookDelivery {
            request_id: request_id.to_owned(),
            url: url.to_owned(),
            attempt,
            duplicate,
            status,
            error,
            dropped,
        });
    };
    if state.roll(behaviour.drop_rate) {
        tracing::debug!(request_id, "FAL simulator dropping a webhook");
        record(0, false, None, None, true);
        return;
    }
    tokio::time::sleep(behaviour.delay).await;
    let delivered = send(state, url, request_id, &body, false, &record).await;
    if delivered && state.roll(behaviour.duplicate_rate) {
        send(state, url, request_id, &body, true, &record).await;
    }
}

async fn send(
    state: &SimState,
    url: &str,
    request_id: &str,
    body: &[u8],
    duplicate: bool,
    record: &impl Fn(u32, bool, Option<u16>, Option<String>, bool),
) -> bool {
    let behaviour = &state.config.webhook;
    let attempts = behaviour.attempts.max(1);
    for attempt in 1..=attempts {
        // Signed afresh per attempt, with the time of sending, as a redelivery would be.
        let headers = state
            .signer()
            .sign(request_id, Utc::now().timestamp(), body);
        let mut request = state
            .http
            .post(url)
            .timeout(behaviour.timeout)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        let sent_at = std::time::Instant::now();
        if let Some(job) = state.lock().jobs.get_mut(request_id) {
            job.webhooks_sent.push(sent_at);
        }
        match request.send().await {
            Ok(response) => {
                let answered_at = std::time::Instant::now();
                if let Some(job) = state.lock().jobs.get_mut(request_id) {
                    job.webhooks_answered.push(answered_at);
                }
                let code = response.status();
                record(attempt, duplicate, Some(code.as_u16()), None, false);
                if code.is_success() {
                    return true;
                }
                tracing::debug!(
                    request_id,
                    status = code.as_u16(),
                    attempt,
                    "webhook receiver refused"
                );
            }
            Err(error) => {
                record(attempt, duplicate, None, Some(error.to_string()), false);
                tracing::debug!(request_id, %error, attempt, "webhook delivery failed");
            }
        }
        if attempt < attempts {
            // A little jitter, like any real retrying sender.
            let jitter =
                rand::thread_rng().gen_range(0..=behaviour.retry_delay.as_millis() as u64 / 4);
            tokio::time::sleep(behaviour.retry_delay + Duration::from_millis(jitter)).await;
        }
    }
    false
}
