//! The simulated queue: submissions, the IN_QUEUE → IN_PROGRESS → COMPLETED lifecycle of each
//! job (one tokio task per job), status/result/cancel answers, and webhook delivery.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::validate::{self, Endpoint};
use super::{error_response, output, storage, url_decode_pairs, SimState, WebhookDelivery};
use crate::fal::types::LogEntry;

/// What a path under `/queue/` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum QueuePath {
    /// A model id, possibly with a sub-path: a submission target.
    Model(String),
    Status {
        app: String,
        id: String,
    },
    Result {
        app: String,
        id: String,
    },
    Cancel {
        app: String,
        id: String,
    },
    Invalid,
}

/// Splits the part of a path after `/queue/`.
pub(super) fn parse_queue_path(rest: &str) -> QueuePath {
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) || segments.len() < 2 {
        return QueuePath::Invalid;
    }
    match segments.iter().position(|s| *s == "requests") {
        Some(at) if at >= 2 => {
            let app = segments[..at].join("/");
            let Some(id) = segments.get(at + 1).map(|s| s.to_string()) else {
                return QueuePath::Invalid;
            };
            match &segments[at + 2..] {
                [] => QueuePath::Result { app, id },
                ["status"] => QueuePath::Status { app, id },
                ["cancel"] => QueuePath::Cancel { app, id },
                _ => QueuePath::Invalid,
            }
        }
        Some(_) => QueuePath::Invalid,
        None => QueuePath::Model(rest.to_owned()),
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    InQueue,
    InProgress,
    Completed,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Self::InQueue => "IN_QUEUE",
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
        }
    }
}

/// How a finished job ended.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    Output(Value),
    Error { status: u16, detail: Value },
}

/// One simulated request.
pub(super) struct Job {
    pub request_id: String,
    pub gateway_request_id: String,
    pub app_id: String,
    pub endpoint: Endpoint,
    pub input: Value,
    pub webhook_url: Option<String>,
    pub phase: Phase,
    pub submitted_at: Instant,
    pub logs: Vec<LogEntry>,
    pub outcome: Option<Outcome>,
    pub inference_time: Option<f64>,
    /// Moves this job may still make while jobs are paused.
    pub allowance: u64,
    cancel: Arc<Notify>,
    fails: bool,
}

impl Job {
    fn urls(&self, state: &SimState) -> (String, String, String) {
        let response = state.url(&format!(
            "/queue/{}/requests/{}",
            self.app_id, self.request_id
        ));
        let status = format!("{response}/status");
        let cancel = format!("{response}/cancel");
        (status, response, cancel)
    }

    fn log(&mut self, message: impl Into<String>) {
        self.logs.push(LogEntry {
            message: message.into(),
            level: Some("INFO".to_owned()),
            source: Some("USER".to_owned()),
            timestamp: Some(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)),
        });
    }
}

/// The app id a model id belongs to: its first two segments.
fn app_id(model_id: &str) -> String {
    model_id.split('/').take(2).collect::<Vec<_>>().join("/")
}

/// Every call under `/queue/`.
pub(super) async fn queue(
    State(state): State<Arc<SimState>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let rest = uri.path().strip_prefix("/queue/").unwrap_or_default();
    let with_logs = uri
        .query()
        .map(url_decode_pairs)
        .unwrap_or_default()
        .iter()
        .any(|(k, v)| k == "logs" && (v == "1" || v == "true"));
    match (method, parse_queue_path(rest)) {
        (Method::POST, QueuePath::Model(model_id)) => submit(&state, &model_id, uri.query(), &body),
        (Method::GET, QueuePath::Status { app, id }) => status(&state, &app, &id, with_logs),
        (Method::GET, QueuePath::Result { app, id }) => result(&state, &app, &id),
        (Method::PUT, QueuePath::Cancel { app, id }) => cancel(&state, &app, &id),
        (_, QueuePath::Invalid) => error_response(StatusCode::NOT_FOUND, json!("Not Found")),
        _ => error_response(StatusCode::METHOD_NOT_ALLOWED, json!("Method Not Allowed")),
    }
}

fn unprocessable(issues: Vec<Value>) -> Response {
    error_response(StatusCode::UNPROCESSABLE_ENTITY, Value::Array(issues))
}

