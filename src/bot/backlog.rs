//! Each chat's backlog of updates, bounded, so one flooding chat never delays another.
//!
//! teloxide hands updates to one worker per chat through a queue, and its distribution loop
//! waits while a chat's queue is full. Our handlers wait for the chat's send budget (about a
//! message a second), so a user who forwards a hundred messages used to fill that queue and
//! stall every other chat. The queues are now large enough never to fill, and updates that
//! arrive while a chat already has [`MAX_WAITING`] waiting are marked excess when they are
//! handed out: they are dropped unhandled, and the user is told once to slow down.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use teloxide::types::{ChatId, Update};

/// Updates one chat may have waiting before more are dropped.
pub const MAX_WAITING: usize = 20;
/// The per-chat queue teloxide keeps; above [`MAX_WAITING`] only excess updates sit there, and
/// they are dropped as fast as they come.
pub const WORKER_QUEUE: usize = 1024;
/// At most one "slow down" per chat in this long.
const SLOW_DOWN_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Backlog {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    waiting: HashMap<ChatId, usize>,
    /// Excess update ids, and whether the worker should tell the user to slow down.
    excess: HashMap<u32, bool>,
    told: HashMap<ChatId, Instant>,
}

/// The process's backlog: teloxide's distribution function is a plain `fn`, so it can reach
/// state only through a static. One bot runs per process.
pub fn global() -> &'static Backlog {
    static BACKLOG: OnceLock<Backlog> = OnceLock::new();
    BACKLOG.get_or_init(Backlog::default)
}

/// teloxide's distribution function: one queue per chat, counting what each chat has waiting.
pub fn distribute(update: &Update) -> Option<ChatId> {
    let chat = update.chat().map(|c| c.id)?;
    global().arrive(chat, update);
    Some(chat)
}

/// What the worker does with an update it is about to handle.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    Handle,
    /// Excess: skip it; `tell` when the user should now be told to slow down.
    Skip {
        tell: bool,
    },
}

/// What to do with an update as it is handed out.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Handle,
    /// Excess; `true` when the user should now be told to slow down.
    Drop {
        tell: bool,
    },
}

impl Backlog {
    /// Called as the dispatcher hands `update` to its chat's queue.
    pub fn arrive(&self, chat: ChatId, update: &Update) -> Admission {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let waiting = inner.waiting.entry(chat).or_default();
        if *waiting >= MAX_WAITING {
            let now = Instant::now();
            let tell = inner
                .told
                .get(&chat)
                .is_none_or(|at| now.duration_since(*at) >= SLOW_DOWN_EVERY);
            if tell {
                inner.told.insert(chat, now);
            }
            inner.excess.insert(update.id.0, tell);
            metrics::counter!("telegram_updates_dropped_total").increment(1);
            return Admission::Drop { tell };
        }
        *waiting += 1;
        Admission::Handle
    }

    /// Called as the chat's worker starts on `update`.
    pub fn start(&self, chat: ChatId, update: &Update) -> Start {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tell) = inner.excess.remove(&update.id.0) {
            return Start::Skip { tell };
        }
        if let Some(waiting) = inner.waiting.get_mut(&chat) {
            *waiting = waiting.saturating_sub(1);
            if *waiting == 0 {
                inner.waiting.remove(&chat);
            }
        }
        // Forget chats that have been quiet, so the map stays small.
        if inner.told.len() > 10_000 {
            let now = Instant::now();
            inner
                .told
                .retain(|_, at| now.duration_since(*at) < SLOW_DOWN_EVERY);
        }
        Start::Handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: u32) -> Update {
        serde_json::from_value(serde_json::json!({
            "update_id": id,
            "message": {"message_id": id, "date": 0, "chat": {"id": 1, "type": "private", "first_name": "A"},
                "from": {"id": 1, "is_bot": false, "first_name": "A"}, "text": "hi"}
        }))
        .unwrap()
    }

    #[test]
    fn a_chat_over_its_backlog_loses_only_its_excess_and_is_told_once() {
        let backlog = Backlog::default();
        let chat = ChatId(1);
        let other = ChatId(2);
        let updates: Vec<Update> = (0..MAX_WAITING as u32 + 5).map(update).collect();
        for u in &updates[..MAX_WAITING] {
            assert_eq!(backlog.arrive(chat, u), Admission::Handle);
        }
        assert_eq!(
            backlog.arrive(chat, &updates[MAX_WAITING]),
            Admission::Drop { tell: true }
        );
        assert_eq!(
            backlog.arrive(chat, &updates[MAX_WAITING + 1]),
            Admission::Drop { tell: false }
        );
        // Another chat is not affected.
        assert_eq!(backlog.arrive(other, &update(999)), Admission::Handle);
        // The worker handles the admitted ones and skips the excess.
        assert_eq!(backlog.start(chat, &updates[0]), Start::Handle);
        assert_eq!(
            backlog.start(chat, &updates[MAX_WAITING]),
            Start::Skip { tell: true }
        );
        assert_eq!(
            backlog.start(chat, &updates[MAX_WAITING + 1]),
            Start::Skip { tell: false }
        );
        // With room again, a new update is handled.
        assert_eq!(
            backlog.arrive(chat, &updates[MAX_WAITING + 2]),
            Admission::Handle
        );
    }
}
