//! The local folder backend's file work: streamed reads, atomic fsynced writes and copies, and
//! removing a tree.

use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use uuid::Uuid;

use super::error::StorageError;

/// Read size for streamed reads of local files.
const CHUNK: usize = 64 * 1024;

/// A file as a stream of chunks of at most [`CHUNK`] bytes.
pub(crate) fn file_chunks(file: tokio::fs::File) -> BoxStream<'static, std::io::Result<Bytes>> {
    futures::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; CHUNK];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    })
    .boxed()
}

/// Runs blocking file work off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(
    key: &str,
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Io {
            key: key.to_owned(),
            source: std::io::Error::other(format!("storage task failed: {e}")),
        })?
}

/// Write to a temporary file beside the target, fsync it, rename it over the target, then fsync
/// the folder: after a crash the key holds the old bytes or the new ones, never a torn file.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("a key always has a parent folder"))?;
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object");
    let temp = dir.join(format!(".{name}.{}.tmp", Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = std::fs::File::create_new(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

/// [`write_atomically`] for the contents of the file at `source`, copied without reading it
/// into memory.
pub(super) fn copy_atomically(source: &Path, path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("a key always has a parent folder"))?;
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object");
    let temp = dir.join(format!(".{name}.{}.tmp", Uuid::new_v4().simple()));
    let written = (|| {
        let mut from = std::fs::File::open(source)?;
        let mut file = std::fs::File::create_new(&temp)?;
        std::io::copy(&mut from, &mut file)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

#[cfg(unix)]
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
pub(super) fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    // Directories cannot be opened for syncing here; the rename is still atomic.
    Ok(())
}

/// Removes a folder and everything in it, counting the stored objects (not our temporary files).
pub(super) fn remove_tree(dir: &Path) -> std::io::Result<usize> {
    fn count_objects(dir: &Path) -> std::io::Result<usize> {
        let mut count = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                count += count_objects(&entry.path())?;
            } else if !entry.file_name().to_string_lossy().starts_with('.') {
                count += 1;
            }
        }
        Ok(count)
    }
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        // A plain object of that name is not "under" the prefix; nothing is there to remove.
        Ok(_) => return Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    }
    let count = count_objects(dir)?;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(count),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(count),
        Err(e) => Err(e),
    }
}
