//! The simulated queue: submissions, the IN_QUEUE → IN_PROGRESS → COMPLETED lifecycle of each
//! job (one tokio task per job), status (polled or streamed), result and cancel answers, and
//! webhook delivery.
//!
//! As on FAL today, the queue takes any JSON input for a model it serves: the input is checked
//! when the job runs, and a job that fails completes like any other, with the error on its status
//! (`error`, `error_type`), its result (the error status, `detail`, `x-fal-error-type`) and its
//! `ERROR` webhook.
//!
//! A submission's lifecycle header (`X-Fal-Object-Lifecycle-Preference`) sets how long the files
//! its job produces are served. *Delete request payloads* (`DELETE
//! /platform/v1/models/requests/{id}/payloads`, FAL's Platform API) drops a finished job's input
//! and output and deletes the files in its output, not the files it read; its result then
//! answers 404. FAL documents neither what it answers for a request still running nor for one
//! whose payloads are gone: the simulator refuses the first (400, as its result does), so a
//! client must wait for a job to finish first, and answers the second with an empty list (a
//! repeat with the same `Idempotency-Key` within ten minutes gets the first answer again).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::inputs::{self, Fetched};
use super::validate::{self, Endpoint};
use super::{error_response, output, storage, url_decode_pairs, SimState, WebhookDelivery};
use crate::types::LogEntry;

/// What a path under `/queue/` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum QueuePath {
    /// A model id, possibly with a sub-path: a submission target.
    Model(String),
    Status {
        app: String,
        id: String,
    },
    /// `…/status/stream`: the status as server-sent events.
    StatusStream {
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
                ["status", "stream"] => QueuePath::StatusStream { app, id },
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
    Error(JobError),
}

/// FAL's `error_type` for an input its model refused (a 422 with a `detail` list).
pub(super) const VALIDATION_ERROR: &str = "validation_error";

/// A job that finished with an error, as FAL reports one.
#[derive(Debug, Clone)]
pub(super) struct JobError {
    /// The HTTP status its result answers with.
    pub status: u16,
    /// The `detail` of that answer: a list of validation errors (422) or a sentence.
    pub detail: Value,
    /// The machine-readable category: `error_type` on the status (and on request errors' bodies),
    /// and the `x-fal-error-type` header of the result.
    pub error_type: &'static str,
}

impl JobError {
    /// The model refused the input: 422 with FastAPI's `detail` list.
    fn validation(issues: Vec<Value>) -> Self {
        Self {
            status: 422,
            detail: Value::Array(issues),
            error_type: VALIDATION_ERROR,
        }
    }

    /// A failure of the request itself (the runner crashed, timed out…): a sentence, with the
    /// category FAL's "Request Error Types" give the status.
    fn request(status: u16, message: &str) -> Self {
        let error_type = match status {
            400 => "bad_request",
            499 => "client_cancelled",
            500 => "runner_server_error",
            502 => "runner_incomplete_response",
            503 => "runner_disconnected",
            504 => "request_timeout",
            _ => "internal_error",
        };
        Self {
            status,
            detail: json!(message),
            error_type,
        }
    }

    fn cancelled() -> Self {
        Self {
            status: 400,
            detail: json!("Request was cancelled"),
            error_type: "client_cancelled",
        }
    }

