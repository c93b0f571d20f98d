//! How each recorded event changes the state: facts that already happened, so nothing here
//! refuses or fails, and old events must still load.

use uuid::Uuid;

use super::state::{
    Avatar, AvatarStatus, FalJob, GenerationRecord, RequestOutcome, TrainingRun,
    UPSCALABLE_GENERATIONS,
};
use crate::events::AvatarEvent;

/// How many finished generation ids are remembered to recognise late duplicate results; older
/// ones are forgotten so a long-lived avatar's state (and snapshot) stays small.
const REMEMBERED_FINISHED_GENERATIONS: usize = 256;
/// How many started training ids are remembered to recognise a repeated request; an avatar
/// trains a handful of times at most (it stops once trained), so this is every one in practice.
const REMEMBERED_TRAININGS: usize = 64;

impl Avatar {
    /// The state after `event`; the aggregate's `apply`.
    pub(super) fn evolve(&mut self, event: AvatarEvent) {
        match event {
            AvatarEvent::AvatarCreated {
                avatar_id,
                owner,
                name,
                gender,
                avatar_type,
                ..
            } => {
                self.id = Some(avatar_id);
                self.status = AvatarStatus::Draft;
                self.owner = owner;
                self.name = Some(name);
                self.gender = Some(gender);
                self.avatar_type = Some(avatar_type);
            }
            AvatarEvent::AvatarRenamed { name, .. } => self.name = Some(name),
            AvatarEvent::PhotoUploaded { photo, .. } => self.photos.push(photo),
            AvatarEvent::PhotoRemoved { photo_id, .. } => {
                self.photos.retain(|p| p.photo_id != photo_id)
            }
            AvatarEvent::TrainingStarted {
                training_id,
                params,
                ..
            } => {
                if !training_id.is_nil() {
                    if self.started_trainings.len() == REMEMBERED_TRAININGS {
                        self.started_trainings.pop_front();
                    }
                    self.started_trainings.push_back(training_id);
                }
                self.status = AvatarStatus::Training;
                self.last_training_kind = Some(params.model_kind());
                self.training = Some(TrainingRun {
                    training_id,
                    params,
                    request_id: None,
                    cancel_url: None,
                });
            }
            AvatarEvent::TrainingSubmitted {
                request_id,
                cancel_url,
                ..
            } => {
                self.requests
                    .insert(request_id.clone(), RequestOutcome::Pending);
                if let Some(run) = self.training.as_mut() {
                    run.request_id = Some(request_id);
                    run.cancel_url = Some(cancel_url);
                }
            }
            AvatarEvent::TrainingCompleted {
                request_id, model, ..
            } => {
                self.requests.insert(request_id, RequestOutcome::Completed);
                self.status = AvatarStatus::Trained;
                self.model = Some(model);
                self.training = None;
            }
            AvatarEvent::TrainingFailed { request_id, .. } => {
                if let Some(id) = request_id {
                    self.requests.insert(id, RequestOutcome::Failed);
                }
                self.status = AvatarStatus::TrainingFailed;
                self.training = None;
            }
            AvatarEvent::TrainingPhotosDeleted { .. } => self.photos.clear(),
            AvatarEvent::GenerationRequested {
                generation_id,
                batch,
                prompt,
                origin,
                ..
            } => {
                self.pending_generations.insert(generation_id, None);
                self.generations.insert(
                    generation_id,
                    GenerationRecord {
                        prompt,
                        origin,
                        images: Vec::new(),
                    },
                );
                if let Some(item) = batch {
                    self.batch_items.insert(generation_id, item);
                }
            }
            AvatarEvent::GenerationSubmitted {
                generation_id,
                request_id,
                status_url,
                response_url,
                cancel_url,
                ..
            } => {
                if let Some(pending) = self.pending_generations.get_mut(&generation_id) {
                    *pending = Some(FalJob {
                        request_id,
                        status_url,
                        response_url,
                        cancel_url,
                    });
                }
            }
            AvatarEvent::GenerationCompleted {
                generation_id,
                images,
                ..
            } => {
                if let Some(record) = self.generations.get_mut(&generation_id) {
                    record.images = images;
                }
                self.generations_completed += 1;
                self.finish_generation(generation_id);
            }
            AvatarEvent::GenerationFailed { generation_id, .. } => {
                self.generations_failed += 1;
                self.finish_generation(generation_id);
            }
            AvatarEvent::AvatarDeleted { .. } => {
                self.status = AvatarStatus::Deleted;
                self.training = None;
                self.pending_generations.clear();
                self.generations.clear();
            }
            AvatarEvent::ModelDataCorrected {
                avatar_type, model, ..
            } => {
                self.avatar_type = Some(avatar_type);
                self.model = Some(model);
            }
        }
    }

    fn finish_generation(&mut self, generation_id: Uuid) {
        self.pending_generations.remove(&generation_id);
        if let Some(item) = self.batch_items.get(&generation_id) {
            *self.batches_finished.entry(item.batch_id).or_default() += 1;
        }
        self.finished_generations.push_back(generation_id);
        if let Some(old) = self
            .finished_generations
            .len()
            .checked_sub(UPSCALABLE_GENERATIONS + 1)
            .and_then(|i| self.finished_generations.get(i))
        {
            self.generations.remove(old);
        }
        while self.finished_generations.len() > REMEMBERED_FINISHED_GENERATIONS {
            let Some(forgotten) = self.finished_generations.pop_front() else {
                break;
            };
            // A batch is forgotten with its last remembered generation.
            if let Some(item) = self.batch_items.remove(&forgotten) {
                if !self
                    .batch_items
                    .values()
                    .any(|i| i.batch_id == item.batch_id)
                {
                    self.batches_finished.remove(&item.batch_id);
                }
            }
        }
    }
}
