//! Training rules: starting one, recording what FAL says about it, and letting the photos go
//! once a model exists.

use chrono::{DateTime, Utc};

use super::state::{Avatar, AvatarStatus, RequestOutcome};
use crate::commands::Action;
use crate::errors::AvatarError;
use crate::events::AvatarEvent;
use crate::model::TrainedModel;
use crate::presets::{AvatarType, ModelKind, TrainerParams};

impl Avatar {
    /// The events a training action leads to; `decide` routes only these actions here, after
    /// the common checks.
    pub(super) fn decide_training(
        &self,
        action: Action,
        owner: i64,
        at: DateTime<Utc>,
    ) -> Result<Vec<AvatarEvent>, AvatarError> {
        match action {
            Action::StartTraining {
                training_id,
                preset,
                style,
            } => {
                // Asked before (a press handled again): that training ran or runs, whatever
                // became of it; this is not a new request to pay for.
                if self.started_trainings.contains(&training_id) {
                    return Err(AvatarError::DuplicateTraining(training_id));
                }
                self.can_start_training()?;
                let avatar_type = self.require_type()?;
                let label = format!("aisha-{}", self.id.unwrap_or_default());
                let params =
                    TrainerParams::for_preset(avatar_type, style, preset, &self.trigger(), &label);
                Ok(vec![AvatarEvent::TrainingStarted {
                    training_id,
                    owner,
                    avatar_type,
                    preset,
                    endpoint: params.endpoint().to_owned(),
                    params,
                    photo_keys: self.photos.iter().map(|p| p.storage_key.clone()).collect(),
                    at,
                }])
            }

            Action::RecordTrainingSubmission {
                request_id,
                endpoint,
                status_url,
                response_url,
                cancel_url,
                archive_url,
            } => {
                let run = match (&self.status, &self.training) {
                    (AvatarStatus::Training, Some(run)) => run,
                    _ if self.requests.contains_key(&request_id) => return Ok(vec![]),
                    _ => return Err(AvatarError::NoTrainingInProgress),
                };
                match &run.request_id {
                    Some(existing) if *existing == request_id => Ok(vec![]),
                    Some(existing) => Err(AvatarError::SubmissionAlreadyRecorded(existing.clone())),
                    None => Ok(vec![AvatarEvent::TrainingSubmitted {
                        request_id,
                        endpoint,
                        status_url,
                        response_url,
                        cancel_url,
                        archive_url,
                        at,
                    }]),
                }
            }

            Action::CompleteTraining { request_id, output } => {
                let outcome = *self
                    .requests
                    .get(&request_id)
                    .ok_or_else(|| AvatarError::UnknownTrainingRequest(request_id.clone()))?;
                let accept = match outcome {
                    RequestOutcome::Pending => true,
                    RequestOutcome::Completed => false,
                    // A success that arrives after we gave up on the request is still the
                    // model the user paid for, unless a newer training has superseded it.
                    RequestOutcome::Failed => self.status == AvatarStatus::TrainingFailed,
                };
                if !accept {
                    return Ok(vec![]);
                }
                let model =
                    TrainedModel::from_output(self.training_kind()?, &output, &self.trigger())?;
                Ok(vec![AvatarEvent::TrainingCompleted {
                    owner,
                    request_id,
                    model,
                    at,
                }])
            }

            Action::FailTraining {
                request_id,
                reason,
                abandon,
            } => match request_id {
                None => match (&self.status, &self.training) {
                    (AvatarStatus::Training, Some(run)) if run.request_id.is_none() => {
                        Ok(vec![AvatarEvent::TrainingFailed {
                            owner,
                            request_id: None,
                            reason,
                            cancel_url: None,
                            at,
                        }])
                    }
                    _ => Err(AvatarError::NoTrainingInProgress),
                },
                Some(id) => match self.requests.get(&id) {
                    None => Err(AvatarError::UnknownTrainingRequest(id)),
                    Some(RequestOutcome::Pending) => Ok(vec![AvatarEvent::TrainingFailed {
                        owner,
                        cancel_url: self
                            .training
                            .as_ref()
                            .filter(|run| abandon && run.request_id.as_ref() == Some(&id))
                            .and_then(|run| run.cancel_url.clone()),
                        request_id: Some(id),
                        reason,
                        at,
                    }]),
                    Some(_) => Ok(vec![]),
                },
            },

            Action::DeleteTrainingPhotos => {
                // Only a successful training ends the photos' use; after a failure the user
                // may train again on them.
                if self.status != AvatarStatus::Trained {
                    return Err(AvatarError::NotTrained);
                }
                // Already deleted: a second sweeper (or a retry) records nothing.
                if self.photos.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![AvatarEvent::TrainingPhotosDeleted {
                    photo_keys: self.photos.iter().map(|p| p.storage_key.clone()).collect(),
                    at,
                }])
            }

            _ => unreachable!("decide routes only training actions here"),
        }
    }

    /// The kind of model the current (or latest) training was to produce.
    fn training_kind(&self) -> Result<ModelKind, AvatarError> {
        if let Some(run) = &self.training {
            return Ok(run.params.model_kind());
        }
        if let Some(kind) = self.last_training_kind {
            return Ok(kind);
        }
        // Before model kinds were recorded, every style avatar trained a pro finetune.
        Ok(match self.require_type()? {
            AvatarType::Portrait => ModelKind::PortraitLora,
            AvatarType::Style => ModelKind::ProFinetune,
        })
    }
}
