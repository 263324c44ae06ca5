//! The witness: run by a partner or an auditor organisation, not by the gateway's operator. It
//! keeps the last checkpoint it cosigned, and cosigns a new one only after checking that the
//! gateway's key signed it and that it extends the last one (an RFC 9162 consistency proof). A
//! gateway whose history was rewritten, even one re-signed with the real key, cannot get a
//! cosignature for it: the witness sees two roots at one size, or a proof that fails, and refuses.
//!
//! The state folder:
//!
//! ```text
//! witness.key                   the witness's Ed25519 seed, 64 hex (0600); or ISA_GATEWAY_WITNESS_KEY(_FILE)
//! witness.vkey                  its verifier key, <name>+<key id>+<base64>, to give to gateways and auditors
//! checkpoints/<id>.checkpoint   per gateway (origin and checkpoint key), the last checkpoint cosigned, as a
//!                               signed note carrying this witness's cosignature (usable as `ledger verify --checkpoint`)
//! .lock                         held (exclusively) by a run from reading what was cosigned to keeping the new one
//! ```
//!
//! Two runs at once (a timer and a hand-run) would both read the same last checkpoint: the second
//! finds the lock held and stops, doing nothing.

mod client;

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

pub use self::client::{Client, ClientSettings};
use crate::ledger::cosignature::{Cosignature, Witness};
use crate::ledger::signing::CheckpointKey;
use crate::ledger::{Hash, merkle, note};

/// A witness's folder: its key, its name, and what it last cosigned.
#[derive(Debug)]
pub struct State {
    dir: PathBuf,
    key: CheckpointKey,
    witness: Witness,
}

/// Why nothing was cosigned. Either way the state is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The gateway showed something a witness must not sign: a fork, a rollback, a bad signature.
    #[error("REFUSED: {0}")]
    Refused(String),
    /// Something else stopped it (the state folder, the network, the gateway's answer).
    #[error("{0}")]
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> WitnessError {
    WitnessError::Failed(e.to_string())
}

/// What was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigned {
    pub tree_size: u64,
    pub root: Hash,
    /// The tree size cosigned before (and proved extended), or `None` on a first run.
    pub previous: Option<u64>,
}

impl State {
    /// Makes the state folder's key and verifier key for the witness `name`. Refuses to replace a key.
    pub fn init(dir: &Path, name: &str) -> Result<Witness, WitnessError> {
        if !crate::ledger::cosignature::is_key_name(name) {
            return Err(failed(
                "the witness's name must be non-empty, without spaces or '+' (e.g. audit.partner.example/witness)",
            ));
        }
        let key = crate::app::keystore::new_witness_key(dir).map_err(failed)?;
        let witness = Witness::new(name, key.public()).ok_or_else(|| failed("the new key is unusable"))?;
        crate::platform::fs::write_file(
            &dir.join("witness.vkey"),
            format!("{}\n", witness.vkey()).as_bytes(),
            false,
        )
        .map_err(|e| failed(format!("{}: {e}", dir.join("witness.vkey").display())))?;
        Ok(witness)
    }

