//! Per-agreement heads: what lets an audit bundle prove that it leaves out none of its agreement's
//! entries, not only that the entries it holds are genuine.
//!
//! Each agreement's entries (those whose `agreement_id` is the agreement's, read from the entry's
//! own bytes), in ledger order, form a chain of their own:
//!
//! ```text
//! link(0) = 32 zero bytes
//! link(k) = SHA-256("isa-gateway agreement link v1\0" || link(k-1) || time(k) || hash(k))
//! ```
//!
//! where hash(k) is the agreement's k-th entry's hash and time(k) its time (microseconds since the
//! Unix epoch, 8 bytes big-endian): the head fixes when each entry was recorded, so a bundle can
//! show an entry it leaves out by its time and hash alone, and prove it outside the period.
//!
//! An agreement's head is (count, last link). A checkpoint signs, beside the tree's size and root,
//! the digest of every head:
//!
//! ```text
//! line(A) = SHA-256("isa-gateway agreement head v1\n" || A || "\n" || count || "\n" || hex(link) || "\n")
//! digest  = SHA-256("isa-gateway agreements v1\n" || line(A1) || line(A2) || …)   agreements sorted by id
//! ```
//!
//! A bundle carries the line hashes (so other agreements appear only as hashes), and the time and
//! hash of each of the agreement's entries it does not hold. The auditor folds them with the
//! bundle's entries in ledger order: only every entry, in order, arrives at the signed head.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::Hash;

/// One agreement's entries so far: how many, and the last link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    pub count: u64,
    pub link: Hash,
}

impl Head {
    /// Takes in the agreement's next entry, by its time (microseconds) and hash.
    pub fn extend(&mut self, at_us: i64, entry_hash: &Hash) {
        let mut h = Sha256::new();
        h.update(b"isa-gateway agreement link v1\0");
        h.update(self.link);
        h.update(at_us.to_be_bytes());
        h.update(entry_hash);
        self.link = h.finalize().into();
        self.count += 1;
    }

    /// This head's line in the digest, for `agreement`.
    pub fn line(&self, agreement: &str) -> Hash {
        Sha256::digest(format!(
            "isa-gateway agreement head v1\n{agreement}\n{}\n{}\n",
            self.count,
            hex::encode(self.link)
        ))
        .into()
    }
}

/// The digest a checkpoint signs over every agreement's line.
pub fn digest(lines: &[Hash]) -> Hash {
    let mut h = Sha256::new();
    h.update(b"isa-gateway agreements v1\n");
    for line in lines {
        h.update(line);
    }
    h.finalize().into()
}

/// Every agreement's head, as the chain holds them.
#[derive(Debug, Clone, Default)]
pub struct Heads(BTreeMap<String, Head>);

impl Heads {
    /// Takes in an entry of `agreement`, by its time (microseconds) and hash.
    pub fn record(&mut self, agreement: &str, at_us: i64, entry_hash: &Hash) {
        match self.0.get_mut(agreement) {
            Some(head) => head.extend(at_us, entry_hash),
            None => {
                let mut head = Head::default();
                head.extend(at_us, entry_hash);
                self.0.insert(agreement.to_owned(), head);
            }
        }
    }

    pub fn get(&self, agreement: &str) -> Option<Head> {
        self.0.get(agreement).copied()
    }

    /// Every agreement's line, sorted by agreement id.
    pub fn lines(&self) -> Vec<Hash> {
        self.0.iter().map(|(a, head)| head.line(a)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_every_entry_in_order_reaches_the_head() {
        let hashes: Vec<Hash> = (0u8..5).map(|i| [i; 32]).collect();
        let mut heads = Heads::default();
        for (i, h) in hashes.iter().enumerate() {
            heads.record(if i == 2 { "other" } else { "a" }, i as i64, h);
        }
        let head = heads.get("a").unwrap();
        assert_eq!(head.count, 4);
        let fold = |hs: &[&Hash]| {
            let mut h = Head::default();
            hs.iter().for_each(|x| h.extend(i64::from(x[0]), x));
            h
        };
        let mut moved = Head::default();
        [0, 1, 3, 4]
            .iter()
            .for_each(|i| moved.extend(if *i == 3 { 9 } else { *i }, &hashes[*i as usize]));
        assert_ne!(moved, head, "an entry's time is fixed by the head");
        assert_eq!(fold(&[&hashes[0], &hashes[1], &hashes[3], &hashes[4]]), head);
        assert_ne!(fold(&[&hashes[0], &hashes[3], &hashes[4]]), head, "one left out");
        assert_ne!(
            fold(&[&hashes[1], &hashes[0], &hashes[3], &hashes[4]]),
            head,
            "reordered"
        );
        // Lines are sorted by agreement id, and the digest changes with any head.
        assert_eq!(
            heads.lines(),
            vec![head.line("a"), heads.get("other").unwrap().line("other")]
        );
        let before = digest(&heads.lines());
        heads.record("a", 5, &[9; 32]);
        assert_ne!(digest(&heads.lines()), before);
        assert_ne!(head.line("a"), head.line("b"), "the line names its agreement");
    }
}
