//! What FAL says about a job, recorded in the avatar: the webhook route and the actors' status
//! polls report the same way, and the aggregate turns duplicates into nothing.

use aggregates::{Action, Actor, AvatarError, Command, GeneratedImage, TrainingOutput};
use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use crate::fal::types::GeneratorOutput;
use crate::fal::FalClient;
use crate::store::{AvatarStore, StoreError};
use crate::telemetry;

/// Records the submission of a training FAL is reporting on, when the process that submitted
/// it died before recording it: the webhook's URL named the avatar (with a token only we can
/// make) and the avatar is still waiting for exactly one submission. Returns whether it adopted.
pub async fn adopt_training_submission(
    store: &AvatarStore,
    fal: &FalClient,
    actor: &str,
    avatar_id: Uuid,
    request_id: &str,
) -> Result<bool, StoreError> {
    let avatar = store.load(avatar_id).await?;
    let Some(run) = avatar.training_awaiting_submission() else {
        return Ok(false);
    };
    let endpoint = run.params.endpoint().to_owned();
    let urls = fal.request_urls(&endpoint, request_id);
    let record = Command::new(
        Actor::System(actor.into()),
        Utc::now(),
        Action::RecordTrainingSubmission {
            request_id: request_id.to_owned(),
            endpoint,
            status_url: urls.status_url,
            response_url: urls.response_url,
            cancel_url: urls.cancel_url,
            archive_url: None,
        },
    );
    let done = store.execute(avatar_id, record, Uuid::new_v4()).await?;
    if !done.events.is_empty() {
        telemetry::fal_job_adopted();
        tracing::warn!(%avatar_id, request_id, "adopted a training submission from its webhook");
    }
    Ok(true)
}

/// Model data from a trainer's output JSON, whatever its shape; the aggregate judges it.
pub fn training_output(output: &Value) -> TrainingOutput {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    TrainingOutput {
        lora_file_url: text(output.pointer("/diffusers_lora_file/url")),
        config_file_url: text(output.pointer("/config_file/url")),
        finetune_id: text(output.get("finetune_id")),
    }
}

/// Records the outcome of a training request, from the webhook or the poller alike: duplicates
/// are no-ops in the aggregate, and data of the wrong shape fails the training visibly.
pub async fn report_training_result(
    store: &AvatarStore,
    actor: &str,
    avatar_id: Uuid,
    request_id: &str,
    result: Result<&Value, String>,
) -> Result<(), StoreError> {
    let by = Actor::System(actor.into());
    let action = match result {
        Ok(output) => Action::CompleteTraining {
            request_id: request_id.to_owned(),
            output: training_output(output),
        },
        Err(reason) => Action::FailTraining {
            request_id: Some(request_id.to_owned()),
            reason,
            abandon: false,
        },
    };
    let completing = matches!(action, Action::CompleteTraining { .. });
    match store
        .execute(
            avatar_id,
            Command::new(by.clone(), Utc::now(), action),
            Uuid::new_v4(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(StoreError::Rejected(refusal @ AvatarError::ModelDataMismatch { .. }))
            if completing =>
        {
            tracing::error!(%avatar_id, request_id, error = %refusal, "training result refused");
            let fail = Action::FailTraining {
                request_id: Some(request_id.to_owned()),
                reason: format!("FAL returned model data of the wrong shape: {refusal}"),
                abandon: false,
            };
            store
                .execute(
                    avatar_id,
                    Command::new(by, Utc::now(), fail),
                    Uuid::new_v4(),
                )
                .await
                .map(drop)
        }
        Err(e) => Err(e),
    }
}

/// Records the FAL job of a generation whose submitter died before recording it, from the
/// job's webhook (whose URL named this generation).
pub async fn adopt_generation_submission(
    store: &AvatarStore,
    fal: &FalClient,
    actor: &str,
    avatar_id: Uuid,
    generation_id: Uuid,
    endpoint: &str,
    request_id: &str,
) -> Result<(), StoreError> {
    let urls = fal.request_urls(endpoint, request_id);
    let record = Command::new(
        Actor::System(actor.into()),
        Utc::now(),
        Action::RecordGenerationSubmission {
            generation_id,
            request_id: request_id.to_owned(),
            status_url: urls.status_url,
            response_url: urls.response_url,
            cancel_url: urls.cancel_url,
        },
    );
    let done = store.execute(avatar_id, record, Uuid::new_v4()).await?;
    if !done.events.is_empty() {
        telemetry::fal_job_adopted();
        tracing::warn!(%avatar_id, %generation_id, request_id, "adopted a generation submission from its webhook");
    }
    Ok(())
}

/// The images of a generator's (or the upscaler's) output, with FAL's NSFW flags.
pub fn generated_images(output: &GeneratorOutput) -> Vec<GeneratedImage> {
    output
        .output_images()
        .enumerate()
        .map(|(i, img)| GeneratedImage {
            url: img.url.clone(),
            width: img.width,
            height: img.height,
            content_type: img.content_type.clone(),
            nsfw: output.is_nsfw(i),
        })
        .collect()
}