fn submit(state: &Arc<SimState>, model_id: &str, query: Option<&str>, body: &[u8]) -> Response {
    let Some(endpoint) = Endpoint::from_model_id(model_id) else {
        return error_response(
            StatusCode::NOT_FOUND,
            json!(format!("Application '{model_id}' not found")),
        );
    };
    let input: Value = match serde_json::from_slice(body) {
        Ok(input) => input,
        Err(e) => {
            return unprocessable(vec![validate::issue(
                &[json!("body")],
                &format!("JSON decode error: {e}"),
                "json_invalid",
                None,
            )])
        }
    };
    let webhook_url = query
        .map(url_decode_pairs)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "fal_webhook")
        .map(|(_, v)| v);
    if let Some(url) = &webhook_url {
        let valid = reqwest::Url::parse(url)
            .map(|u| matches!(u.scheme(), "http" | "https"))
            .unwrap_or(false);
        if !valid {
            return unprocessable(vec![validate::issue(
                &[json!("query"), json!("fal_webhook")],
                "Input should be a valid URL",
                "url_parsing",
                Some(&json!(url)),
            )]);
        }
    }
    let mut issues = validate::check(endpoint, &input);
    if issues.is_empty() {
        issues = check_references(state, endpoint, &input);
    }
    if !issues.is_empty() {
        tracing::debug!(
            model_id,
            issues = issues.len(),
            "FAL simulator refused an input"
        );
        return unprocessable(issues);
    }

    let request_id = uuid::Uuid::new_v4().to_string();
    let gateway_request_id = if state.roll(state.config.gateway_retry_rate) {
        uuid::Uuid::new_v4().to_string()
    } else {
        request_id.clone()
    };
    let cancel = Arc::new(Notify::new());
    let fails = {
        let mut inner = state.lock();
        if inner.failing_jobs > 0 {
            inner.failing_jobs -= 1;
            true
        } else {
            false
        }
    } || state.roll(state.config.failure_rate);
    let mut job = Job {
        request_id: request_id.clone(),
        gateway_request_id: gateway_request_id.clone(),
        app_id: app_id(model_id),
        endpoint,
        input,
        webhook_url,
        phase: Phase::InQueue,
        submitted_at: Instant::now(),
        logs: Vec::new(),
        outcome: None,
        inference_time: None,
        allowance: 0,
        cancel: cancel.clone(),
        fails,
    };
    job.log("Request queued");
    let (status_url, response_url, cancel_url) = job.urls(state);
    state.lock().jobs.insert(request_id.clone(), job);
    tracing::info!(model_id, %request_id, "FAL simulator accepted a job");

    tokio::spawn(run_job(state.clone(), request_id.clone(), cancel));

    Json(json!({
        "status": "IN_QUEUE",
        "request_id": request_id,
        "gateway_request_id": gateway_request_id,
        "response_url": response_url,
        "status_url": status_url,
        "cancel_url": cancel_url,
        "queue_position": 0,
    }))
    .into_response()
}

/// Checks that the files and finetunes an input names exist here, as FAL would find out.
fn check_references(state: &SimState, endpoint: Endpoint, input: &Value) -> Vec<Value> {
    let mut issues = Vec::new();
    if let Some(field) = endpoint.archive_field() {
        let url = input.get(field).and_then(Value::as_str).unwrap_or_default();
        if let Err(msg) = storage::check_archive(state, url) {
            issues.push(validate::issue(
                &[json!("body"), json!(field)],
                &msg,
                "value_error",
                Some(&json!(url)),
            ));
        }
    }
    if !state.config.check_references {
        return issues;
    }
    if endpoint == Endpoint::PortraitGenerator {
        let loras = input.get("loras").and_then(Value::as_array);
        for (index, lora) in loras.into_iter().flatten().enumerate() {
            let path = lora.get("path").and_then(Value::as_str).unwrap_or_default();
            if !storage::is_lora_file(state, path) {
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

fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, json!("Request not found"))
}

fn status(state: &SimState, app: &str, id: &str, with_logs: bool) -> Response {
    let inner = state.lock();
    let Some(job) = inner.jobs.get(id).filter(|job| job.app_id == app) else {
        return not_found();
    };
    let (status_url, response_url, cancel_url) = job.urls(state);
    let mut body = json!({
        "status": job.phase.as_str(),
        "request_id": job.request_id,
        "response_url": response_url,
        "status_url": status_url,
        "cancel_url": cancel_url,
        "logs": if with_logs { json!(job.logs) } else { Value::Null },
    });
    match job.phase {
        Phase::InQueue => {
            body["queue_position"] = json!(queue_position(state, job));
        }
        Phase::InProgress => {}
        Phase::Completed => {
            body["metrics"] = json!({ "inference_time": job.inference_time });
        }
    }
    let code = if job.phase == Phase::Completed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    (code, Json(body)).into_response()
}

/// Counts down from the configured start to 0 over the time a job spends queued.
fn queue_position(state: &SimState, job: &Job) -> u64 {
    let queue_time = state.config.queue_time.as_secs_f64();
    if queue_time <= 0.0 {
        return 0;
    }
    let left = (1.0 - job.submitted_at.elapsed().as_secs_f64() / queue_time).clamp(0.0, 1.0);
    (left * state.config.queue_position as f64).ceil() as u64
}

fn result(state: &SimState, app: &str, id: &str) -> Response {
    let inner = state.lock();
    let Some(job) = inner.jobs.get(id).filter(|job| job.app_id == app) else {
        return not_found();
    };
    match &job.outcome {
        None => error_response(
            StatusCode::BAD_REQUEST,
            json!("Request is still in progress"),
        ),
        Some(Outcome::Output(output)) => Json(output.clone()).into_response(),
        Some(Outcome::Error { status, detail }) => error_response(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            detail.clone(),
        ),
    }
}

fn cancel(state: &SimState, app: &str, id: &str) -> Response {
    let inner = state.lock();
    let Some(job) = inner.jobs.get(id).filter(|job| job.app_id == app) else {
        return not_found();
    };
    if job.phase == Phase::Completed {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "status": "ALREADY_COMPLETED" })),
        )
            .into_response();
    }
    // A stored permit: the job task sees it even if it is not waiting right now.
    job.cancel.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(json!({ "status": "CANCELLATION_REQUESTED" })),
    )
        .into_response()
}

