//! Verifying the record: the hash chain, the Merkle tree, every signed checkpoint, and the read
//! side re-derived from the entries.

use std::collections::HashMap;

use uuid::Uuid;

use super::chain::Digests;
use super::{
    Chain, Entry, Hash, Ledger, LedgerError, TransferQuery, TransferRecord, delivered_as_decided, merkle, project,
};

/// What `verify` found: the chain, the tree, and every checkpoint, with the first problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: i64,
    pub head: Hash,
    pub checkpoints: usize,
    pub first_break: Option<ChainBreak>,
}

/// Recomputes the hash chain, the Merkle tree, and every checkpoint's root and signature against
/// `public` (the checkpoint key auditors pin). Catches an edited field, a deleted row, swapped
/// rows (the chain), a truncated tail (a checkpoint larger than the ledger), and a forged or
/// re-signed checkpoint (its signature or root). `progress` is told how many entries are done.
pub async fn verify(
    ledger: &dyn Ledger,
    public: &ed25519_dalek::VerifyingKey,
    progress: &mut dyn FnMut(i64),
) -> Result<VerifyReport, LedgerError> {
    let checkpoints = ledger.checkpoints().await?;
    let sizes: Vec<u64> = checkpoints.iter().map(|cp| cp.tree_size).collect();
    let (chain, at_sizes, first_break) = rehash(ledger, &sizes, progress).await?;
    let entries = chain.seq;
    let report = |first_break: Option<ChainBreak>, checkpoints: usize| VerifyReport {
        entries,
        head: chain.hash,
        checkpoints,
        first_break,
    };
    if first_break.is_some() {
        return Ok(report(first_break, 0));
    }
    for cp in &checkpoints {
        let at = i64::try_from(cp.tree_size).unwrap_or(i64::MAX);
        let broken = |problem: String| Some(ChainBreak { seq: at, problem });
        let problem = if !cp.verify(public) {
            broken(format!(
                "checkpoint at tree size {} has a signature that is not the gateway's (forged or re-signed)",
                cp.tree_size
            ))
        } else if cp.tree_size > chain.leaves.len() as u64 {
            broken(format!(
                "checkpoint at tree size {} but the ledger has {entries} entries: the tail was truncated",
                cp.tree_size
            ))
        } else if at_sizes.get(&cp.tree_size).map(|at| &at.root) != Some(&cp.root) {
            broken(format!(
                "checkpoint at tree size {} does not match the entries (rewritten history)",
                cp.tree_size
            ))
        } else if cp.agreements.is_some()
            && at_sizes.get(&cp.tree_size).map(|at| &at.heads) != cp.agreements_digest().as_ref()
        {
            broken(format!(
                "checkpoint at tree size {} signs per-agreement heads the entries do not have \
                 (an audit bundle could be proved complete without some of them)",
                cp.tree_size
            ))
        } else {
            None
        };
        if problem.is_some() {
            return Ok(report(problem, checkpoints.len()));
        }
    }
    Ok(report(None, checkpoints.len()))
}

/// The Merkle root and the digest of every agreement's head line at a checkpoint's size.
struct AtSize {
    root: Hash,
    heads: Hash,
}

