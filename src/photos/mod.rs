//! Training photos: intake checks, the photo store, and the ZIP archive handed to FAL's trainers.
//!
//! - [`check`] — [`inspect`]: decodes uploaded bytes for real and says what they are, or why not;
//! - [`metadata`] — [`strip_metadata`]: a photo without EXIF/GPS, XMP, IPTC, comments and text
//!   chunks, losslessly; whatever is stored or sent to FAL has been through it;
//! - [`store`] — [`PhotoStore`]: bytes by key in a local folder or an S3-compatible bucket;
//! - [`s3`] — [`S3Connection`]: an S3-compatible server named explicitly, not by `AWS_*`;
//! - [`archive`] — [`TrainingArchive`]: an avatar's photos streamed into a temporary ZIP file.

pub mod archive;
pub mod check;
pub mod hints;
pub mod metadata;
pub mod s3;
pub mod store;

pub use archive::{verify_archive, ArchiveError, TrainingArchive, ARCHIVE_CONTENT_TYPE};
pub use check::{inspect, inspect_in_background, CheckedPhoto, PhotoError};
pub use metadata::{strip as strip_metadata, MetadataError};
pub use s3::S3Connection;
pub use store::{avatar_prefix, photo_key, ByteStream, PhotoStore, StorageError, StorageLocation};
