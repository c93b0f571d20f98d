//! Aisha: a Telegram bot that trains personal AI avatars on FAL.ai and generates images of them.
//!
//! The domain lives in the `aggregates` crate (pure) and read models in `projections`; this crate
//! is everything at the edges:
//! - [`actors`] — the actix actors that train, generate, poll, notify and clean up;
//! - [`bot`] — the Telegram bot: conversations, photo intake, gallery and notifications;
//! - [`app`] — the whole service assembled from its configuration;
//! - [`config`] — settings from the environment and `.env`;
//! - [`demo`] — `aisha demo` (feature `demo`, on by default): the whole bot story offline on the
//!   fake Telegram Bot API (the `fake-telegram` crate), printed as the user reads it;
//! - [`erasure`] — erasing a person: avatars deleted, data keys destroyed, rows removed;
//! - [`cli`] — the `aisha` command line (`serve`, `migrate`, `history`, …);
//! - [`http`] — the HTTP server: FAL webhook, health, metrics, the audit and analytics API;
//! - [`serve`] — `aisha serve`: everything wired together;
//! - [`store`] — the event store (SQLite or PostgreSQL) and command execution;
//! - [`fal`] — the FAL client, webhook verification and the FAL simulator (the `fal` crate,
//!   re-exported);
//! - [`photos`] — photo intake checks, the photo store (folder or S3) and the training archive;
//! - [`audit`] — replaying avatars for auditors and checking the read models against them;
//! - [`telemetry`] — the Prometheus recorder and the metric names.

pub mod actors;
pub mod app;
pub mod audit;
pub mod bot;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod erasure;
pub use fal;
pub mod http;
pub mod ids;
pub mod packs;
pub mod photos;
pub mod results;
pub mod secret;
pub mod serve;
pub mod store;
pub mod telemetry;
