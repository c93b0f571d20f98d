//! The pure domain of Aisha: the `Avatar` aggregate, its commands, events, rules and presets.
//!
//! Nothing here does I/O or reads a clock: time, ids and outside results arrive inside commands,
//! and outside calls (FAL, Telegram, storage) happen in the binary's actors, whose results come back
//! as commands. Layout:
//! - [`values`] — small validated types (names, photo metadata, actors);
//! - [`presets`] — training and generation presets and the exact FAL inputs they produce;
//! - [`avatar`] — the aggregate: state, `handle` (rules) and `apply` (state changes);
//! - [`commands`], [`events`], [`errors`] — the aggregate's vocabulary, and [`model`] the
//!   typed model data a training leaves;
//! - [`account`] — the credits ledger of one Telegram user, with its own commands, events and errors.

pub mod account;
pub mod avatar;
pub mod commands;
pub mod errors;
pub mod events;
pub mod model;
pub mod presets;
pub mod values;

pub use account::{
    account_id, balance_from_events, Account, AccountAction, AccountCommand, AccountError,
    AccountEvent, GrantSource, RefundRequester, ReleaseReason, ReservationPurpose,
};
pub use avatar::{Avatar, AvatarStatus, FalJob};
pub use commands::{Action, Command, TrainingOutput};
pub use errors::AvatarError;
pub use events::AvatarEvent;
pub use model::TrainedModel;
pub use presets::{
    AspectRatio, AvatarType, GenerationPreset, ModelKind, StyleTrainer, TrainingPreset,
};
pub use values::{
    Actor, AvatarName, BatchItem, Gender, GeneratedImage, ImageFormat, Origin, PhotoMeta,
    UpscaleFactor,
};
