//! The audit bundle: what an auditor at another organisation takes away and verifies offline,
//! without the gateway's database.
//!
//! ```text
//! entries.jsonl     the agreement's ledger entries, one per line: {"seq","prev_hash","hash","event":{…}}
//! proofs.jsonl      for each entry, its audit path in the checkpoint's tree: {"seq","tree_size","path":[hex…]}
//! checkpoint.json   the signed checkpoint every proof refers to
//! checkpoint.note   the same checkpoint as a C2SP signed note, with every witness cosignature kept for it
//! agreement.json    the proof that the entries are all of the agreement's in their range (see [`super::completeness`])
//! public_key.txt    the checkpoint key, `ed25519:<hex>`; pin it from a channel you trust
//! ```
//!
//! Verification recomputes each entry's hash from its contents (so any changed byte shows),
//! its Merkle leaf, its inclusion in the signed tree, and the agreement's signed head from the
//! entries (so a left-out entry shows).

use std::io::{BufRead, Write};
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::completeness::{AgreementProof, Complete};
use crate::ledger::checkpoint::{Checkpoint, CheckpointJson, parse_public_key, public_key_text};
use crate::ledger::cosignature::{self, Witness};
use crate::ledger::{Entry, Event, Hash, Ledger, LedgerError, merkle, note};

#[derive(Debug, Serialize, Deserialize)]
pub struct BundleEntry {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    pub event: Event,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BundleProof {
    pub seq: i64,
    pub tree_size: u64,
    pub path: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{0}")]
    Ledger(#[from] LedgerError),
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path, e: impl std::fmt::Display) -> BundleError {
    BundleError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// A bundle's files are private (0600) from creation: they describe every disclosure under an
/// agreement.
fn write_lines<T: Serialize>(path: &Path, items: &[T]) -> Result<(), BundleError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(path, e))?;
    let mut f = std::io::BufWriter::new(file);
    for item in items {
        serde_json::to_writer(&mut f, item).map_err(|e| io(path, e))?;
        f.write_all(b"\n").map_err(|e| io(path, e))?;
    }
    f.flush().map_err(|e| io(path, e))
}

/// Writes the bundle for `entries` and their `proof` of completeness (from
/// [`super::completeness::prove`]) against `checkpoint`, which must cover them; `note` is that
/// checkpoint as a signed note with its cosignatures.
pub async fn export(
    ledger: &dyn Ledger,
    entries: &[Entry],
    proof: &AgreementProof,
    checkpoint: &Checkpoint,
    public: &VerifyingKey,
    note: &str,
    out: &Path,
) -> Result<(), BundleError> {
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let mut bundle_entries = Vec::with_capacity(entries.len());
    let mut proofs = Vec::with_capacity(entries.len());
    for e in entries {
        let path = ledger.inclusion_proof(e.seq, checkpoint.tree_size).await?;
        bundle_entries.push(BundleEntry {
            seq: e.seq,
            prev_hash: hex::encode(e.prev_hash),
            hash: hex::encode(e.hash),
            event: e.event.clone(),
        });
        proofs.push(BundleProof {
            seq: e.seq,
            tree_size: checkpoint.tree_size,
            path: path.iter().map(hex::encode).collect(),
        });
    }
    write_lines(&out.join("entries.jsonl"), &bundle_entries)?;
    write_lines(&out.join("proofs.jsonl"), &proofs)?;
    let cp = serde_json::to_vec_pretty(&checkpoint.to_json()).map_err(|e| io(out, e))?;
    crate::platform::fs::write_file(&out.join("checkpoint.json"), &cp, true).map_err(|e| io(out, e))?;
    crate::platform::fs::write_file(&out.join("checkpoint.note"), note.as_bytes(), true).map_err(|e| io(out, e))?;
    let agreement = serde_json::to_vec_pretty(proof).map_err(|e| io(out, e))?;
    crate::platform::fs::write_file(&out.join("agreement.json"), &agreement, true).map_err(|e| io(out, e))?;
    let key = format!("{}\n", public_key_text(public));
    crate::platform::fs::write_file(&out.join("public_key.txt"), key.as_bytes(), true).map_err(|e| io(out, e))?;
    Ok(())
}

/// The result of verifying a bundle.
#[derive(Debug, PartialEq, Eq)]
pub struct BundleReport {
    pub entries: usize,
    pub tree_size: u64,
    /// The checkpoint's origin line, when witnesses were checked.
    pub origin: Option<String>,
    /// Each witness asked for, by name, and when it cosigned the bundle's checkpoint.
    pub witnessed: Vec<(String, u64)>,
    /// What the bundle proves it holds all of.
    pub complete: Complete,
}

fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, BundleError> {
    let f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    std::io::BufReader::new(f)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let line = line.map_err(|e| io(path, e))?;
            serde_json::from_str(&line)
                .map_err(|_| BundleError::Invalid(format!("{} line {}: not a valid record", path.display(), i + 1)))
        })
        .collect()
}

pub(super) fn hash(text: &str, what: &str, seq: i64) -> Result<Hash, BundleError> {
    hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| BundleError::Invalid(format!("entry {seq}: {what} is not a 32-byte hex hash")))
}

