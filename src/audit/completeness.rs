//! An audit bundle's proof that it is complete: that no entry of its agreement in the range it
//! covers was left out (see [`crate::ledger::heads`] for the per-agreement heads a checkpoint
//! signs).
//!
//! `agreement.json` holds the agreement's head before the bundle's first entry (count and link),
//! the agreement's entry just before and just after the range in full (each recorded outside the
//! period asked for: that is why the range starts and ends where it does), and the hashes of the
//! agreement's later entries up to the checkpoint. Folding the link before, the boundary entries,
//! the bundle's entries and those hashes, in order, must arrive at a head line the checkpoint
//! signed. The bundle's entries are every entry of the agreement between the boundaries (by
//! sequence number), so an entry left out, reordered or added breaks the fold.
//!
//! Why a signed per-agreement head rather than every leaf hash of the range: a leaf hash does not
//! say which agreement its entry is under, so an exporter could call a left-out entry "another
//! agreement's"; the head names the agreement, and other agreements appear only as line hashes.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::bundle::{BundleEntry, BundleError};
use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::heads::Head;
use crate::ledger::{Entry, Hash, Ledger};

/// An agreement's head as a bundle shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadJson {
    pub count: u64,
    pub link: String,
}

/// `agreement.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AgreementProof {
    pub agreement: String,
    /// The period asked for, `[since, until)`; `None` is open.
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// The agreement's head before `boundary_before` (or before the first entry, if none).
    pub before: HeadJson,
    /// The agreement's entry just before the bundle's first, recorded outside the period.
    pub boundary_before: Option<BundleEntry>,
    /// The agreement's entry just after the bundle's last, recorded outside the period.
    pub boundary_after: Option<BundleEntry>,
    /// The hashes of the agreement's entries after `boundary_after`, up to the checkpoint.
    pub after: Vec<String>,
}

/// What a complete bundle proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complete {
    pub agreement: String,
    /// The bundle's entries are every entry of the agreement from `first_seq` to `last_seq`.
    pub first_seq: i64,
    pub last_seq: i64,
    /// How many entries of the agreement the signed tree holds before and after them.
    pub before: u64,
    pub after: u64,
}

fn bundle_entry(e: &Entry) -> BundleEntry {
    BundleEntry {
        seq: e.seq,
        prev_hash: hex::encode(e.prev_hash),
        hash: hex::encode(e.hash),
        event: e.event.clone(),
    }
}

fn invalid(why: impl Into<String>) -> BundleError {
    BundleError::Invalid(why.into())
}

/// The entries of `agreement` a bundle against `cp` holds for `[since, until)`, and the proof
/// that they are all of them. Fails, exporting nothing, if the agreement's entries as stored do
/// not reach the head `cp` signed (changed, added or removed since).
pub async fn prove(
    ledger: &dyn Ledger,
    agreement: &str,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    cp: &Checkpoint,
) -> Result<(Vec<Entry>, AgreementProof), BundleError> {
    let lines = cp.agreements.as_ref().ok_or_else(|| {
        invalid(
            "the checkpoint predates per-agreement heads, so no bundle against it can prove it is complete; \
             the next checkpoint (after the next entry) will carry them",
        )
    })?;
    let hashes = ledger.agreement_hashes(agreement, cp.tree_size).await?;
    let fold = |hs: &[(i64, Hash)]| {
        let mut head = Head::default();
        hs.iter().for_each(|(_, h)| head.extend(h));
        head
    };
    if !lines.contains(&fold(&hashes).line(agreement)) {
        return Err(invalid(format!(
            "the entries of {agreement} as stored do not reach the head the checkpoint at tree size {} signed: \
             entries were changed, added or removed since; nothing exported",
            cp.tree_size
        )));
    }
    let in_tree = |e: &Entry| u64::try_from(e.seq).is_ok_and(|s| s <= cp.tree_size);
    let selected: Vec<i64> = ledger
        .entries_for(agreement, since, until)
        .await?
        .iter()
        .filter(|e| in_tree(e))
        .map(|e| e.seq)
        .collect();
    let (Some(first), Some(last)) = (selected.first(), selected.last()) else {
        return Err(invalid(format!(
            "{agreement} has no entries in that period up to the checkpoint: nothing to export"
        )));
    };
    let place = |seq: i64| {
        hashes
            .iter()
            .position(|(s, _)| *s == seq)
            .ok_or_else(|| invalid(format!("entry {seq} is not among the agreement's entries as stored")))
    };
    let (lo, hi) = (place(*first)?, place(*last)?);
    let from = if lo > 0 { hashes[lo - 1].0 } else { *first };
    let to = hashes.get(hi + 1).map_or(*last, |(s, _)| *s);
    let mut entries = ledger.agreement_entries(agreement, from, to).await?;
    let expected: Vec<(i64, Hash)> = hashes[lo.saturating_sub(1)..(hi + 2).min(hashes.len())].to_vec();
    let read: Vec<(i64, Hash)> = entries.iter().map(|e| (e.seq, e.hash)).collect();
    if read != expected
        || entries
            .iter()
            .any(|e| Entry::compute_hash(e.seq, &e.prev_hash, &e.event) != e.hash)
    {
        return Err(invalid(format!(
            "the entries of {agreement} changed while the bundle was read, or do not match their hashes; nothing exported"
        )));
    }
    let boundary_after = (hi + 1 < hashes.len()).then(|| entries.pop()).flatten();
    let boundary_before = (lo > 0).then(|| entries.remove(0));
    let before = fold(&hashes[..lo.saturating_sub(1)]);
    let proof = AgreementProof {
        agreement: agreement.to_owned(),
        since,
        until,
        before: HeadJson {
            count: before.count,
            link: hex::encode(before.link),
        },
        boundary_before: boundary_before.as_ref().map(bundle_entry),
        boundary_after: boundary_after.as_ref().map(bundle_entry),
        after: hashes
            .get(hi + 2..)
            .unwrap_or_default()
            .iter()
            .map(|(_, h)| hex::encode(h))
            .collect(),
    };
    Ok((entries, proof))
}

