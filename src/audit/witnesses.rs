//! Witnesses, on the gateway's side: accepting a cosignature (a configured witness's, verifying,
//! over a checkpoint this gateway signed and still holds), and checking that the witnesses an
//! auditor names cosigned a tree the ledger still extends.

use jiff::Timestamp;

use crate::audit::checkpointer::Checkpointer;
use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::cosignature::{Cosignature, CosignatureError, Witness};
use crate::ledger::{Hash, Ledger, LedgerError, StoredCosignature, note};

/// How far ahead of the gateway's clock a witness's timestamp may be.
const CLOCK_GRACE_SECS: i64 = 600;

/// Why a cosignature was not accepted. Each names the rule it broke; none carries what was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Malformed(CosignatureError),
    #[error(
        "the cosignature is not by a witness this gateway accepts: its name and key id must match one of ledger.witnesses"
    )]
    UnknownWitness,
    #[error("this gateway never signed a checkpoint of that tree size and root")]
    UnknownCheckpoint,
    #[error("the cosignature does not verify over that checkpoint under the witness's key")]
    BadSignature,
    #[error("the cosignature's timestamp is in the future")]
    FromTheFuture,
}

impl Refusal {
    /// The stable code an API caller sees.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed_cosignature",
            Self::UnknownWitness => "unknown_witness",
            Self::UnknownCheckpoint => "unknown_checkpoint",
            Self::BadSignature => "invalid_cosignature",
            Self::FromTheFuture => "cosignature_from_the_future",
        }
    }
}

/// What was accepted: the checkpoint cosigned, and whether this cosignature is new (the first a
/// witness gives on a tree size is the one kept).
#[derive(Debug)]
pub struct Accepted {
    pub checkpoint: Checkpoint,
    pub new: bool,
}

/// Checks the cosignature `line` on the checkpoint (`tree_size`, `root`) and keeps it.
pub async fn accept(
    ledger: &dyn Ledger,
    checkpointer: &Checkpointer,
    tree_size: u64,
    root: &Hash,
    line: &str,
    now: Timestamp,
) -> Result<Result<Accepted, Refusal>, LedgerError> {
    let cosignature = match Cosignature::parse_line(line) {
        Ok(c) => c,
        Err(e) => return Ok(Err(Refusal::Malformed(e))),
    };
    let Some(witness) = checkpointer
        .witnesses()
        .iter()
        .find(|w| w.name == cosignature.name && w.key_id() == cosignature.key_id)
    else {
        return Ok(Err(Refusal::UnknownWitness));
    };
    // A checkpoint row this gateway's key signed, not merely one the database holds.
    let public = checkpointer.public_key();
    let Some(checkpoint) = ledger
        .checkpoints()
        .await?
        .into_iter()
        .find(|c| c.tree_size == tree_size && &c.root == root && c.verify(&public))
    else {
        return Ok(Err(Refusal::UnknownCheckpoint));
    };
    // The note the witness saw carries the checkpoint's agreements digest: its cosignature covers it.
    let tree = checkpoint.tree();
    let body = note::body(checkpointer.origin(), &tree);
    if !cosignature.verifies(witness, &body) {
        return Ok(Err(Refusal::BadSignature));
    }
    if i64::try_from(cosignature.time).map_or(true, |t| t > now.as_second() + CLOCK_GRACE_SECS) {
        return Ok(Err(Refusal::FromTheFuture));
    }
    // One verifying cosignature per witness and tree is enough; a row that does not verify (an
    // insider's, in the witness's name) does not count, so it cannot stop the real one landing.
    let already = ledger
        .cosignatures(tree_size)
        .await?
        .iter()
        .any(|c| c.tree() == tree && c.cosignature.verifies(witness, &body));
    let new = !already
        && ledger
            .store_cosignature(&StoredCosignature {
                tree_size,
                root: *root,
                agreements: tree.agreements,
                cosignature,
            })
            .await?;
    Ok(Ok(Accepted { checkpoint, new }))
}

/// The newest checkpoint of at least `min_tree_size` entries that every witness the gateway
/// accepts has cosigned, if any (for an audit bundle that witnesses can vouch for).
pub async fn newest_witnessed(
    ledger: &dyn Ledger,
    checkpointer: &Checkpointer,
    min_tree_size: u64,
) -> Result<Option<Checkpoint>, LedgerError> {
    let witnesses = checkpointer.witnesses();
    if witnesses.is_empty() {
        return Ok(None);
    }
    let cosignatures = ledger.cosignatures(min_tree_size).await?;
    let public = checkpointer.public_key();
    let mut checkpoints = ledger.checkpoints().await?;
    // Only checkpoints that sign the agreements' heads: a bundle proves itself complete against them.
    checkpoints.retain(|c| c.tree_size >= min_tree_size && c.agreements.is_some() && c.verify(&public));
    Ok(checkpoints.into_iter().rev().find(|cp| {
        let tree = cp.tree();
        let body = note::body(checkpointer.origin(), &tree);
        witnesses.iter().all(|w| {
            cosignatures
                .iter()
                .any(|c| c.tree() == tree && c.cosignature.verifies(w, &body))
        })
    }))
}

/// What one witness vouches for in the ledger as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Witnessed {
    /// The largest tree the witness cosigned, which the ledger still extends.
    Extends { tree_size: u64, time: u64 },
    /// No cosignature by the witness verifies.
    None,
    /// The witness cosigned a tree the ledger no longer extends: history was rewritten.
    Contradicted { tree_size: u64 },
    /// A stored row names the witness (its name and key id) but does not verify under its key: a
    /// forged or damaged cosignature, which could only have been put there to shadow a real one.
    Forged { tree_size: u64 },
}

/// For each witness, the largest tree it cosigned (a kept cosignature that verifies under its key
/// over `origin`'s note), and whether the ledger as stored still has that root at that size.
pub async fn witnessed(
    ledger: &dyn Ledger,
    origin: &str,
    witnesses: &[Witness],
) -> Result<Vec<Witnessed>, LedgerError> {
    let cosignatures = ledger.cosignatures(0).await?;
    let mut out = Vec::with_capacity(witnesses.len());
    for w in witnesses {
        let forged = cosignatures.iter().find(|c| {
            c.cosignature.name == w.name
                && c.cosignature.key_id == w.key_id()
                && !c.cosignature.verifies(w, &note::body(origin, &c.tree()))
        });
        if let Some(c) = forged {
            out.push(Witnessed::Forged { tree_size: c.tree_size });
            continue;
        }
        let newest = cosignatures
            .iter()
            .rev()
            .find(|c| c.cosignature.verifies(w, &note::body(origin, &c.tree())));
        out.push(match newest {
            None => Witnessed::None,
            Some(c) if c.tree_size <= ledger.tree_size().await && ledger.root(c.tree_size).await? == c.root => {
                Witnessed::Extends {
                    tree_size: c.tree_size,
                    time: c.cosignature.time,
                }
            }
            Some(c) => Witnessed::Contradicted { tree_size: c.tree_size },
        });
    }
    Ok(out)
}
