//! The rules every command passes first (who may ask, in which state), and the avatar's own
//! lifecycle: creation, name, photos, deletion and operator corrections.

use super::state::{Avatar, AvatarStatus, MAX_PHOTOS, MIN_PHOTO_SIDE};
use crate::commands::{Action, Command, TrainingOutput};
use crate::errors::AvatarError;
use crate::events::AvatarEvent;
use crate::model::TrainedModel;
use crate::presets::{AvatarType, ModelKind};
use crate::values::{Actor, AvatarName, Origin};

impl Avatar {
    /// Who may issue what: users act on their own avatars, the system reports outside results,
    /// operators correct data and may delete.
    fn authorize(&self, by: &Actor, action: &Action) -> Result<(), AvatarError> {
        let user_action = matches!(
            action,
            Action::Create { .. }
                | Action::Rename { .. }
                | Action::UploadPhoto { .. }
                | Action::RemovePhoto { .. }
                | Action::ClearPhotos
                | Action::StartTraining { .. }
                | Action::Generate {
                    origin: None | Some(Origin::Pack { .. } | Origin::Upscale { .. }),
                    ..
                }
                | Action::Upscale { .. }
                | Action::Delete
        );
        let system_action = matches!(
            action,
            Action::Generate {
                origin: Some(Origin::Starter { .. }),
                ..
            } | Action::RecordTrainingSubmission { .. }
                | Action::CompleteTraining { .. }
                | Action::FailTraining { .. }
                | Action::DeleteTrainingPhotos
                | Action::RecordGenerationSubmission { .. }
                | Action::CompleteGeneration { .. }
                | Action::FailGeneration { .. }
        );
        let operator_action = matches!(action, Action::CorrectModelData { .. } | Action::Delete);
        let (allowed, kind) = match by {
            Actor::User(_) => (user_action, "a Telegram user"),
            Actor::System(_) => (system_action, "the system"),
            Actor::Operator(_) => (operator_action, "an operator"),
        };
        if !allowed {
            return Err(AvatarError::NotPermitted {
                actor: kind,
                action: action.name(),
            });
        }
        if let (Actor::User(user), false) = (by, matches!(action, Action::Create { .. })) {
            if self.status != AvatarStatus::New && *user != self.owner {
                return Err(AvatarError::NotOwner);
            }
        }
        Ok(())
    }