/// Re-hashes the ledger from its first entry, checking each against the chain; stops at the
/// first entry that breaks it. The next page is read, and each page's digests computed on every
/// core, while this one is walked. Keeps the root and the agreements' head lines at each of
/// `sizes`, from the Merkle frontier as it goes: linear in the entries whatever the number of
/// checkpoints, and walked while the other cores read.
async fn rehash(
    ledger: &dyn Ledger,
    sizes: &[u64],
    progress: &mut dyn FnMut(i64),
) -> Result<(Chain, HashMap<u64, AtSize>, Option<ChainBreak>), LedgerError> {
    let mut wanted = sizes.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut next = wanted.iter().peekable();
    let mut at_sizes = HashMap::with_capacity(wanted.len());
    let mut frontier = merkle::Frontier::new();
    let mut keep = |chain: &Chain, frontier: &merkle::Frontier, at_sizes: &mut HashMap<u64, AtSize>| {
        if next.next_if(|s| **s == frontier.size()).is_some() {
            let heads = super::heads::digest(&chain.heads.lines());
            at_sizes.insert(
                frontier.size(),
                AtSize {
                    root: frontier.root(),
                    heads,
                },
            );
        }
    };
    // Small enough that a page stays in the processor's cache (measured: 2,000 reads about a
    // third faster than 20,000).
    const PAGE: u32 = 2_000;
    let mut chain = Chain::default();
    keep(&chain, &frontier, &mut at_sizes);
    let mut page = ledger.raw_entries_after(0, PAGE).await?;
    while !page.is_empty() {
        let after = page.last().map_or(0, |e| e.seq);
        let check = async {
            let digests = digests_of(&page);
            for (raw, digests) in page.iter().zip(&digests) {
                if let Err(problem) = chain.extend_digested(raw, digests) {
                    return Some(ChainBreak {
                        seq: chain.seq + 1,
                        problem,
                    });
                }
                frontier.push(digests.leaf);
                keep(&chain, &frontier, &mut at_sizes);
            }
            None
        };
        let (next, broken) = tokio::join!(ledger.raw_entries_after(after, PAGE), check);
        if broken.is_some() {
            return Ok((chain, at_sizes, broken));
        }
        progress(chain.seq);
        page = next?;
    }
    Ok((chain, at_sizes, None))
}

/// Each entry's digests, the page split among the machine's cores (they depend on nothing but
/// the entry; walking the chain with them is the sequential part). A share whose thread cannot
/// be started, or fails, is hashed on this one.
fn digests_of(page: &[super::RawEntry]) -> Vec<Digests> {
    let all = |part: &[super::RawEntry]| part.iter().map(Digests::of).collect::<Vec<_>>();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let share = page.len().div_ceil(cores.min(8)).max(256);
    if page.len() <= share {
        return all(page);
    }
    std::thread::scope(|scope| {
        let parts: Vec<_> = page
            .chunks(share)
            .map(|part| (part, std::thread::Builder::new().spawn_scoped(scope, move || all(part))))
            .collect();
        let mut digests = Vec::with_capacity(page.len());
        for (part, thread) in parts {
            match thread.map_err(|_| ()).and_then(|t| t.join().map_err(|_| ())) {
                Ok(done) => digests.extend(done),
                Err(()) => digests.extend(all(part)),
            }
        }
        digests
    })
}

/// Re-derives what auditors and the DPO are shown — every transfer's listing (status, times,
/// reviews, who asked, legal bases) and the subject index — from the ledger's entries, and
/// compares. The chain proves the entries; this proves the listings were made from them and not
/// edited since. `None`: they agree. Run it after [`verify`] passes. It may run while gateways
/// write: a transfer that differs is read again before it is reported, and transfers decided
/// while it runs are taken in before the totals are compared.
pub async fn verify_transfers(ledger: &dyn Ledger) -> Result<Option<String>, LedgerError> {
    const PAGE: u32 = 500;
    let mut query = TransferQuery {
        agreement_id: None,
        status: None,
        since: None,
        until: None,
        limit: PAGE,
        after_seq: None,
        ..Default::default()
    };
    let (mut listed, mut subjects) = (0_i64, 0_i64);
    let mut listed_before = -1;
    for _ in 0..10 {
        let mut page = ledger.list_transfers(&query).await?;
        while let Some(last) = page.last() {
            query.after_seq = Some(last.ledger_seq);
            let ids: Vec<Uuid> = page.iter().map(|r| r.transfer_id).collect();
            // This page's entries are read while the next page's listings are (each listing
            // is still read before its own entries, which a write in between cannot outrun).
            let (mut read, next) = tokio::try_join!(ReadSide::of(ledger, &ids), ledger.list_transfers(&query))?;
            for shown in &page {
                let mut problem = read.check(shown);
                // A write may have landed between the reads above: read this one again.
                for _ in 0..3 {
                    if problem.is_none() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    let Some(shown) = ledger.transfer(shown.transfer_id).await? else {
                        return Ok(Some(format!("transfer {}: listed, then removed", shown.transfer_id)));
                    };
                    problem = ReadSide::of(ledger, &[shown.transfer_id]).await?.check(&shown);
                }
                if let Some(problem) = problem {
                    return Ok(Some(format!("transfer {}: {problem}", shown.transfer_id)));
                }
                subjects += read.subjects_of(shown.transfer_id);
            }
            listed += page.len() as i64;
            page = next;
        }
        let (transfers, decisions, subject_rows) = ledger.projection_sizes().await?;
        if decisions > listed && listed != listed_before {
            // Perhaps decided while this ran: take those in too, then compare.
            listed_before = listed;
            continue;
        }
        return Ok(if transfers != listed || decisions != listed {
            Some(format!(
                "the ledger holds {decisions} decisions but {transfers} transfers are listed (a listing was removed or added)"
            ))
        } else if subject_rows != subjects {
            Some(format!(
                "the subject index holds {subject_rows} rows but the decisions name {subjects} (rows added or removed)"
            ))
        } else {
            None
        });
    }
    Err(LedgerError::Unrecorded(
        "the ledger kept growing faster than its listings could be checked; run it again".into(),
    ))
}

