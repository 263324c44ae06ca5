//! The drop-folder transport: each transfer becomes `<transfer_id>.json`, written to a hidden
//! temporary name, flushed to disk, then renamed into place, so a reader never sees half a file.
//! The rename is durable (the folder flushed) before the send returns, so "delivered" is never
//! recorded for a file a power cut could take back. Concurrent sends share the folder's flush:
//! one `fsync` of the folder covers every rename finished before it began (group commit).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

use super::{Parcel, TransportError};

#[derive(Debug)]
pub struct DirTransport {
    dir: PathBuf,
    /// Renames finished so far (each takes the next number after its rename is done).
    renamed: AtomicU64,
    /// Renames the last successful folder flush covers; held while a flush runs.
    flushed: Mutex<u64>,
}

impl DirTransport {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            renamed: AtomicU64::new(0),
            flushed: Mutex::new(0),
        }
    }

    pub async fn send(&self, parcel: &Parcel) -> Result<(), TransportError> {
        let dir = self.dir.clone();
        let name = format!("{}.json", parcel.transfer_id);
        let bytes = parcel.bytes.clone();
        blocking(move || write_atomically(&dir, &name, &bytes)).await?;
        let mine = self.renamed.fetch_add(1, Ordering::SeqCst) + 1;
        let mut flushed = self.flushed.lock().await;
        if *flushed >= mine {
            // A flush that began after this rename finished has completed.
            return Ok(());
        }
        // Every rename numbered up to here has finished: this flush makes them all durable.
        let upto = self.renamed.load(Ordering::SeqCst);
        let dir = self.dir.clone();
        blocking(move || std::fs::File::open(dir)?.sync_all()).await?;
        *flushed = upto;
        Ok(())
    }
}

async fn blocking(f: impl FnOnce() -> std::io::Result<()> + Send + 'static) -> Result<(), TransportError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| TransportError::Io(std::io::ErrorKind::Other))?
        .map_err(|e| TransportError::Io(e.kind()))
}

/// Writes the file under a temporary name, flushes it, and renames it into place; the folder's
/// flush is the caller's.
fn write_atomically(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.partial"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}
