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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn parcel(n: u128) -> Parcel {
        Parcel {
            transfer_id: uuid::Uuid::from_u128(n),
            agreement_id: "a".into(),
            message_type: "m".into(),
            bytes: format!("{{\"n\":{n}}}").into_bytes(),
            attempt: 0,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sends_made_together_all_land_whole_and_nothing_partial_is_left() {
        let root = tempfile::tempdir().unwrap();
        let t = Arc::new(DirTransport::new(root.path().join("out")));
        let sends: Vec<_> = (0..600)
            .map(|n| {
                let t = Arc::clone(&t);
                tokio::spawn(async move { t.send(&parcel(n)).await })
            })
            .collect();
        for s in sends {
            s.await.unwrap().unwrap();
        }
        let names: Vec<String> = std::fs::read_dir(root.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 600, "one file per send, no temporary left");
        for n in [0_u128, 299, 599] {
            let p = parcel(n);
            let got = std::fs::read(root.path().join("out").join(format!("{}.json", p.transfer_id))).unwrap();
            assert_eq!(got, p.bytes);
        }
    }

    #[tokio::test]
    async fn a_folder_that_cannot_be_written_fails_each_send_and_a_later_send_still_goes() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("out");
        std::fs::write(&path, b"a file where the folder should be").unwrap();
        let t = DirTransport::new(path.clone());
        let (one, two) = (parcel(1), parcel(2));
        let (a, b) = tokio::join!(t.send(&one), t.send(&two));
        for r in [a, b] {
            let e = r.unwrap_err();
            assert!(e.to_string().starts_with("drop folder: "), "{e}");
        }
        std::fs::remove_file(&path).unwrap();
        t.send(&parcel(3)).await.unwrap();
        assert!(path.join(format!("{}.json", parcel(3).transfer_id)).exists());
        assert!(!path.join(format!("{}.json", parcel(1).transfer_id)).exists());
    }
}
