//! The labels the generations tables store for a status and for where a request came from.

/// Generation statuses as stored.
pub mod status {
    pub const REQUESTED: &str = "requested";
    pub const COMPLETED: &str = "completed";
    pub const FAILED: &str = "failed";
}

/// Origin kinds as stored (`origin_kind`); NULL is a prompt the user typed.
pub mod origin {
    pub const PACK: &str = "pack";
    pub const STARTER: &str = "starter";
    pub const UPSCALE: &str = "upscale";
}
