//! The update being handled, as the handlers see it without passing it down: ids of what the
//! handling creates derive from the update, so handling it again after an interruption names
//! the same avatar, generation or reservation, and the aggregates refuse the second one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use uuid::Uuid;

struct Scope {
    update_id: i64,
    attempt: i32,
    /// How many ids of each kind this handling has asked for, so each gets its own.
    asked: Mutex<HashMap<&'static str, u32>>,
}

tokio::task_local! {
    static CURRENT: Scope;
}

/// Runs `handling` as the handling of update `update_id`, attempt `attempt` (1 the first time).
pub async fn within<F: Future>(update_id: i64, attempt: i32, handling: F) -> F::Output {
    let scope = Scope {
        update_id,
        attempt,
        asked: Mutex::new(HashMap::new()),
    };
    CURRENT.scope(scope, handling).await
}

/// An id for the next thing of `kind` this update creates: the same on every handling of the
/// update (handlers ask in the same order each time). Outside an update's handling (tests
/// calling handlers directly, the demo), a fresh random id.
pub fn derived_id(kind: &'static str) -> Uuid {
    CURRENT
        .try_with(|scope| {
            let n = {
                let mut asked = scope.asked.lock().unwrap_or_else(|p| p.into_inner());
                let n = asked.entry(kind).or_insert(0);
                *n += 1;
                *n
            };
            crate::ids::derived(
                &format!("telegram-update:{}", scope.update_id),
                &format!("{kind}:{n}"),
            )
        })
        .unwrap_or_else(|_| Uuid::new_v4())
}

/// The update being handled; `None` outside an update's handling.
pub fn current_update() -> Option<i64> {
    CURRENT.try_with(|scope| scope.update_id).ok()
}

/// Whether this handling runs again after an interrupted one: then a refusal such as "already
/// exists" means the earlier run did the work, and the user gets its reply rather than an error.
pub fn is_retry() -> bool {
    CURRENT.try_with(|scope| scope.attempt > 1).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_repeat_across_handlings_of_one_update_and_differ_within_one() {
        let first = within(7, 1, async { (derived_id("avatar"), derived_id("avatar")) }).await;
        let again = within(7, 2, async { (derived_id("avatar"), derived_id("avatar")) }).await;
        assert_eq!(first, again);
        assert_ne!(first.0, first.1);
        let other = within(8, 1, async { derived_id("avatar") }).await;
        assert_ne!(other, first.0);
        assert!(within(7, 2, async { is_retry() }).await);
        assert!(!within(7, 1, async { is_retry() }).await);
        assert!(!is_retry());
        assert_ne!(derived_id("avatar"), derived_id("avatar"));
    }
}
