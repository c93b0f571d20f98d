//! Roles that exactly one instance may hold at a time (the Telegram long poller), as PostgreSQL
//! session advisory locks: held by a connection of its own for as long as the holder lives, and
//! released by PostgreSQL itself when that process dies (its connection closes). A holder that
//! is merely paused keeps the role, so a second one never steps in beside it.

use std::time::Duration;

use sqlx::Connection;

use super::{Database, StoreError};

/// A role held until this is dropped.
pub struct SessionLock {
    // Kept only to hold the lock; closing it releases the lock.
    _conn: Option<sqlx::PgConnection>,
}

/// Waits until this instance holds the role `name`, calling `waiting` once if another instance
/// holds it first. On SQLite (one instance per file) the role is granted at once.
pub async fn hold_role(
    db: &Database,
    name: &str,
    waiting: impl FnOnce(),
) -> Result<SessionLock, StoreError> {
    let Database::Postgres(pool) = db else {
        return Ok(SessionLock { _conn: None });
    };
    // Detached from the pool: a pooled connection would go back holding the lock.
    let mut conn = pool.acquire().await?.detach();
    let key = lock_key(name);
    let mut waiting = Some(waiting);
    loop {
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut conn)
            .await?;
        if held {
            return Ok(SessionLock { _conn: Some(conn) });
        }
        if let Some(waiting) = waiting.take() {
            waiting();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Keep the connection alive and notice a broken one.
        conn.ping().await?;
    }
}

/// A stable 64-bit key for a PostgreSQL advisory lock named `name` (FNV-1a).
pub fn lock_key(name: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("aisha:{name}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}