/// One job's life, until it completes and its webhook is delivered, or the simulator stops.
async fn run_job(state: Arc<SimState>, id: String, cancel: Arc<Notify>) {
    tokio::select! {
        _ = state.stopped() => {}
        _ = live(&state, &id, &cancel) => {}
    }
}

async fn live(state: &Arc<SimState>, id: &str, cancel: &Notify) {
    let outcome = work(state, id, cancel).await;
    let webhook = {
        let mut inner = state.lock();
        let Some(job) = inner.jobs.get_mut(id) else {
            return;
        };
        let elapsed = job.submitted_at.elapsed().as_secs_f64();
        let run = (elapsed - state.config.queue_time.as_secs_f64()).max(0.0);
        job.inference_time = Some((run * 1000.0).round() / 1000.0);
        job.log(match &outcome {
            Outcome::Output(_) => "Request completed".to_owned(),
            Outcome::Error { status, .. } => format!("Request failed with status {status}"),
        });
        job.phase = Phase::Completed;
        job.outcome = Some(outcome.clone());
        tracing::info!(
            request_id = id,
            ok = matches!(outcome, Outcome::Output(_)),
            "FAL simulator job completed"
        );
        job.webhook_url
            .clone()
            .map(|url| (url, webhook_body(job, &outcome)))
    };
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
    Outcome::Error {
        status: 400,
        detail: json!("Request was cancelled"),
    }
}

async fn work(state: &SimState, id: &str, cancel: &Notify) -> Outcome {
    let config = &state.config;
    if cancelled_during(state, id, config.queue_time, cancel).await {
        return cancelled_outcome();
    }
    let Some((endpoint, fails)) = ({
        let mut inner = state.lock();
        inner.jobs.get_mut(id).map(|job| {
            job.phase = Phase::InProgress;
            job.log("Starting");
            (job.endpoint, job.fails)
        })
    }) else {
        return cancelled_outcome();
    };
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
        let detail = if config.failure_status == 422 {
            json!([validate::issue(
                &[json!("body")],
                &config.failure_message,
                "value_error",
                None
            )])
        } else {
            json!(config.failure_message)
        };
        return Outcome::Error {
            status: config.failure_status,
            detail,
        };
    }
    let input = {
        let inner = state.lock();
        match inner.jobs.get(id) {
            Some(job) => job.input.clone(),
            None => return cancelled_outcome(),
        }
    };
    Outcome::Output(output::produce(state, endpoint, id, &input))
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
        Outcome::Error { status, detail } => json!({
            "request_id": job.request_id,
            "gateway_request_id": job.gateway_request_id,
            "status": "ERROR",
            "error": format!("Invalid status code: {status}"),
            "payload": { "detail": detail },
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
        match request.send().await {
            Ok(response) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_paths_split_into_app_and_request() {
        assert_eq!(
            parse_queue_path("fal-ai/flux-pro/v1.1-ultra-finetuned"),
            QueuePath::Model("fal-ai/flux-pro/v1.1-ultra-finetuned".into())
        );
        assert_eq!(
            parse_queue_path("fal-ai/flux-pro/requests/abc/status"),
            QueuePath::Status {
                app: "fal-ai/flux-pro".into(),
                id: "abc".into()
            }
        );
        assert_eq!(
            parse_queue_path("fal-ai/flux-lora/requests/abc"),
            QueuePath::Result {
                app: "fal-ai/flux-lora".into(),
                id: "abc".into()
            }
        );
        assert_eq!(
            parse_queue_path("fal-ai/flux-lora/requests/abc/cancel"),
            QueuePath::Cancel {
                app: "fal-ai/flux-lora".into(),
                id: "abc".into()
            }
        );
        assert_eq!(parse_queue_path("fal-ai"), QueuePath::Invalid);
        assert_eq!(parse_queue_path("fal-ai/x/requests"), QueuePath::Invalid);
        assert_eq!(parse_queue_path("fal-ai//x"), QueuePath::Invalid);
        assert_eq!(
            app_id("fal-ai/flux-pro/v1.1-ultra-finetuned"),
            "fal-ai/flux-pro"
        );
    }
}
