//! How accounts and promo codes are named: the aggregate id that carries the Telegram user, and
//! the one spelling of a code under which it is used once.

use super::errors::AccountError;
use crate::values::Actor;

const ACCOUNT_ID_PREFIX: &str = "account-";

/// The aggregate id of a Telegram user's account: the only place the Telegram id is recorded.
pub fn account_id(telegram_id: i64) -> String {
    format!("{ACCOUNT_ID_PREFIX}{telegram_id}")
}

/// The Telegram user an account id belongs to, if it is one.
pub fn telegram_id_of(aggregate_id: &str) -> Option<i64> {
    aggregate_id.strip_prefix(ACCOUNT_ID_PREFIX)?.parse().ok()
}

/// Checks that a user addresses their own account. The aggregate cannot do this itself because
/// its events never name the user (cqrs-es does not hand the aggregate id to `handle`), so the
/// binary calls this before executing a user's command. Systems and operators may address any
/// account.
pub fn ensure_own_account(aggregate_id: &str, by: &Actor) -> Result<(), AccountError> {
    match by {
        Actor::User(user) if telegram_id_of(aggregate_id) != Some(*user) => {
            Err(AccountError::NotOwner)
        }
        _ => Ok(()),
    }
}

/// Promo codes compare without surrounding spaces and without case, so `promo10` and ` PROMO10`
/// are one code and one use. The binary should look codes up in its configuration the same way.
pub fn normalize_promo_code(code: &str) -> String {
    code.trim().to_uppercase()
}
