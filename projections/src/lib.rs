//! Read models built from Avatar events: each [`Projection`] declares its tables and how one
//! event changes them. The binary's feed runner applies events in feed order and advances the
//! projection's checkpoint in the same transaction, so an event is never applied twice or skipped.
//!
//! Projections write through [`Tx`], the `db` crate's small SQL surface over PostgreSQL and
//! SQLite: statements are written once with `$1`-style placeholders and bound with
//! [`db::Arg`]s.
//!
//! The read models, each with the query functions its readers use:
//! - [`gallery`] — one row per avatar: the bot's paginated gallery and the avatar card;
//! - [`jobs`] — training jobs by FAL request id, with times, outcome and durations;
//! - [`generations`] — generation requests and their images, by avatar and by user;
//! - [`analytics`] — daily counts for analysts and the analytics API;
//! - [`money`] — the credits ledger (Account events, delivered as [`LedgerEvent`]s): movements,
//!   balances, open reservations and the day-keyed money views.

pub mod analytics;
pub mod gallery;
pub mod generations;
pub mod jobs;
mod labels;
pub mod money;
mod view;

use std::collections::HashMap;
use std::sync::Arc;

use aggregates::{AccountEvent, AvatarEvent};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

use db::Tx;

/// One event as the feed delivers it: in global order, with its stream coordinates.
#[derive(Debug, Clone)]
pub struct FeedEvent {
    /// The feed cursor of this event (orders the whole feed).
    pub cursor: Cursor,
    pub avatar_id: Uuid,
    /// The event's number within its avatar's stream, from 1.
    pub sequence: u64,
    pub event: AvatarEvent,
    pub metadata: HashMap<String, String>,
    /// When the store wrote it.
    pub recorded_at: DateTime<Utc>,
}

/// One Account event as the ledger feed delivers it: in the same global order as [`FeedEvent`]s
/// (the same cursor), with the account's Telegram user (the only place the event names it).
#[derive(Debug, Clone)]
pub struct LedgerEvent {
    pub cursor: Cursor,
    pub telegram_id: i64,
    /// The event's number within its account's stream, from 1.
    pub sequence: u64,
    pub event: AccountEvent,
    pub metadata: HashMap<String, String>,
    pub recorded_at: DateTime<Utc>,
}

/// A place in the feed. PostgreSQL orders the feed by (writing transaction, position) so that a
/// position which commits late is never skipped; SQLite commits in position order and uses
/// `txid = 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor {
    pub txid: i64,
    pub position: i64,
}

impl Cursor {
    /// Before the first event.
    pub const START: Self = Self {
        txid: 0,
        position: 0,
    };
}

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
}

/// A read model: its tables and how to apply one event to them. `E` is the feed it follows:
/// Avatar events ([`FeedEvent`], the default) or the ledger's ([`LedgerEvent`]).
pub trait Projection<E = FeedEvent>: Send + Sync
where
    E: Send + Sync,
{
    /// Stable name; also the checkpoint's key.
    fn name(&self) -> &'static str;

    /// Tables this projection owns, emptied before a rebuild (children before parents).
    fn tables(&self) -> &'static [&'static str];

    /// Applies a batch of events, in feed order, inside the runner's transaction (one event
    /// is a batch of one): a projection may fold a batch into fewer writes.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        events: &'a [E],
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;
}

/// Every read model the service maintains, in the order a full rebuild runs them.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(gallery::Gallery),
        Arc::new(jobs::TrainingJobs),
        Arc::new(generations::Generations),
        Arc::new(analytics::Analytics),
    ]
}

/// Every read model of the credits ledger, in the order a full rebuild runs them.
pub fn ledger() -> Vec<Arc<dyn Projection<LedgerEvent>>> {
    vec![Arc::new(money::Money)]
}

/// The names of [`all`] projections.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|p| p.name()).collect()
}

/// The projection called `name`, if there is one.
pub fn by_name(name: &str) -> Option<Arc<dyn Projection>> {
    all().into_iter().find(|p| p.name() == name)
}
