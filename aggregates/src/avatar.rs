//! The Avatar aggregate: its state, the rules that decide a command, and how events change it.
//!
//! Parts: `state` (what is kept, also the snapshot), `decide` with `training` and `generation`
//! (the rules of `handle`), `apply` (state changes), and `questions` (rules asked ahead).

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;

use crate::commands::Command;
use crate::errors::AvatarError;
use crate::events::AvatarEvent;

mod apply;
mod decide;
mod generation;
mod questions;
mod state;
mod training;

pub use generation::generation_arguments;
pub use state::{
    Avatar, AvatarStatus, FalJob, GenerationRecord, RequestOutcome, TrainingRun, MAX_PHOTOS,
    MIN_PHOTOS, MIN_PHOTO_SIDE, UPSCALABLE_GENERATIONS,
};

impl Aggregate for Avatar {
    const TYPE: &'static str = "Avatar";
    type Command = Command;
    type Event = AvatarEvent;
    type Error = AvatarError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.evolve(event);
    }
}