/// Each of `witnesses` must have cosigned the bundle's checkpoint: `checkpoint.note` is the same
/// tree (size and root) as `checkpoint.json`, signed by `key`, with a verifying cosignature line
/// from every one. Returns the note's origin and each witness's cosignature time.
fn check_witnesses(
    dir: &Path,
    cp: &Checkpoint,
    key: &VerifyingKey,
    witnesses: &[Witness],
) -> Result<(String, Vec<(String, u64)>), BundleError> {
    let p = dir.join("checkpoint.note");
    let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
    let origin = text.split('\n').next().unwrap_or_default().to_owned();
    let tree = note::verify(&text, &origin, key).map_err(|e| BundleError::Invalid(format!("checkpoint.note: {e}")))?;
    if tree != cp.tree() {
        return Err(BundleError::Invalid(
            "checkpoint.note is not the checkpoint of checkpoint.json (tree size, root or agreement heads differ)"
                .into(),
        ));
    }
    let mut witnessed = Vec::with_capacity(witnesses.len());
    for w in witnesses {
        let c = cosignature::find(&text, w).ok_or_else(|| {
            BundleError::Invalid(format!(
                "no cosignature by witness {} (key id {}) on the bundle's checkpoint verifies",
                w.name,
                hex::encode(w.key_id())
            ))
        })?;
        witnessed.push((w.name.clone(), c.time));
    }
    Ok((origin, witnessed))
}

/// Verifies a bundle offline. `pinned` is the checkpoint key the auditor trusts; without it the
/// bundle's own `public_key.txt` is used (which proves integrity, not origin). Each of
/// `witnesses` must have cosigned the bundle's checkpoint.
pub fn verify(dir: &Path, pinned: Option<&VerifyingKey>, witnesses: &[Witness]) -> Result<BundleReport, BundleError> {
    let key = match pinned {
        Some(k) => *k,
        None => {
            let p = dir.join("public_key.txt");
            parse_public_key(&std::fs::read_to_string(&p).map_err(|e| io(&p, e))?)
                .ok_or_else(|| BundleError::Invalid("public_key.txt is not ed25519:<hex>".into()))?
        }
    };
    let p = dir.join("checkpoint.json");
    let cp: CheckpointJson = serde_json::from_slice(&std::fs::read(&p).map_err(|e| io(&p, e))?)
        .map_err(|_| BundleError::Invalid("checkpoint.json is not a checkpoint".into()))?;
    let cp = cp
        .parse()
        .ok_or_else(|| BundleError::Invalid("checkpoint.json is not a checkpoint".into()))?;
    if !cp.verify(&key) {
        return Err(BundleError::Invalid(
            "the checkpoint's signature does not verify with the checkpoint key".into(),
        ));
    }
    let (origin, witnessed) = if witnesses.is_empty() {
        (None, Vec::new())
    } else {
        let (origin, witnessed) = check_witnesses(dir, &cp, &key, witnesses)?;
        (Some(origin), witnessed)
    };
    let entries: Vec<BundleEntry> = read_lines(&dir.join("entries.jsonl"))?;
    let proofs: Vec<BundleProof> = read_lines(&dir.join("proofs.jsonl"))?;
    if entries.len() != proofs.len() {
        return Err(BundleError::Invalid(
            "entries.jsonl and proofs.jsonl differ in length".into(),
        ));
    }
    for (e, p) in entries.iter().zip(&proofs) {
        let fail = |why: &str| BundleError::Invalid(format!("entry {}: {why}", e.seq));
        if p.seq != e.seq || p.tree_size != cp.tree_size {
            return Err(fail("its proof is for another entry or tree"));
        }
        let prev = hash(&e.prev_hash, "prev_hash", e.seq)?;
        if Entry::compute_hash(e.seq, &prev, &e.event) != hash(&e.hash, "hash", e.seq)? {
            return Err(fail("its contents do not match its hash (changed)"));
        }
        let path = p
            .path
            .iter()
            .map(|h| hash(h, "a proof node", e.seq))
            .collect::<Result<Vec<_>, _>>()?;
        let leaf = Entry::leaf(e.seq, &prev, &e.event);
        let index = u64::try_from(e.seq - 1).map_err(|_| fail("its sequence number is not positive"))?;
        merkle::verify_inclusion(&leaf, index, cp.tree_size, &path, &cp.root)
            .map_err(|_| fail("it is not in the signed tree (inclusion proof fails)"))?;
    }
    let lines = cp.agreements.as_deref().ok_or_else(|| {
        BundleError::Invalid(
            "the bundle's checkpoint predates per-agreement heads: it cannot prove it holds every entry; export it again"
                .into(),
        )
    })?;
    let p = dir.join("agreement.json");
    let proof: AgreementProof = serde_json::from_slice(&std::fs::read(&p).map_err(|e| io(&p, e))?)
        .map_err(|_| BundleError::Invalid("agreement.json is not a completeness proof".into()))?;
    let complete = super::completeness::check(&proof, &entries, lines)?;
    Ok(BundleReport {
        entries: entries.len(),
        tree_size: cp.tree_size,
        origin,
        witnessed,
        complete,
    })
}
