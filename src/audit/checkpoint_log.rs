//! Checkpoints kept outside the database: each signed checkpoint is also written, as a C2SP signed
//! note, to a folder the database's owner does not control (another disk, a mount shipped off the
//! host). Before the gateway signs, serves or exports, the ledger must still extend the latest of
//! them: an insider who rewrites the database, re-hashes the chain and deletes the checkpoint rows
//! still cannot get a rewritten history signed.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::signing::CheckpointKey;
use crate::ledger::{Hash, Ledger, LedgerError, note};

#[derive(Debug, Clone)]
pub struct CheckpointLog {
    dir: PathBuf,
    origin: String,
}

/// A checkpoint the log holds: verified under the pinned key, its tree size and root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub tree_size: u64,
    pub root: Hash,
}

impl CheckpointLog {
    pub fn new(dir: &Path, origin: &str) -> Self {
        Self {
            dir: dir.to_path_buf(),
            origin: origin.to_owned(),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The folder the log is kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `cp` as a signed note, `<tree size>.checkpoint`, durably (file and folder synced).
    pub fn append(&self, cp: &Checkpoint, key: &CheckpointKey) -> Result<PathBuf, LedgerError> {
        let text = note::sign(&self.origin, &cp.tree(), key);
        let path = self.dir.join(format!("{:020}.checkpoint", cp.tree_size));
        let tmp = self.dir.join(format!(".{:020}.checkpoint.tmp", cp.tree_size));
        let io = |e: std::io::Error| LedgerError::Unrecorded(format!("checkpoint log {}: {e}", self.dir.display()));
        crate::platform::fs::write_file(&tmp, text.as_bytes(), false).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(path)
    }

    /// The latest checkpoint in the log (the highest tree size: file names are zero-padded sizes),
    /// verified under `public`. Reads one file, whatever the log's length.
    pub fn latest(&self, public: &VerifyingKey) -> Result<Option<Kept>, LedgerError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(LedgerError::Unrecorded(format!(
                    "checkpoint log {}: {e}",
                    self.dir.display()
                )));
            }
        };
        let newest = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "checkpoint"))
            .max();
        newest.map(|p| read_note(&p, &self.origin, public)).transpose()
    }

    /// Every checkpoint in the log, each verified under `public`; one that does not verify is an
    /// error, not skipped (someone wrote it, and it was not this gateway).
    pub fn read(&self, public: &VerifyingKey) -> Result<Vec<Kept>, LedgerError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(LedgerError::Unrecorded(format!(
                    "checkpoint log {}: {e}",
                    self.dir.display()
                )));
            }
        };
        let mut kept = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "checkpoint") {
                continue;
            }
            kept.push(read_note(&path, &self.origin, public)?);
        }
        kept.sort_by_key(|k| k.tree_size);
        Ok(kept)
    }
}

/// One checkpoint note from a file (the log's, or one an auditor kept).
pub fn read_note(path: &Path, origin: &str, public: &VerifyingKey) -> Result<Kept, LedgerError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LedgerError::Unrecorded(format!("checkpoint {}: {e}", path.display())))?;
    let tree = note::verify(&text, origin, public)
        .map_err(|e| LedgerError::Unrecorded(format!("checkpoint {}: {e}", path.display())))?;
    Ok(Kept {
        tree_size: tree.tree_size,
        root: tree.root,
    })
}

/// The ledger as stored must extend `kept`: at least that many entries, and the same root at
/// that size. Otherwise history before it was changed (or entries were removed).
pub async fn extends(ledger: &dyn Ledger, kept: &Kept) -> Result<(), LedgerError> {
    let size = ledger.tree_size().await;
    let extended = size >= kept.tree_size && ledger.root(kept.tree_size).await? == kept.root;
    if extended {
        Ok(())
    } else {
        Err(LedgerError::Unrecorded(format!(
            "the ledger does not extend the checkpoint kept outside the database at tree size {} \
             (it holds {size} entries): history may have been rewritten; nothing will be signed, served or exported",
            kept.tree_size
        )))
    }
}

/// The ledger extends every checkpoint in `kept`, and the first `from_log` of them (those read
/// from the checkpoint log) are still stored in the database. `None` when both hold; otherwise
/// what broke, in words (`ledger verify` and the console's "verify now" say the same).
pub async fn check_kept(ledger: &dyn Ledger, kept: &[Kept], from_log: usize) -> Result<Option<String>, LedgerError> {
    let stored: Vec<(u64, Hash)> = ledger
        .checkpoints()
        .await?
        .iter()
        .map(|c| (c.tree_size, c.root))
        .collect();
    for (i, k) in kept.iter().enumerate() {
        if let Err(e) = extends(ledger, k).await {
            return Ok(Some(e.to_string()));
        }
        if i < from_log && !stored.contains(&(k.tree_size, k.root)) {
            return Ok(Some(format!(
                "the checkpoint at tree size {} in the checkpoint log is missing from the database \
                 (checkpoint rows were removed)",
                k.tree_size
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_is_the_largest_tree_and_every_note_must_verify() {
        let dir = tempfile::tempdir().unwrap();
        let log = CheckpointLog::new(dir.path(), "isa-gateway");
        let key = CheckpointKey::from_seed(&[4; 32]);
        assert_eq!(log.latest(&key.public()).unwrap(), None);
        for size in [2, 10, 9] {
            let cp = Checkpoint::sign(size, [size as u8; 32], vec![[1; 32]], jiff::Timestamp::now(), &key);
            log.append(&cp, &key).unwrap();
        }
        let latest = log.latest(&key.public()).unwrap().unwrap();
        assert_eq!((latest.tree_size, latest.root), (10, [10; 32]));
        assert_eq!(log.read(&key.public()).unwrap().len(), 3);
        let other = CheckpointKey::from_seed(&[5; 32]);
        assert!(
            log.latest(&other.public()).is_err(),
            "a note the pinned key did not sign is an error"
        );
    }
}
