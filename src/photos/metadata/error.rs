//! Why a photo's metadata could not be removed, kept apart so every format's walk can report
//! damage in the same words.

/// Why a photo's metadata could not be removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("not a JPEG, PNG or WebP file")]
    NotAPhoto,
    #[error("the {format} structure is damaged: {why}")]
    Damaged {
        format: &'static str,
        why: &'static str,
    },
}
