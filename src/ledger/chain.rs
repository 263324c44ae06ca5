//! The chain as this process holds it: the head and every Merkle leaf (32 bytes an entry).

use jiff::Timestamp;

use sha2::{Digest, Sha256};

use super::entry::Reader;
use super::heads::Heads;
use super::{Hash, LedgerError, RawEntry, merkle};

/// The chain as verified so far: the head, every Merkle leaf (32 bytes an entry) and each
/// agreement's head. The gateway keeps one to append to; `verify` builds one from the first entry.
#[derive(Debug, Clone, Default)]
pub struct Chain {
    pub seq: i64,
    pub hash: Hash,
    pub leaves: Vec<Hash>,
    pub heads: Heads,
    /// Every agreement's head line when the chain was `watched.0` entries long (the newest
    /// checkpoint's size when the gateway first read its ledger), so that checking that
    /// checkpoint does not read the ledger again.
    pub watched: Option<(u64, Option<Vec<Hash>>)>,
}

/// An entry's two digests: of its bytes (what the chain links) and as a Merkle leaf. They need
/// nothing but the entry, so `verify` computes a page's on every core before walking the chain.
#[derive(Debug, Clone, Copy)]
pub struct Digests {
    pub sha256: Hash,
    pub leaf: Hash,
}

impl Digests {
    pub fn of(raw: &RawEntry) -> Self {
        Self {
            sha256: Sha256::digest(&raw.bytes).into(),
            leaf: merkle::leaf_hash(&raw.bytes),
        }
    }
}

impl Chain {
    /// Takes in `raw` as the next entry, or says what is wrong with it.
    pub fn extend(&mut self, raw: &RawEntry) -> Result<(), String> {
        self.extend_digested(raw, &Digests::of(raw))
    }

    /// [`Chain::extend`] with the entry's digests already computed (from its bytes).
    pub fn extend_digested(&mut self, raw: &RawEntry, digests: &Digests) -> Result<(), String> {
        let expected = self.seq + 1;
        if raw.seq != expected {
            return Err(format!("missing: the next entry present is {}", raw.seq));
        }
        let Some(mut r) = Reader::header(&raw.bytes) else {
            return Err("its stored bytes are not a ledger entry".into());
        };
        if r.prev_hash != self.hash {
            return Err("its previous-hash link does not match the entry before it".into());
        }
        if digests.sha256 != raw.hash {
            return Err("its contents do not match its hash (edited)".into());
        }
        if r.seq != raw.seq {
            return Err("its sequence number is not the one it was hashed with (moved)".into());
        }
        let indexed = indexed_fields(&mut r).map(|(transfer_id, kind, agreement_id)| {
            transfer_id == raw.transfer_id
                && kind == raw.kind
                && agreement_id == raw.agreement_id
                && r.at_us == raw.at_us
        });
        if indexed != Some(true) {
            return Err("its index columns (transfer, kind, agreement or time) were edited".into());
        }
        // Its index columns are its bytes' (checked above).
        self.append(raw.seq, raw.hash, digests.leaf, &raw.agreement_id, raw.at_us);
        Ok(())
    }

    /// Takes in `raw` as stored, checking only its place (judging its contents is `verify`'s
    /// work), so that leaf `i` is always entry `i + 1`.
    pub fn adopt(&mut self, raw: &RawEntry) -> Result<(), LedgerError> {
        // Its place, and its link to the head this chain holds: after a failover that lost
        // entries this gateway had seen, another gateway's new entries do not link to ours.
        let linked = Reader::header(&raw.bytes).is_some_and(|r| r.prev_hash == self.hash);
        if raw.seq != self.seq + 1 || !linked {
            return Err(LedgerError::OutOfSequence(raw.seq));
        }
        // The agreement's head from the entry's own bytes, never its index columns: an edited
        // column must not take an entry out of its agreement's head (and so out of a bundle).
        let (agreement, at_us, hash) = head_input(&raw.bytes).ok_or(LedgerError::Corrupt {
            seq: raw.seq,
            what: "its stored bytes are not a ledger entry".into(),
        })?;
        self.append_with_head(
            raw.seq,
            raw.hash,
            merkle::leaf_hash(&raw.bytes),
            agreement,
            at_us,
            &hash,
        );
        Ok(())
    }

    /// Whether each entry is the one this chain holds at its place (its Merkle leaf); `None` if
    /// the chain does not reach one of them yet.
    pub fn holds(&self, entries: &[super::Entry]) -> Option<bool> {
        let mut all = true;
        for e in entries {
            let held = usize::try_from(e.seq - 1).ok().and_then(|i| self.leaves.get(i))?;
            all &= *held == super::Entry::leaf(e.seq, &e.prev_hash, &e.event);
        }
        Some(all)
    }

    pub(crate) fn append(&mut self, seq: i64, hash: Hash, leaf: Hash, agreement: &str, at_us: i64) {
        self.append_with_head(seq, hash, leaf, agreement, at_us, &hash);
    }

    fn append_with_head(&mut self, seq: i64, hash: Hash, leaf: Hash, agreement: &str, at_us: i64, head_hash: &Hash) {
        self.seq = seq;
        self.hash = hash;
        self.leaves.push(leaf);
        self.heads.record(agreement, at_us, head_hash);
        if let Some((size, lines)) = &mut self.watched
            && *size == self.leaves.len() as u64
        {
            *lines = Some(self.heads.lines());
        }
    }

    /// Every agreement's head line at `size` entries, if the chain holds them: its own when it
    /// is that long, or those it kept when it passed the watched size.
    pub fn heads_at(&self, size: u64) -> Option<Vec<Hash>> {
        if self.leaves.len() as u64 == size {
            return Some(self.heads.lines());
        }
        match &self.watched {
            Some((watched, Some(lines))) if *watched == size => Some(lines.clone()),
            _ => None,
        }
    }
}

/// What an entry adds to its agreement's head, from its bytes alone: its agreement, its time
/// (microseconds) and its hash (SHA-256 of the bytes). `None` if they are not a ledger entry.
pub fn head_input(bytes: &[u8]) -> Option<(&str, i64, Hash)> {
    let mut r = Reader::header(bytes)?;
    let (_, _, agreement) = indexed_fields(&mut r)?;
    Some((agreement, r.at_us, Sha256::digest(bytes).into()))
}

/// The fields an entry is looked up by, read from its bytes after the header: its transfer, its
/// kind and its agreement.
fn indexed_fields<'a>(r: &mut Reader<'a>) -> Option<(&'a str, &'a str, &'a str)> {
    let transfer_id = r.str()?;
    let kind = r.str()?;
    r.str()?;
    r.opt()?;
    Some((transfer_id, kind, r.str()?))
}

/// Microseconds since the Unix epoch: the ledger's time resolution.
pub fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

/// A timestamp truncated to the ledger's resolution, so what is stored is what was hashed.
pub fn ledger_time(t: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(micros(t)).unwrap_or(t)
}
