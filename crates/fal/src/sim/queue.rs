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
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::job::{app_id, parse_queue_path, Job, Outcome, Phase, QueuePath};
use super::run::run_job;
use super::state::{error_response, url_decode_pairs, SimState};
use super::storage;
use super::validate::{self, Endpoint};

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
    let (status_url, response_url, cancel_url) = job_urls(state, &job);
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
    let (status_url, response_url, cancel_url) = job_urls(state, job);
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

/// A job's status, response and cancel URLs.
fn job_urls(state: &SimState, job: &Job) -> (String, String, String) {
    let response = state.url(&format!(
        "/queue/{}/requests/{}",
        job.app_id, job.request_id
    ));
    let status = format!("{response}/status");
    let cancel = format!("{response}/cancel");
    (status, response, cancel)
}
