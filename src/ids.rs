//! Ids derived from what caused them, so that doing the same thing twice (a retried work item,
//! a double tap on a paid button) names the same generation and the avatar refuses the second.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A stable id for part `part` of what `key` names.
pub fn derived(key: &str, part: &str) -> Uuid {
    let digest = Sha256::digest(format!("{key}\n{part}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_per_key_and_distinct_per_part() {
        assert_eq!(derived("starter:a:1", "0"), derived("starter:a:1", "0"));
        assert_ne!(derived("starter:a:1", "0"), derived("starter:a:1", "1"));
        assert_ne!(derived("starter:a:1", "0"), derived("starter:a:2", "0"));
        assert_eq!(derived("x", "y").get_version_num(), 4);
    }
}
