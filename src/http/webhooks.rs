//! `POST /webhooks/fal`: FAL's signed result deliveries, verified before anything is read and
//! turned into the same idempotent commands the status poller uses. The command is stored before
//! we answer 200 (one short write), so an acknowledged webhook is never lost; if the store is
//! unreachable we answer 503 and FAL delivers again.
//!
//! A signature only proves that FAL sent it. The URL's token (see `actors::targets`) proves the
//! URL is one we gave FAL for this avatar or generation; a webhook without a valid one changes
//! nothing. When the process that submitted a job died before recording it, the webhook's
//! request id is adopted as the job's submission, so the paid result is not lost.

use std::sync::Arc;

use aggregates::{Action, Actor, AvatarError, Command};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use crate::actors::targets::Target;
use crate::actors::{by, Services};
use crate::fal::types::{GeneratorOutput, WebhookPayload, WebhookStatus};
use crate::fal::{WebhookError, WebhookVerifier};
use crate::results::{
    adopt_generation_submission, adopt_training_submission, generated_images,
    report_training_result,
};
use crate::store::StoreError;

/// Largest webhook body accepted; FAL's results for our endpoints are a few kilobytes.
pub const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct WebhookState {
    pub verifier: Arc<WebhookVerifier>,
    pub services: Services,
}

pub fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/webhooks/fal", post(fal_webhook))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES))
        .with_state(state)
}

/// Which of our operations a webhook belongs to; we put these in the URL we give FAL.
#[derive(Debug, Deserialize)]
struct TargetQuery {
    avatar_id: Option<String>,
    generation_id: Option<String>,
    token: Option<String>,
}