    /// A sentence for the status's `error`: the detail, or its validation errors one by one.
    fn message(&self) -> String {
        match &self.detail {
            Value::String(text) => text.clone(),
            Value::Array(issues) => issues
                .iter()
                .map(|issue| {
                    let loc: Vec<String> = issue["loc"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|part| match part {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    format!(
                        "{}: {}",
                        loc.join("."),
                        issue["msg"].as_str().unwrap_or("invalid")
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        }
    }

    /// The body of the result: `{"detail"}` for a model's validation errors; request errors
    /// repeat their category as `error_type`, as FAL's request errors do.
    fn body(&self) -> Value {
        if self.status == 422 {
            json!({ "detail": self.detail })
        } else {
            json!({ "detail": self.detail, "error_type": self.error_type })
        }
    }

    fn response(&self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        response.headers_mut().insert(
            "x-fal-error-type",
            HeaderValue::from_static(self.error_type),
        );
        response
    }
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
    /// The model id the job was submitted to, as in the queue path.
    pub model_id: String,
    /// When each webhook delivery attempt started (its POST about to go out).
    pub webhooks_sent: Vec<std::time::Instant>,
    /// When the receiver answered each attempt that got an answer, whatever its status.
    pub webhooks_answered: Vec<std::time::Instant>,
    pub logs: Vec<LogEntry>,
    pub outcome: Option<Outcome>,
    pub inference_time: Option<f64>,
    /// How long the files the job produces are kept, as its submission asked; `None`: kept.
    pub results_lifetime: Option<chrono::Duration>,
    /// The stored files in its output, until its payloads are deleted.
    pub output_files: Vec<String>,
    /// Whether its payloads (input and output) were deleted.
    pub payloads_deleted: bool,
    /// Moves this job may still make while jobs are paused.
    pub allowance: u64,
    cancel: Arc<Notify>,
    fails: bool,
    /// Bumped on every change of phase or logs, for status streams.
    changed: watch::Sender<u64>,
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
        self.touch();
    }

    /// Tells status streams that something changed.
    fn touch(&self) {
        self.changed.send_modify(|n| *n += 1);
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
    headers: HeaderMap,
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
        (Method::POST, QueuePath::Model(model_id)) => {
            submit(&state, &model_id, uri.query(), &headers, &body)
        }
        (Method::GET, QueuePath::Status { app, id }) => status(&state, &app, &id, with_logs),
        (Method::GET, QueuePath::StatusStream { app, id }) => {
            status_stream(&state, &app, &id, with_logs)
        }
        (Method::GET, QueuePath::Result { app, id }) => result(&state, &app, &id),
        (Method::PUT, QueuePath::Cancel { app, id }) => cancel(&state, &app, &id),
        (_, QueuePath::Invalid) => error_response(StatusCode::NOT_FOUND, json!("Not Found")),
        _ => error_response(StatusCode::METHOD_NOT_ALLOWED, json!("Method Not Allowed")),
    }
}

fn unprocessable(issues: Vec<Value>) -> Response {
    error_response(StatusCode::UNPROCESSABLE_ENTITY, Value::Array(issues))
}

/// The sentence on the deprecated pro trainer's model page.
const DEPRECATED: &str = "This endpoint is deprecated. This model is no longer supported.";

fn submit(
    state: &Arc<SimState>,
    model_id: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let Some(endpoint) = Endpoint::from_model_id(model_id) else {
        return error_response(
            StatusCode::NOT_FOUND,
            json!(format!("Application '{model_id}' not found")),
        );
    };
    // What FAL's queue answers for a deprecated endpoint is not written down anywhere we could
    // find: its model page says DEPRECATED, and `@fal-ai/client` dropped the endpoint from its
    // map. The simulator refuses the submit with 410 Gone and that sentence as `detail`, so no
    // job is queued and nothing is billed; a client must take any 4xx at submit as "FAL did not
    // take the job". `SimConfig::with_pro_trainer(true)` serves it, for accounts FAL still
    // runs it for.
    if endpoint == Endpoint::ProTrainer && !state.config.pro_trainer {
        tracing::debug!(model_id, "FAL simulator refusing a deprecated endpoint");
        return error_response(StatusCode::GONE, json!(DEPRECATED));
    }
    // The lifecycle header is the platform's, not the model's: checked as uploads check it.
    let results_lifetime = match storage::requested_lifetime(headers) {
        Ok(lifetime) => lifetime,
        Err(why) => return storage::lifecycle_refused(why),
    };
    // Only what is not a JSON body at all, or a malformed webhook URL (the queue's own
    // parameter), is refused here; the model's input is checked when the job runs.
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
        model_id: model_id.to_owned(),
        webhooks_sent: Vec::new(),
        webhooks_answered: Vec::new(),
        logs: Vec::new(),
        outcome: None,
        inference_time: None,
        results_lifetime,
        output_files: Vec::new(),
        payloads_deleted: false,
        allowance: 0,
        cancel: cancel.clone(),
        fails,
        changed: watch::channel(0).0,
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

/// Checks that the files and finetunes an input names exist here, as FAL's runner finds out when
/// it fetches them.
fn check_references(
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

fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, json!("Request not found"))
}

fn status(state: &SimState, app: &str, id: &str, with_logs: bool) -> Response {
    let inner = state.lock();
    let Some(job) = inner.jobs.get(id).filter(|job| job.app_id == app) else {
        return not_found();
    };
    let body = status_body(state, job, with_logs);
    let code = if job.phase == Phase::Completed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    (code, Json(body)).into_response()
}

/// A job's status, as `GET …/status` answers it and `…/status/stream` sends it.
fn status_body(state: &SimState, job: &Job, with_logs: bool) -> Value {
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
            // Present only when the request failed.
            if let Some(Outcome::Error(error)) = &job.outcome {
                body["error"] = json!(error.message());
                body["error_type"] = json!(error.error_type);
            }
        }
    }
    body
}

/// `GET …/status/stream`: one `data: {status}` event each time the status changes, the last
/// one COMPLETED, then the stream ends (as fal-js's `streamStatus` reads it: every event's data is
/// a status, the last one received is the outcome).
fn status_stream(state: &Arc<SimState>, app: &str, id: &str, with_logs: bool) -> Response {
    let changes = {
        let inner = state.lock();
        match inner.jobs.get(id).filter(|job| job.app_id == app) {
            Some(job) => job.changed.subscribe(),
            None => return not_found(),
        }
    };
    struct Cursor {
        state: Arc<SimState>,
        id: String,
        changes: watch::Receiver<u64>,
        last: Option<Value>,
        done: bool,
    }
    let start = Cursor {
        state: state.clone(),
        id: id.to_owned(),
        changes,
        last: None,
        done: false,
    };
    let events = futures::stream::unfold(start, move |mut cursor| async move {
        if cursor.done {
            return None;
        }
        loop {
            // Marked seen before reading, so a change made meanwhile wakes the next wait.
            cursor.changes.borrow_and_update();
            let (body, completed) = {
                let inner = cursor.state.lock();
                let job = inner.jobs.get(&cursor.id)?;
                (
                    status_body(&cursor.state, job, with_logs),
                    job.phase == Phase::Completed,
                )
            };
            if cursor.last.as_ref() != Some(&body) {
                let event = Event::default().data(body.to_string());
                cursor.last = Some(body);
                cursor.done = completed;
                return Some((Ok::<_, Infallible>(event), cursor));
            }
            // The queue position counts down with time alone: look again now and then.
            tokio::select! {
                _ = cursor.state.stopped() => return None,
                changed = cursor.changes.changed() => if changed.is_err() { return None },
                _ = tokio::time::sleep(STREAM_RECHECK) => {}
            }
        }
    });
    Sse::new(events).into_response()
}

/// How often an idle status stream looks at its job again (for the queue position).
const STREAM_RECHECK: Duration = Duration::from_millis(50);

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
    let Some(job) = inner
        .jobs
        .get(id)
        .filter(|job| job.app_id == app && !job.payloads_deleted)
    else {
        return not_found();
    };
    match &job.outcome {
        None => error_response(
            StatusCode::BAD_REQUEST,
            json!("Request is still in progress"),
        ),
        Some(Outcome::Output(output)) => Json(output.clone()).into_response(),
        Some(Outcome::Error(error)) => error.response(),
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

/// How long an answer is replayed for a repeated idempotency key (FAL: "cached for 10 minutes").
const IDEMPOTENCY_WINDOW: chrono::Duration = chrono::Duration::minutes(10);

/// `DELETE /platform/v1/models/requests/{id}/payloads`: drops a finished job's input and output
/// and deletes the files in its output (not those it read), answering each file deleted as
/// `{"link", "exception"}`. A repeat with the same `Idempotency-Key` within ten minutes gets the
/// first answer again.
pub(super) async fn delete_payloads(
    State(state): State<Arc<SimState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let now = Utc::now();
    let mut inner = state.lock();
    inner
        .deletions
        .retain(|_, (at, _)| now - *at < IDEMPOTENCY_WINDOW);
    if let Some((_, answer)) = key.as_ref().and_then(|k| inner.deletions.get(k)) {
        return Json(answer.clone()).into_response();
    }
    let Some(job) = inner.jobs.get_mut(&id) else {
        return not_found();
    };
    if job.phase != Phase::Completed {
        return error_response(
            StatusCode::BAD_REQUEST,
            json!("Request is still in progress"),
        );
    }
    let files = std::mem::take(&mut job.output_files);
    job.payloads_deleted = true;
    job.input = Value::Null;
    if let Some(Outcome::Output(output)) = &mut job.outcome {
        *output = Value::Null;
    }
    let mut results = Vec::new();
    for file_id in files {
        // Already expired files were deleted then; they are reported as deleted all the same.
        if let Some(file) = inner.files.remove(&file_id) {
            let link = state.url(&format!("/files/{file_id}/{}", file.file_name));
            results.push(json!({ "link": link, "exception": null }));
        }
    }
    let answer = json!({ "cdn_delete_results": results });
    if let Some(key) = key {
        inner.deletions.insert(key, (now, answer.clone()));
    }
    tracing::info!(request_id = %id, files = results.len(), "FAL simulator deleted a request's payloads");
    Json(answer).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_errors_take_fals_shapes() {
        let invalid = JobError::validation(vec![validate::issue(
            &[json!("body"), json!("loras"), json!(0), json!("path")],
            "Could not load LoRA weights from this URL",
            "value_error",
            None,
        )]);
        assert_eq!(
            invalid.message(),
            "body.loras.0.path: Could not load LoRA weights from this URL"
        );
        assert_eq!(invalid.body()["detail"][0]["type"], "value_error");
        assert!(invalid.body().get("error_type").is_none());
        let crashed = JobError::request(500, "boom");
        assert_eq!(
            crashed.body(),
            json!({"detail": "boom", "error_type": "runner_server_error"})
        );
        assert_eq!(crashed.message(), "boom");
        let response = crashed.response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()["x-fal-error-type"],
            "runner_server_error"
        );
        assert_eq!(JobError::request(504, "slow").error_type, "request_timeout");
    }

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
            parse_queue_path("fal-ai/flux-lora/requests/abc/status/stream"),
            QueuePath::StatusStream {
                app: "fal-ai/flux-lora".into(),
                id: "abc".into()
            }
        );
        assert_eq!(
            parse_queue_path("fal-ai/flux-lora/requests/abc/status/other"),
            QueuePath::Invalid
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
