//! The labels the read models write where an event names no preset, or where what it refers to
//! cannot be found.

/// The preset label of a generation asked for without a preset.
pub const DEFAULT_PRESET: &str = "default";
/// The preset label of an upscale: it has no preset, and counting it as `default` would make the
/// type's defaults look more used than they are.
pub const UPSCALE_PRESET: &str = "upscale";
/// The label used when an event's avatar type or preset cannot be found (never expected).
pub const UNKNOWN: &str = "unknown";
