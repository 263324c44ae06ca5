//! An audit bundle's proof that it is complete: that it holds every entry of its agreement
//! recorded in the period asked for (see [`crate::ledger::heads`] for the per-agreement heads a
//! checkpoint signs).
//!
//! `agreement.json` names the agreement and the period `[since, until)`, and lists each of the
//! agreement's other entries up to the checkpoint by sequence number, time and hash. The auditor
//! merges them with the bundle's entries in ledger order, checks that every bundle entry was
//! recorded within the period and every other one outside it, and folds (time, hash) of each:
//! only every entry, in order, with its true time, arrives at a head line the checkpoint signed.
//! So an entry of the period cannot be left out (it would have to be listed, and its time is
//! fixed by the head), and entries' times need not follow their order.
//!
//! Why a signed per-agreement head rather than every leaf hash of the range: a leaf hash does not
//! say which agreement its entry is under, so an exporter could call a left-out entry "another
//! agreement's"; the head names the agreement, and other agreements appear only as line hashes.
//! What the auditor of one agreement learns beyond the period: how many of its entries there are
//! and when each was recorded, never what they say.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::bundle::{BundleEntry, BundleError, hash};
use crate::ledger::checkpoint::Checkpoint;
use crate::ledger::heads::Head;
use crate::ledger::{Entry, Hash, Ledger, ledger_time};

/// One of the agreement's entries the bundle does not hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Other {
    pub seq: i64,
    pub at: Timestamp,
    pub hash: String,
}

/// `agreement.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct AgreementProof {
    pub agreement: String,
    /// The period asked for, `[since, until)`; `None` is open.
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Every other entry of the agreement up to the checkpoint, in ledger order.
    pub others: Vec<Other>,
}

/// What a complete bundle proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complete {
    pub agreement: String,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// The bundle's entries: every entry of the agreement recorded in the period.
    pub entries: usize,
    /// The agreement's entries in the signed tree recorded outside the period.
    pub others: usize,
}

fn invalid(why: impl Into<String>) -> BundleError {
    BundleError::Invalid(why.into())
}

fn within(at: Timestamp, since: Option<Timestamp>, until: Option<Timestamp>) -> bool {
    since.is_none_or(|s| at >= s) && until.is_none_or(|u| at < u)
}

/// The entries of `agreement` a bundle against `cp` holds for `[since, until)`, and the proof
/// that they are all of them. Fails, exporting nothing, if the agreement's entries as stored do
/// not reach the head `cp` signed (changed, added, removed or moved since).
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
    // The ledger's resolution, as the entries' times are stored.
    let (since, until) = (since.map(ledger_time), until.map(ledger_time));
    let rows = ledger.agreement_hashes(agreement, cp.tree_size).await?;
    let mut head = Head::default();
    rows.iter().for_each(|(_, at, h)| head.extend(*at, h));
    if !lines.contains(&head.line(agreement)) {
        return Err(invalid(format!(
            "the entries of {agreement} as stored do not reach the head the checkpoint at tree size {} signed: \
             entries were changed, added, removed or moved since; nothing exported",
            cp.tree_size
        )));
    }
    let time = |seq: i64, at: i64| {
        Timestamp::from_microsecond(at).map_err(|_| invalid(format!("entry {seq}: its time is out of range")))
    };
    let mut wanted = Vec::new();
    let mut others = Vec::new();
    for (seq, at, hash) in &rows {
        let at = time(*seq, *at)?;
        if within(at, since, until) {
            wanted.push((*seq, *hash));
        } else {
            others.push(Other {
                seq: *seq,
                at,
                hash: hex::encode(hash),
            });
        }
    }
    let (Some(first), Some(last)) = (wanted.first(), wanted.last()) else {
        return Err(invalid(format!(
            "{agreement} has no entries in that period up to the checkpoint: nothing to export"
        )));
    };
    let mut entries = ledger.agreement_entries(agreement, first.0, last.0).await?;
    entries.retain(|e| wanted.binary_search_by_key(&e.seq, |w| w.0).is_ok());
    let read: Vec<(i64, Hash)> = entries.iter().map(|e| (e.seq, e.hash)).collect();
    if read != wanted
        || entries
            .iter()
            .any(|e| Entry::compute_hash(e.seq, &e.prev_hash, &e.event) != e.hash)
    {
        return Err(invalid(format!(
            "the entries of {agreement} changed while the bundle was read, or do not match their hashes; nothing exported"
        )));
    }
    let proof = AgreementProof {
        agreement: agreement.to_owned(),
        since,
        until,
        others,
    };
    Ok((entries, proof))
}

/// Checks `proof` for the bundle's `entries` (each already checked against its hash and the
/// signed tree) against the checkpoint's agreement `lines`.
pub fn check(proof: &AgreementProof, entries: &[BundleEntry], lines: &[Hash]) -> Result<Complete, BundleError> {
    let a = &proof.agreement;
    // Both lists in ledger order, merged: (seq, time, hash).
    let mut all = Vec::with_capacity(entries.len() + proof.others.len());
    for e in entries {
        if &e.event.agreement_id != a {
            return Err(invalid(format!(
                "entry {}: it is under another agreement than {a}",
                e.seq
            )));
        }
        if !within(e.event.at, proof.since, proof.until) {
            return Err(invalid(format!(
                "entry {}: it was recorded outside the bundle's period",
                e.seq
            )));
        }
        all.push((e.seq, e.event.at, hash(&e.hash, "hash", e.seq)?));
    }
    for o in &proof.others {
        if within(o.at, proof.since, proof.until) {
            return Err(invalid(format!(
                "the bundle is not complete: entry {} of {a} was recorded within the period and is not in it",
                o.seq
            )));
        }
        all.push((o.seq, o.at, hash(&o.hash, "its hash in agreement.json", o.seq)?));
    }
    all.sort_by_key(|x| x.0);
    if all.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(invalid("agreement.json lists an entry the bundle also holds"));
    }
    let mut head = Head::default();
    for (_, at, h) in &all {
        head.extend(at.as_microsecond(), h);
    }
    if !lines.contains(&head.line(a)) {
        return Err(invalid(format!(
            "the bundle is not complete: its entries of {a}, with the others agreement.json lists, do not reach \
             a head the checkpoint signed (an entry was left out, added, reordered, or shown with another time)"
        )));
    }
    if entries.is_empty() {
        return Err(invalid("the bundle holds no entries"));
    }
    Ok(Complete {
        agreement: a.clone(),
        since: proof.since,
        until: proof.until,
        entries: entries.len(),
        others: proof.others.len(),
    })
}
