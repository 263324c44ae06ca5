//! The drop-folder transport: each transfer becomes `<transfer_id>.json`, written to a hidden
//! temporary name, flushed to disk, then renamed into place, so a reader never sees half a file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::{Parcel, TransportError};

#[derive(Debug)]
pub struct DirTransport {
    dir: PathBuf,
}

impl DirTransport {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub async fn send(&self, parcel: &Parcel) -> Result<(), TransportError> {
        let dir = self.dir.clone();
        let name = format!("{}.json", parcel.transfer_id);
        let bytes = parcel.bytes.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &bytes))
            .await
            .map_err(|_| TransportError::Io(std::io::ErrorKind::Other))?
            .map_err(|e| TransportError::Io(e.kind()))
    }
}

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
    std::fs::rename(&tmp, dir.join(name))?;
    // Make the rename itself durable.
    std::fs::File::open(dir)?.sync_all()
}