    /// Opens the state folder: the key, and the name from `witness.vkey` (which must be that key's).
    pub fn open(dir: &Path) -> Result<Self, WitnessError> {
        let key = crate::app::keystore::witness_key(dir).map_err(failed)?;
        let path = dir.join("witness.vkey");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| failed(format!("{}: {e} (run `isa-gateway witness init`)", path.display())))?;
        let witness = Witness::parse(&text).map_err(|e| failed(format!("{}: {e}", path.display())))?;
        if witness.public != key.public() {
            return Err(failed(format!(
                "{} is not the verifier key of the witness's signing key",
                path.display()
            )));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
            witness,
        })
    }

    pub fn witness(&self) -> &Witness {
        &self.witness
    }

    /// Where the last checkpoint cosigned for the gateway (`origin`, signing with `gateway`) is
    /// kept: one file per origin and key, so two gateways that share an origin line never share a
    /// state.
    pub fn checkpoint_path(&self, origin: &str, gateway: &VerifyingKey) -> PathBuf {
        let mut h = Sha256::new();
        h.update(origin.as_bytes());
        h.update(b"\n");
        h.update(gateway.as_bytes());
        let id = h.finalize();
        self.dir
            .join("checkpoints")
            .join(format!("{}.checkpoint", hex::encode(&id[..8])))
    }

    /// Where earlier versions kept it, by origin alone: read (under the gateway's key) when the
    /// state has nothing under the new name, so an upgrade does not start over on trust.
    fn legacy_checkpoint_path(&self, origin: &str) -> PathBuf {
        let id = Sha256::digest(origin.as_bytes());
        self.dir
            .join("checkpoints")
            .join(format!("{}.checkpoint", hex::encode(&id[..8])))
    }

    /// The last checkpoint cosigned for `origin` under `gateway`, verified under that key.
    pub fn last(&self, origin: &str, gateway: &VerifyingKey) -> Result<Option<note::Tree>, WitnessError> {
        let path = self.checkpoint_path(origin, gateway);
        let read = |path: &Path| match std::fs::read_to_string(path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(failed(format!("{}: {e}", path.display()))),
        };
        if let Some(text) = read(&path)? {
            return note::verify(&text, origin, gateway)
                .map(Some)
                .map_err(|e| failed(format!("{}: {e}", path.display())));
        }
        let legacy = self.legacy_checkpoint_path(origin);
        // A note there under another key is another gateway's that shares the origin line.
        Ok(read(&legacy)?.and_then(|text| note::verify(&text, origin, gateway).ok()))
    }

    /// The state folder's lock, held exclusively until dropped; fails at once if another run holds it.
    fn lock(&self) -> Result<std::fs::File, WitnessError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| failed(format!("{}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(failed(
                "another `witness cosign` run holds this state folder's lock; nothing done (run it again when that one ends)",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(failed(format!("{}: {e}", path.display()))),
        }
    }

    /// Replaces the kept checkpoint for `origin` under `gateway` atomically: written beside it,
    /// synced, renamed over it, the folder synced. A crash leaves the old state or the new, never
    /// half of one.
    fn keep(&self, origin: &str, gateway: &VerifyingKey, text: &str) -> Result<(), WitnessError> {
        let path = self.checkpoint_path(origin, gateway);
        let dir = path.parent().unwrap_or(&self.dir).to_path_buf();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp"));
        let io = |e: std::io::Error| failed(format!("{}: {e}", dir.display()));
        crate::platform::fs::write_file(&tmp, text.as_bytes(), false).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(io)
    }

    /// Decides whether the gateway's checkpoint `note` (for `origin`, under `gateway`) may be
    /// cosigned, fetching a consistency proof from `client` when it is larger than the last one;
    /// if so cosigns it at `time`, keeps it, and returns the cosignature. Refuses a note the key
    /// did not sign, a smaller tree, another root at the same size, or a proof that fails.
    pub async fn check_and_cosign(
        &self,
        client: &Client,
        origin: &str,
        gateway: &VerifyingKey,
        note_text: &str,
        time: u64,
    ) -> Result<(Cosigned, Cosignature), WitnessError> {
        let tree = note::verify(note_text, origin, gateway).map_err(|e| {
            WitnessError::Refused(format!(
                "the gateway's checkpoint does not verify under the pinned key: {e}"
            ))
        })?;
        let (tree_size, root) = (tree.tree_size, tree.root);
        let _lock = self.lock()?;
        let last = self.last(origin, gateway)?;
        match last {
            None => {}
            Some(l) if tree_size < l.tree_size => {
                return Err(WitnessError::Refused(format!(
                    "rollback: the gateway's latest checkpoint has {tree_size} entries, fewer than the {} this \
                     witness already cosigned",
                    l.tree_size
                )));
            }
            Some(l) if tree_size == l.tree_size && root != l.root => {
                return Err(WitnessError::Refused(format!(
                    "fork: the gateway shows a different root at tree size {tree_size} than the one this witness \
                     cosigned (root {} now, {} then): history was rewritten",
                    hex::encode(root),
                    hex::encode(l.root)
                )));
            }
            Some(l) if tree_size == l.tree_size && tree.agreements != l.agreements => {
                return Err(WitnessError::Refused(format!(
                    "equivocation: the gateway's checkpoint of {tree_size} entries now states other per-agreement \
                     heads than the one this witness cosigned: what audit bundles prove complete was changed"
                )));
            }
            Some(l) if tree_size == l.tree_size => {}
            Some(l) => {
                let proof = client.consistency(l.tree_size, tree_size).await?;
                merkle::verify_consistency(l.tree_size, tree_size, &l.root, &root, &proof).map_err(|_| {
                    WitnessError::Refused(format!(
                        "fork: the checkpoint of {tree_size} entries does not extend the one of {} entries this \
                         witness cosigned (the consistency proof fails): history was rewritten",
                        l.tree_size
                    ))
                })?;
            }
        }
        // The whole body the gateway signed, its extension line included.
        let body = note::body(origin, &tree);
        let cosignature = Cosignature::sign(&self.witness.name, &self.key, &body, time);
        // Kept before it is given out: a witness never signs what it would not remember.
        let mut kept = note_text.trim_end_matches('\n').to_owned();
        kept.push('\n');
        kept.push_str(&cosignature.line());
        kept.push('\n');
        self.keep(origin, gateway, &kept)?;
        Ok((
            Cosigned {
                tree_size,
                root,
                previous: last.map(|l| l.tree_size),
            },
            cosignature,
        ))
    }
}

/// One run of `isa-gateway witness cosign`: fetch the gateway's latest checkpoint, witness it
/// (see [`State::check_and_cosign`]), and hand the cosignature to the gateway.
pub async fn cosign(
    state: &State,
    client: &Client,
    origin: &str,
    gateway: &VerifyingKey,
    time: u64,
) -> Result<Cosigned, WitnessError> {
    let note_text = client.latest_note().await?;
    let (cosigned, cosignature) = state
        .check_and_cosign(client, origin, gateway, &note_text, time)
        .await?;
    client.submit(cosigned.tree_size, &cosigned.root, &cosignature).await?;
    Ok(cosigned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_per_origin_and_key_and_an_upgrade_keeps_what_was_cosigned() {
        let dir = tempfile::tempdir().unwrap();
        State::init(dir.path(), "w.example/w").unwrap();
        let state = State::open(dir.path()).unwrap();
        let (a, b) = (CheckpointKey::from_seed(&[1; 32]), CheckpointKey::from_seed(&[2; 32]));
        assert_ne!(
            state.checkpoint_path("isa-gateway", &a.public()),
            state.checkpoint_path("isa-gateway", &b.public()),
            "two gateways sharing an origin line keep apart"
        );
        // What an earlier version kept, by origin alone, is read under the gateway's key only.
        let tree = note::Tree {
            tree_size: 7,
            root: [7; 32],
            agreements: None,
        };
        let legacy = state.legacy_checkpoint_path("isa-gateway");
        std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
        std::fs::write(&legacy, note::sign("isa-gateway", &tree, &a)).unwrap();
        assert_eq!(state.last("isa-gateway", &a.public()).unwrap(), Some(tree));
        assert_eq!(state.last("isa-gateway", &b.public()).unwrap(), None);
    }
}