fn hash(text: &str, what: &str) -> Result<Hash, BundleError> {
    hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid(format!("agreement.json: {what} is not a 32-byte hex hash")))
}

/// A boundary entry: genuine (its hash is its contents'), of the agreement, and recorded outside
/// the period (otherwise it belonged in the bundle).
fn boundary(e: &BundleEntry, p: &AgreementProof, which: &str) -> Result<Hash, BundleError> {
    let fail = |why: &str| invalid(format!("agreement.json: the entry {which} the range ({}) {why}", e.seq));
    let prev = hash(&e.prev_hash, "a boundary's prev_hash")?;
    let h = hash(&e.hash, "a boundary's hash")?;
    if Entry::compute_hash(e.seq, &prev, &e.event) != h {
        return Err(fail("does not match its hash (changed)"));
    }
    if e.event.agreement_id != p.agreement {
        return Err(fail("is under another agreement"));
    }
    let inside = p.since.is_none_or(|s| e.event.at >= s) && p.until.is_none_or(|u| e.event.at < u);
    if inside {
        return Err(fail("was recorded within the period, so the bundle leaves it out"));
    }
    Ok(h)
}

/// Checks `proof` for the bundle's `entries` (each already checked against its hash) against the
/// checkpoint's agreement `lines`.
pub fn check(proof: &AgreementProof, entries: &[BundleEntry], lines: &[Hash]) -> Result<Complete, BundleError> {
    let a = &proof.agreement;
    let mut head = Head {
        count: proof.before.count,
        link: hash(&proof.before.link, "before.link")?,
    };
    let mut seqs = Vec::with_capacity(entries.len() + 2);
    if let Some(e) = &proof.boundary_before {
        head.extend(&boundary(e, proof, "before")?);
        seqs.push(e.seq);
    } else if head.count > 0 {
        return Err(invalid(
            "agreement.json: earlier entries of the agreement are hidden without the boundary entry that shows where the range starts",
        ));
    }
    for e in entries {
        if &e.event.agreement_id != a {
            return Err(invalid(format!(
                "entry {}: it is under another agreement than {a}",
                e.seq
            )));
        }
        head.extend(&hash(&e.hash, "an entry's hash")?);
        seqs.push(e.seq);
    }
    if let Some(e) = &proof.boundary_after {
        head.extend(&boundary(e, proof, "after")?);
        seqs.push(e.seq);
    } else if !proof.after.is_empty() {
        return Err(invalid(
            "agreement.json: later entries of the agreement are hidden without the boundary entry that shows where the range ends",
        ));
    }
    if seqs.windows(2).any(|w| w[0] >= w[1]) {
        return Err(invalid("the bundle's entries are not in ledger order"));
    }
    for h in &proof.after {
        head.extend(&hash(h, "a later entry's hash")?);
    }
    if !lines.contains(&head.line(a)) {
        return Err(invalid(format!(
            "the bundle is not complete: its entries of {a}, with the hashes before and after them, do not reach \
             a head the checkpoint signed (an entry was left out, added or reordered)"
        )));
    }
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Err(invalid("the bundle holds no entries"));
    };
    Ok(Complete {
        agreement: a.clone(),
        first_seq: first.seq,
        last_seq: last.seq,
        before: proof.before.count + u64::from(proof.boundary_before.is_some()),
        after: proof.after.len() as u64 + u64::from(proof.boundary_after.is_some()),
    })
}
