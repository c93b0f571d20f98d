//! Starter samples: when a training completes, a few images from the starter pack for the
//! avatar's type and gender are asked for, so the user sees results before thinking of a prompt.
//!
//! The generation ids derive from the work item, so a retry after a crash asks for the same
//! generations again and the avatar refuses the duplicates: each sample is made once.

use aggregates::{Action, Actor, AvatarError, AvatarStatus, BatchItem, Command, Origin};
use chrono::Utc;
use futures::future::BoxFuture;
use uuid::Uuid;

use super::work::WorkItem;
use super::{Outcome, Services, WorkHandler};
use crate::store::StoreError;

pub const KIND: &str = "starter";
pub struct StarterHandler {
    pub services: Services,
}

impl WorkHandler for StarterHandler {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, item: &'a WorkItem) -> BoxFuture<'a, Result<Outcome, StoreError>> {
        Box::pin(self.ask(item))
    }
}

impl StarterHandler {
    async fn ask(&self, item: &WorkItem) -> Result<Outcome, StoreError> {
        let s = &self.services;
        let avatar = s.store.load(item.avatar_id).await?;
        if avatar.status != AvatarStatus::Trained {
            return Ok(Outcome::Done);
        }
        let (Some(avatar_type), Some(gender)) = (avatar.avatar_type, avatar.gender) else {
            return Ok(Outcome::Done);
        };
        let Some((pack, prompts)) = s.starter.for_avatar(avatar_type, gender) else {
            return Ok(Outcome::Done);
        };
        let size = prompts.len() as u32;
        let batch_id = crate::ids::derived(&item.key, "batch");
        for (index, prompt) in prompts.into_iter().enumerate() {
            let command = Command::new(
                Actor::System(super::by::STARTER.into()),
                Utc::now(),
                Action::Generate {
                    generation_id: crate::ids::derived(&item.key, &index.to_string()),
                    prompt,
                    preset: pack.preset,
                    num_images: 1,
                    aspect: pack.aspect,
                    batch: Some(BatchItem {
                        batch_id,
                        index: index as u32,
                        size,
                    }),
                    origin: Some(Origin::Starter {
                        pack: pack.id.clone(),
                    }),
                },
            );
            match s
                .store
                .execute(item.avatar_id, command, Uuid::new_v4())
                .await
            {
                Ok(_) | Err(StoreError::Rejected(AvatarError::DuplicateGeneration(_))) => {}
                // Deleted or changed meanwhile: no samples for it.
                Err(StoreError::Rejected(refusal)) => {
                    tracing::info!(avatar_id = %item.avatar_id, %refusal, "starter samples not asked for");
                    return Ok(Outcome::Done);
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(avatar_id = %item.avatar_id, pack = %pack.id, images = size, "starter samples asked for");
        Ok(Outcome::Done)
    }
}