/// The entries, subject-index rows and stored legal bases of a page of transfers.
struct ReadSide {
    entries: std::collections::HashMap<Uuid, Vec<Entry>>,
    subjects: std::collections::HashMap<Uuid, Vec<String>>,
    legal_bases: std::collections::HashMap<Uuid, Option<String>>,
}

impl ReadSide {
    async fn of(ledger: &dyn Ledger, ids: &[Uuid]) -> Result<Self, LedgerError> {
        // Three reads at once, on three of the pool's connections.
        let (legal_bases, entries, subjects) = tokio::try_join!(
            ledger.legal_bases_of(ids),
            ledger.entries_of(ids),
            ledger.subjects_of(ids)
        )?;
        let mut side = Self {
            entries: std::collections::HashMap::new(),
            subjects: std::collections::HashMap::new(),
            legal_bases: legal_bases.into_iter().collect(),
        };
        for e in entries {
            side.entries.entry(e.event.transfer_id).or_default().push(e);
        }
        for (id, subject) in subjects {
            side.subjects.entry(id).or_default().push(subject);
        }
        Ok(side)
    }

    fn subjects_of(&self, id: Uuid) -> i64 {
        self.subjects.get(&id).map_or(0, |s| s.len() as i64)
    }

    /// What is wrong with `shown`, judged against its entries.
    fn check(&mut self, shown: &TransferRecord) -> Option<String> {
        let history = self.entries.remove(&shown.transfer_id).unwrap_or_default();
        let Some(derived) = project(&history) else {
            return Some("listed, but the ledger has no decision for it".into());
        };
        if &derived != shown {
            return Some("its listing does not match its ledger entries (edited)".into());
        }
        if let Some(problem) = delivered_as_decided(&history) {
            return Some(problem.into());
        }
        let decision = &history[0].event;
        let stored: Option<Vec<String>> = self
            .legal_bases
            .get(&shown.transfer_id)
            .cloned()
            .flatten()
            .and_then(|text| serde_json::from_str(&text).ok());
        if stored != decision.permitted().then(|| decision.legal_bases.clone()) {
            return Some("its legal bases (which the counts show) do not match its decision (edited)".into());
        }
        let mut expected = decision.subject_index.clone();
        expected.sort();
        expected.dedup();
        let found = self.subjects.entry(shown.transfer_id).or_default();
        found.sort();
        if *found != expected {
            return Some("its subject-index rows do not match its decision (edited)".into());
        }
        None
    }
}

/// Where the chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub problem: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ledger entry {}: {}", self.seq, self.problem)
    }
}

/// The outcome of a chain check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub entries: i64,
    pub head: Hash,
    pub first_break: Option<ChainBreak>,
}

/// The chain alone, from the first entry, naming the first entry that breaks it: no checkpoint
/// key needed. What the crash and tampering tests ask of a ledger; `ledger verify` runs [`verify`],
/// which does this and checks the tree and every signed checkpoint too.
pub async fn verify_chain(ledger: &dyn Ledger) -> Result<ChainReport, LedgerError> {
    let (chain, _, first_break) = rehash(ledger, &[], &mut |_| {}).await?;
    Ok(ChainReport {
        entries: chain.seq,
        head: chain.hash,
        first_break,
    })
}