    /// The events a command leads to, or why it is refused; training and generation actions
    /// are decided by their own parts once the common checks passed.
    pub(super) fn decide(&self, command: Command) -> Result<Vec<AvatarEvent>, AvatarError> {
        let Command { by, at, action } = command;
        match (self.status, &action) {
            (AvatarStatus::Deleted, _) => return Err(AvatarError::Deleted),
            (AvatarStatus::New, Action::Create { .. }) => {}
            (AvatarStatus::New, _) => return Err(AvatarError::NotFound),
            (_, Action::Create { .. }) => return Err(AvatarError::AlreadyExists),
            _ => {}
        }
        self.authorize(&by, &action)?;
        let owner = self.owner;

        match action {
            Action::Create {
                avatar_id,
                name,
                gender,
                avatar_type,
            } => {
                let Actor::User(owner) = by else {
                    unreachable!("authorize lets only users create")
                };
                Ok(vec![AvatarEvent::AvatarCreated {
                    avatar_id,
                    owner,
                    name: AvatarName::parse(&name)?,
                    gender,
                    avatar_type,
                    at,
                }])
            }

            Action::Rename { name } => {
                let name = AvatarName::parse(&name)?;
                if self.name.as_ref() == Some(&name) {
                    return Ok(vec![]);
                }
                Ok(vec![AvatarEvent::AvatarRenamed { name, at }])
            }

            Action::UploadPhoto { photo } => {
                self.require_photos_editable()?;
                if photo.byte_size == 0 {
                    return Err(AvatarError::EmptyPhoto);
                }
                if photo.width < MIN_PHOTO_SIDE || photo.height < MIN_PHOTO_SIDE {
                    return Err(AvatarError::PhotoTooSmall {
                        width: photo.width,
                        height: photo.height,
                        min: MIN_PHOTO_SIDE,
                    });
                }
                if let Some(existing) = self
                    .photos
                    .iter()
                    .find(|p| p.content_hash == photo.content_hash || p.photo_id == photo.photo_id)
                {
                    return Err(AvatarError::DuplicatePhoto {
                        existing: existing.photo_id.clone(),
                    });
                }
                if self.photos.len() >= MAX_PHOTOS {
                    return Err(AvatarError::TooManyPhotos { max: MAX_PHOTOS });
                }
                Ok(vec![AvatarEvent::PhotoUploaded {
                    photo,
                    photo_count: self.photos.len() + 1,
                    at,
                }])
            }

            Action::RemovePhoto { photo_id } => {
                self.require_photos_editable()?;
                if !self.photos.iter().any(|p| p.photo_id == photo_id) {
                    return Err(AvatarError::UnknownPhoto(photo_id));
                }
                Ok(vec![AvatarEvent::PhotoRemoved {
                    photo_id,
                    photo_count: self.photos.len() - 1,
                    at,
                }])
            }

            Action::ClearPhotos => {
                self.require_photos_editable()?;
                // With no photos left this emits nothing: a second tap changes nothing.
                // One event per photo, newest first, so the history says which photos went and
                // every reader of `PhotoRemoved` already understands it.
                let total = self.photos.len();
                Ok(self
                    .photos
                    .iter()
                    .rev()
                    .enumerate()
                    .map(|(removed, photo)| AvatarEvent::PhotoRemoved {
                        photo_id: photo.photo_id.clone(),
                        photo_count: total - removed - 1,
                        at,
                    })
                    .collect())
            }

            action @ (Action::StartTraining { .. }
            | Action::RecordTrainingSubmission { .. }
            | Action::CompleteTraining { .. }
            | Action::FailTraining { .. }
            | Action::DeleteTrainingPhotos) => self.decide_training(action, owner, at),

            action @ (Action::Generate { .. }
            | Action::Upscale { .. }
            | Action::RecordGenerationSubmission { .. }
            | Action::CompleteGeneration { .. }
            | Action::FailGeneration { .. }) => self.decide_generation(action, owner, at),

            Action::Delete => {
                let running_training_cancel_url = match self.status {
                    AvatarStatus::Training => self
                        .training
                        .as_ref()
                        .and_then(|run| run.cancel_url.clone()),
                    _ => None,
                };
                Ok(vec![AvatarEvent::AvatarDeleted {
                    owner,
                    photo_keys: self.photos.iter().map(|p| p.storage_key.clone()).collect(),
                    running_training_cancel_url,
                    running_generation_cancel_urls: self
                        .pending_generations
                        .values()
                        .flatten()
                        .map(|job| job.cancel_url.clone())
                        .collect(),
                    model: self.model.clone(),
                    at,
                }])
            }

            Action::CorrectModelData {
                avatar_type,
                output,
                reason,
            } => {
                if reason.trim().is_empty() {
                    return Err(AvatarError::EmptyReason);
                }
                if self.status != AvatarStatus::Trained {
                    return Err(AvatarError::NotTrained);
                }
                let previous_type = self.require_type()?;
                let trigger = self
                    .model
                    .as_ref()
                    .map(|m| m.trigger().to_owned())
                    .unwrap_or_else(|| self.trigger());
                let model = TrainedModel::from_output(
                    correction_kind(avatar_type, &output),
                    &output,
                    &trigger,
                )?;
                Ok(vec![AvatarEvent::ModelDataCorrected {
                    corrected_by: by,
                    reason: reason.trim().to_owned(),
                    previous_type,
                    previous_model: self.model.clone(),
                    avatar_type,
                    model,
                    at,
                }])
            }
        }
    }

    fn require_photos_editable(&self) -> Result<(), AvatarError> {
        self.can_take_photos()
    }
}

/// The kind an operator's correction sets: a portrait is a LoRA; a style is a pro finetune when
/// given a `finetune_id`, else a style LoRA (the shape checks then explain what is missing).
fn correction_kind(avatar_type: AvatarType, output: &TrainingOutput) -> ModelKind {
    let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    match avatar_type {
        AvatarType::Portrait => ModelKind::PortraitLora,
        AvatarType::Style if has(&output.finetune_id) => ModelKind::ProFinetune,
        AvatarType::Style => ModelKind::StyleLora,
    }
}
