//! Per-agreement heads: what lets an audit bundle prove that it leaves out none of its agreement's
//! entries, not only that the entries it holds are genuine.
//!
//! Each agreement's entries (those whose `agreement_id` is the agreement's), in ledger order, form
//! a chain of their own:
//!
//! ```text
//! link(0) = 32 zero bytes
//! link(k) = SHA-256("isa-gateway agreement link v1\0" || link(k-1) || hash of the agreement's k-th entry)
//! ```
//!
//! An agreement's head is (count, last link). A checkpoint signs, beside the tree's size and root,
//! the digest of every head:
//!
//! ```text
//! line(A) = SHA-256("isa-gateway agreement head v1\n" || A || "\n" || count || "\n" || hex(link) || "\n")
//! digest  = SHA-256("isa-gateway agreements v1\n" || line(A1) || line(A2) || …)   agreements sorted by id
//! ```
//!
//! A bundle carries the line hashes (so other agreements appear only as hashes), its agreement's
//! head, the link and count before its first entry, and the hashes of the agreement's entries
//! after its last up to the checkpoint. The auditor folds the bundle's entries and those hashes
//! from the link before: only every entry, in order, arrives at the signed head.

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
    /// Takes in the agreement's next entry, by its hash.
    pub fn extend(&mut self, entry_hash: &Hash) {
        let mut h = Sha256::new();
        h.update(b"isa-gateway agreement link v1\0");
        h.update(self.link);
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
    /// Takes in an entry of `agreement`.
    pub fn record(&mut self, agreement: &str, entry_hash: &Hash) {
        match self.0.get_mut(agreement) {
            Some(head) => head.extend(entry_hash),
            None => {
                let mut head = Head::default();
                head.extend(entry_hash);
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
            heads.record(if i == 2 { "other" } else { "a" }, h);
        }
        let head = heads.get("a").unwrap();
        assert_eq!(head.count, 4);
        let fold = |hs: &[&Hash]| {
            let mut h = Head::default();
            hs.iter().for_each(|x| h.extend(x));
            h
        };
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
        heads.record("a", &[9; 32]);
        assert_ne!(digest(&heads.lines()), before);
        assert_ne!(head.line("a"), head.line("b"), "the line names its agreement");
    }
}
