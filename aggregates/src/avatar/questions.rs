//! What callers may ask an avatar before sending a command: the same rules `handle` applies,
//! so a screen refuses with the sentence the command would have been refused with.

use super::{Avatar, AvatarStatus, MIN_PHOTOS};
use crate::errors::AvatarError;

impl Avatar {
    /// Whether photos may be added or removed now (before training, or after it failed).
    pub fn can_take_photos(&self) -> Result<(), AvatarError> {
        if self.can_edit_photos() {
            Ok(())
        } else {
            Err(AvatarError::PhotosLocked)
        }
    }

    /// Whether a training may start now: not under way or done already, and enough photos.
    pub fn can_start_training(&self) -> Result<(), AvatarError> {
        match self.status {
            AvatarStatus::Training => return Err(AvatarError::TrainingAlreadyStarted),
            AvatarStatus::Trained => return Err(AvatarError::AlreadyTrained),
            _ => {}
        }
        if self.photos.len() < MIN_PHOTOS {
            return Err(AvatarError::NotEnoughPhotos {
                have: self.photos.len(),
                min: MIN_PHOTOS,
            });
        }
        Ok(())
    }

    /// Whether images may be asked of this avatar: only once it is trained.
    pub fn can_generate(&self) -> Result<(), AvatarError> {
        if self.status == AvatarStatus::Trained {
            Ok(())
        } else {
            Err(AvatarError::NotTrained)
        }
    }
}