async fn fal_webhook(
    State(state): State<WebhookState>,
    Query(target): Query<TargetQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let payload = match state.verifier.verify_now(&headers, &body).await {
        Ok(payload) => {
            metrics::counter!("webhook_verifications_total", "result" => "ok").increment(1);
            payload
        }
        Err(WebhookError::ForeignUser {
            user_id,
            request_id,
        }) => {
            // Signed by FAL, but for another FAL account (FAL_USER_ID pins ours): not our job.
            // Answered 200 so FAL stops delivering it; nothing is read or changed.
            metrics::counter!("webhook_verifications_total", "result" => "foreign_user")
                .increment(1);
            tracing::warn!(%request_id, fal_user_id = %user_id,
                "FAL webhook for another FAL user ignored");
            return StatusCode::OK;
        }
        Err(e) => {
            let (status, result) = match &e {
                WebhookError::KeysUnavailable(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "keys_unavailable")
                }
                WebhookError::Malformed(_) | WebhookError::RequestIdMismatch => {
                    (StatusCode::BAD_REQUEST, "malformed")
                }
                WebhookError::StaleTimestamp => (StatusCode::UNAUTHORIZED, "stale"),
                WebhookError::MissingHeader(_) => (StatusCode::UNAUTHORIZED, "unsigned"),
                _ => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            };
            metrics::counter!("webhook_verifications_total", "result" => result).increment(1);
            tracing::warn!(error = %crate::telemetry::chain(&e), result, "FAL webhook refused");
            return status;
        }
    };
    let Some(avatar_id) = target
        .avatar_id
        .as_deref()
        .and_then(|s| Uuid::parse_str(s).ok())
    else {
        tracing::warn!(request_id = %payload.request_id, "verified FAL webhook without a valid avatar_id");
        return StatusCode::BAD_REQUEST;
    };
    let generation_id = match target.generation_id.as_deref().map(Uuid::parse_str) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return StatusCode::BAD_REQUEST,
    };
    let named = match generation_id {
        Some(generation_id) => Target::Generation {
            avatar_id,
            generation_id,
        },
        None => Target::Training { avatar_id },
    };
    let token = target.token.as_deref().unwrap_or_default();
    if !state.services.webhooks.verify(&named, token) {
        // Signed by FAL, but not at a URL we handed out: someone else's job aimed at ours.
        // Answered 200 so FAL stops delivering it; nothing is read or changed.
        metrics::counter!("webhook_verifications_total", "result" => "foreign_target").increment(1);
        tracing::warn!(%avatar_id, request_id = %payload.request_id,
            "FAL webhook with a missing or wrong URL token ignored");
        return StatusCode::OK;
    }
    let outcome = match generation_id {
        Some(generation_id) => {
            record_generation(&state.services, avatar_id, generation_id, &payload).await
        }
        None => record_training(&state.services, avatar_id, &payload).await,
    };
    match outcome {
        Ok(()) => StatusCode::OK,
        Err(StoreError::Rejected(refusal)) => {
            // A verified delivery we cannot use (an old or foreign request, a deleted avatar):
            // answering an error would only make FAL retry it for two hours.
            tracing::warn!(%avatar_id, request_id = %payload.request_id, reason = %refusal,
                "FAL webhook not applied");
            StatusCode::OK
        }
        Err(e) => {
            tracing::error!(%avatar_id, request_id = %payload.request_id, error = %crate::telemetry::chain(&e),
                "could not store a FAL webhook; FAL will deliver it again");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// The result is reported first: the submission is almost always on record, and then that is
/// the one write. Only a result for a request the avatar never heard of (the submitting process
/// died before recording it) adopts the request and reports again.
async fn record_training(
    s: &Services,
    avatar_id: Uuid,
    payload: &WebhookPayload,
) -> Result<(), StoreError> {
    let result = match (payload.status, &payload.payload) {
        (WebhookStatus::Ok, Some(output)) => Ok(output),
        (WebhookStatus::Ok, None) => {
            // FAL finished but could not send the output; the poller will fetch it.
            tracing::warn!(%avatar_id, request_id = %payload.request_id,
                payload_error = ?payload.payload_error, "FAL webhook without its output");
            adopt_training_submission(
                &s.store,
                &s.fal,
                by::WEBHOOK,
                avatar_id,
                &payload.request_id,
            )
            .await?;
            return Ok(());
        }
        (_, _) => Err(payload
            .error_message()
            .unwrap_or_else(|| "FAL reported an error".into())),
    };
    let report = || {
        report_training_result(
            &s.store,
            by::WEBHOOK,
            avatar_id,
            &payload.request_id,
            result.clone(),
        )
    };
    match report().await {
        Err(StoreError::Rejected(AvatarError::UnknownTrainingRequest(request))) => {
            if adopt_training_submission(
                &s.store,
                &s.fal,
                by::WEBHOOK,
                avatar_id,
                &payload.request_id,
            )
            .await?
            {
                report().await
            } else {
                Err(StoreError::Rejected(AvatarError::UnknownTrainingRequest(
                    request,
                )))
            }
        }
        other => other,
    }
}

async fn record_generation(
    s: &Services,
    avatar_id: Uuid,
    generation_id: Uuid,
    payload: &WebhookPayload,
) -> Result<(), StoreError> {
    // The cached state is enough to go on when it shows the generation pending (the command
    // that follows is checked against the database anyway); when it does not, only a fresh
    // load may conclude that the webhook is not ours to apply.
    let avatar = match s.store.recent(avatar_id) {
        Some(avatar) if avatar.pending_generation(generation_id).is_some() => avatar,
        _ => s.store.load(avatar_id).await?,
    };
    match avatar.pending_generation(generation_id) {
        // The avatar was deleted while this job ran, perhaps before its submission was on
        // record: nothing will record it now, so it is cancelled (a no-op once finished), and
        // the cancel's follow-up deletes its payloads and images at FAL. A job that was on
        // record gets the same cancel from the deletion; the second is the same work item.
        None if avatar.status == aggregates::AvatarStatus::Deleted => {
            if let Some(model) = &avatar.model {
                let urls = s
                    .fal
                    .request_urls(model.kind().generator(), &payload.request_id);
                crate::actors::training::cancel_orphan(
                    s,
                    avatar_id,
                    &urls.cancel_url,
                    crate::actors::cancel::CancelReason::Deleted,
                )
                .await?;
            }
            return Ok(());
        }
        // Finished already (a duplicate), or never ours: nothing to do.
        None => return Ok(()),
        Some(Some(job)) if job.request_id != payload.request_id => {
            tracing::warn!(%avatar_id, %generation_id, request_id = %payload.request_id,
                recorded = %job.request_id, "FAL webhook for another request of this generation ignored");
            return Ok(());
        }
        Some(Some(_)) => {}
        Some(None) => {
            // The endpoint the avatar's model generates on, as when the generation was asked.
            let Some(model) = &avatar.model else {
                return Ok(());
            };
            let endpoint = model.kind().generator();
            adopt_generation_submission(
                &s.store,
                &s.fal,
                by::WEBHOOK,
                avatar_id,
                generation_id,
                endpoint,
                &payload.request_id,
            )
            .await?;
        }
    }
    let action = match payload.output::<GeneratorOutput>() {
        // An image off FAL's media hosts is neither fetched nor shown: the generation fails.
        Some(Ok(output)) => match s.fal.check_output_images(&output).await {
            Ok(()) => Action::CompleteGeneration {
                generation_id,
                images: generated_images(&output),
            },
            Err(refused) => Action::FailGeneration {
                generation_id,
                reason: refused.to_string(),
                abandon: false,
            },
        },
        Some(Err(e)) => Action::FailGeneration {
            generation_id,
            reason: format!("FAL returned an unreadable result: {e}"),
            abandon: false,
        },
        None if payload.status == WebhookStatus::Ok => return Ok(()),
        None => Action::FailGeneration {
            generation_id,
            reason: payload.error_message().unwrap_or_default(),
            abandon: false,
        },
    };
    let command = Command::new(Actor::System(by::WEBHOOK.into()), Utc::now(), action);
    match s.store.execute(avatar_id, command, Uuid::new_v4()).await {
        Ok(_) | Err(StoreError::Rejected(AvatarError::UnknownGeneration(_))) => Ok(()),
        Err(e) => Err(e),
    }
}
