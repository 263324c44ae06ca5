//! RFC 9162 (Certificate Transparency v2; same tree construction as RFC 6962) Merkle tree hashing,
//! inclusion proofs and consistency proofs, plus an append-only [`Frontier`] for incremental roots.
//!
//! Hashing (RFC 9162 §2.1.1, SHA-256):
//! - empty tree: `SHA-256("")`
//! - leaf:       `SHA-256(0x00 || entry)`
//! - interior:   `SHA-256(0x01 || left || right)`
//!
//! Proof generation takes the full list of leaf hashes and runs in O(n) hashing per proof.
//! Verification never panics: every malformed input (zero sizes, out-of-range indices,
//! `u64::MAX` sizes, proofs of the wrong length or content) yields a [`ProofError`].

use sha2::{Digest, Sha256};
use std::fmt;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;

/// `SHA-256("")`, the root of the empty tree.
const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41,
    0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Errors from proof generation and verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofError {
    /// The leaf index is not inside the tree (`index >= size`; includes any index into an empty tree).
    IndexOutOfRange { index: u64, size: u64 },
    /// A tree size is larger than allowed: more leaves than are available when generating a proof,
    /// or an old size larger than the new size for consistency.
    SizeOutOfRange { size: u64, limit: u64 },
    /// The proof has the wrong number of hashes for the given index/sizes.
    WrongProofLength { expected: usize, actual: usize },
    /// The root recomputed from the proof does not match the supplied root.
    RootMismatch,
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IndexOutOfRange { index, size } => {
                write!(f, "leaf index {index} out of range for tree size {size}")
            }
            Self::SizeOutOfRange { size, limit } => write!(f, "tree size {size} out of range (limit {limit})"),
            Self::WrongProofLength { expected, actual } => {
                write!(f, "wrong proof length: expected {expected} hashes, got {actual}")
            }
            Self::RootMismatch => f.write_str("computed root does not match expected root"),
        }
    }
}

impl std::error::Error for ProofError {}

/// Leaf hash: `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(entry);
    h.finalize().into()
}

/// Interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// MTH over already-computed leaf hashes (RFC 9162 §2.1.1); the empty tree is SHA-256("").
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => EMPTY_ROOT,
        [single] => *single,
        _ => {
            let (left, right) = leaves.split_at(split_point(leaves.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

/// Inclusion proof (audit path) for leaf `index` in the tree of the first `size` leaves (RFC 9162 §2.1.3.1).
///
/// The path is ordered from the leaf's sibling up to the child of the root. Leaf 0 of a size-1 tree has
/// an empty path.
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    let mut tree = prefix(leaves, size)?;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // `index < size <= leaves.len()`, so it fits in usize.
    let mut m = usize::try_from(index).map_err(|_| ProofError::IndexOutOfRange { index, size })?;

    // PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])        if m < k
    //               = PATH(m - k, D[k:n]) : MTH(D[0:k])    if m >= k
    // Walk from the root down, collecting siblings, then reverse into leaf-to-root order.
    let mut path = Vec::new();
    while tree.len() > 1 {
        let (left, right) = tree.split_at(split_point(tree.len()));
        if m < left.len() {
            path.push(root(right));
            tree = left;
        } else {
            path.push(root(left));
            m -= left.len();
            tree = right;
        }
    }
    path.reverse();
    Ok(path)
}

/// Verifies per RFC 9162 §2.1.3.2.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<(), ProofError> {
    // Step 1.
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    // Steps 2-3. `size >= 1` here, so `size - 1` cannot underflow.
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = *leaf;
    // Step 4.
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5.
    if s_n != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Consistency proof between sizes `old` and `new` (RFC 9162 §2.1.4.1).
///
/// The RFC defines proofs for `0 < old < new`. Additionally, `old == new` and `old == 0` yield an empty
/// proof (accepted by [`verify_consistency`] when the roots are equal, resp. the old root is the empty root).
pub fn consistency_proof(leaves: &[Hash], old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
    let mut tree = prefix(leaves, new)?;
    if old > new {
        return Err(ProofError::SizeOutOfRange { size: old, limit: new });
    }
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    // `old < new <= leaves.len()`, so it fits in usize.
    let mut m = usize::try_from(old).map_err(|_| ProofError::SizeOutOfRange { size: old, limit: new })?;

    // SUBPROOF(m, D[n], b):
    //   m == n: [] if b, else [MTH(D[n])]
    //   m <= k: SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
    //   m >  k: SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
    // Iterate from the root down, then reverse so the deepest node comes first.
    let mut proof = Vec::new();
    let mut whole_old_tree = true; // `b`
    while m != tree.len() {
        let (left, right) = tree.split_at(split_point(tree.len()));
        if m <= left.len() {
            proof.push(root(right));
            tree = left;
        } else {
            proof.push(root(left));
            m -= left.len();
            tree = right;
            whole_old_tree = false;
        }
    }
    if !whole_old_tree {
        proof.push(root(tree));
    }
    proof.reverse();
    Ok(proof)
}

/// Verifies per RFC 9162 §2.1.4.2.
///
/// Beyond the RFC's `0 < old < new`: `old == new` requires an empty proof and equal roots, and `old == 0`
/// requires an empty proof and `old_root` equal to the empty-tree root (and likewise `new_root` if `new == 0`).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::SizeOutOfRange { size: old, limit: new });
    }
    if old == 0 || old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                expected: 0,
                actual: proof.len(),
            });
        }
        let ok = if old == 0 {
            *old_root == EMPTY_ROOT && (new != 0 || *new_root == EMPTY_ROOT)
        } else {
            old_root == new_root
        };
        return if ok { Ok(()) } else { Err(ProofError::RootMismatch) };
    }

    // Now 0 < old < new.
    let expected = consistency_proof_len(old, new);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    // Step 1 (empty path) is covered by the length check: `expected >= 1` whenever old < new.
    // Step 2: if `old` is a power of two the old root is (implicitly) prepended to the path.
    let (seed, rest) = if old.is_power_of_two() {
        (*old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => return Err(ProofError::WrongProofLength { expected, actual: 0 }),
        }
    };
    // Step 3.
    let mut f_n = old - 1;
    let mut s_n = new - 1;
    // Step 4.
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5.
    let mut f_r = seed;
    let mut s_r = seed;
    // Step 6.
    for c in rest {
        if s_n == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                actual: proof.len(),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 7.
    if s_n != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            actual: proof.len(),
        });
    }
    if f_r != *old_root || s_r != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The right edge of the tree ("compact range"/frontier): O(log n) hashes, enough to compute the root after each append.
///
/// Holds the roots of the perfect subtrees that make up the tree, largest (leftmost) first; there is one per
/// set bit of `size`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash (as produced by [`leaf_hash`]).
    pub fn push(&mut self, leaf: Hash) {
        // Each trailing one bit of `size` is a perfect subtree that merges with the new node.
        let mut node = leaf;
        for _ in 0..self.size.trailing_ones() {
            match self.nodes.pop() {
                Some(left) => node = node_hash(&left, &node),
                None => break, // unreachable: `nodes.len() == size.count_ones()`
            }
        }
        self.nodes.push(node);
        // 2^64 appends are not physically reachable.
        self.size += 1;
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The tree root; equals [`root`] over the same leaves.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(last) = iter.next() else {
            return EMPTY_ROOT;
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Largest power of two strictly less than `n`. Requires `n >= 2`.
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    let below = n.saturating_sub(1).max(1);
    1 << (usize::BITS - 1 - below.leading_zeros())
}

/// The first `size` leaves, or `SizeOutOfRange` if there are not that many.
fn prefix(leaves: &[Hash], size: u64) -> Result<&[Hash], ProofError> {
    let limit = u64::try_from(leaves.len()).unwrap_or(u64::MAX);
    usize::try_from(size)
        .ok()
        .and_then(|n| leaves.get(..n))
        .ok_or(ProofError::SizeOutOfRange { size, limit })
}

/// Length of the inclusion proof for `index < size`: one hash per level below the point where the path to
/// `index` diverges from the right edge ("inner"), plus one per left subtree on the right edge ("border").
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = u64::BITS - (index ^ size.saturating_sub(1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Length of the consistency proof for `0 < old < new`.
fn consistency_proof_len(old: u64, new: u64) -> usize {
    // Skip the levels where the old tree's right edge is a perfect subtree (the node is shared).
    let level = old.trailing_zeros();
    let index = old.saturating_sub(1) >> level;
    let size = (new.saturating_sub(1) >> level).saturating_add(1);
    // The first hash is the old tree's edge node itself, omitted when `old` is a power of two (index == 0).
    let seed = usize::from(index != 0);
    seed + inclusion_proof_len(index, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Hash {
        let v = hex::decode(s).unwrap();
        v.try_into().unwrap()
    }

    fn hs(v: &[&str]) -> Vec<Hash> {
        v.iter().map(|s| h(s)).collect()
    }

    /// RFC 6962 test inputs used by the CT reference implementations.
    fn kat_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|s| leaf_hash(&hex::decode(s).unwrap()))
        .collect()
    }

    /// Roots for sizes 0..=8 of `kat_leaves()`.
    const KAT_ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn kat_root(n: usize) -> Hash {
        h(KAT_ROOTS[n])
    }

    /// Leaves for the exhaustive tests: `leaf_hash([i])`.
    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&[i as u8])).collect()
    }

    #[test]
    fn kat_hashes() {
        assert_eq!(root(&[]), h(KAT_ROOTS[0]));
        assert_eq!(Frontier::new().root(), h(KAT_ROOTS[0]));
        let l = kat_leaves();
        assert_eq!(
            l[0],
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        );
        assert_eq!(
            l[1],
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7")
        );
        assert_eq!(
            node_hash(&l[0], &l[1]),
            h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")
        );
        let mut f = Frontier::new();
        for n in 1..=8 {
            f.push(l[n - 1]);
            assert_eq!(root(&l[..n]), kat_root(n), "root size {n}");
            assert_eq!(f.root(), kat_root(n), "frontier size {n}");
            assert_eq!(f.size(), n as u64);
        }
    }

    #[test]
    fn kat_inclusion() {
        // (index, size, path) from the CT reference test data (transparency-dev/merkle testonly).
        let cases: &[(u64, u64, &[&str])] = &[
            (0, 1, &[]),
            (
                0,
                2,
                &["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"],
            ),
            (
                1,
                2,
                &["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        let l = kat_leaves();
        for &(index, size, want) in cases {
            let want = hs(want);
            assert_eq!(inclusion_proof(&l, index, size).unwrap(), want, "({index}, {size})");
            verify_inclusion(&l[index as usize], index, size, &want, &kat_root(size as usize)).unwrap();
        }
    }

    #[test]
    fn kat_consistency() {
        // (old, new, proof): first four from the CT reference test data, the rest from an independent
        // Python implementation of RFC 9162 §2.1.4.1.
        let cases: &[(u64, u64, &[&str])] = &[
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                3,
                7,
                &[
                    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
                    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
                    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                    "837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e",
                ],
            ),
            (
                4,
                8,
                &["6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
            ),
        ];
        let l = kat_leaves();
        for &(old, new, want) in cases {
            let want = hs(want);
            assert_eq!(consistency_proof(&l, old, new).unwrap(), want, "({old}, {new})");
            verify_consistency(old, new, &kat_root(old as usize), &kat_root(new as usize), &want).unwrap();
        }
    }

    /// SHA-256 over every root (sizes 0..=64) and every inclusion and consistency proof element
    /// (sizes 1..=64) for `leaves(64)`, as computed by an independent Python (hashlib) implementation.
    #[test]
    fn transcript_matches_reference_implementation() {
        let l = leaves(64);
        let mut t = Sha256::new();
        for n in 0..=64 {
            t.update(root(&l[..n]));
        }
        for n in 1..=64u64 {
            for i in 0..n {
                for p in inclusion_proof(&l, i, n).unwrap() {
                    t.update(p);
                }
            }
        }
        for n in 1..=64u64 {
            for m in 1..=n {
                for p in consistency_proof(&l, m, n).unwrap() {
                    t.update(p);
                }
            }
        }
        let got: Hash = t.finalize().into();
        assert_eq!(
            got,
            h("12c5ba22431a9f54bac6455065f4d2551ea815c5e721ee1d62d8dcfc12915c4f")
        );
        assert_eq!(
            root(&l),
            h("4433a69f32158463382405ec957c31b8bc89a1f08964b920f6cf53dc13098cb3")
        );
    }

    #[test]
    fn exhaustive_up_to_64() {
        let l = leaves(64);
        let roots: Vec<Hash> = (0..=64).map(|n| root(&l[..n])).collect();
        let mut f = Frontier::new();
        assert_eq!(f.root(), roots[0]);
        for n in 1..=64usize {
            f.push(l[n - 1]);
            assert_eq!(f.size(), n as u64);
            assert_eq!(f.root(), roots[n], "frontier size {n}");
            assert!(f.nodes.len() == (n as u64).count_ones() as usize);
            let size = n as u64;
            for i in 0..size {
                let p = inclusion_proof(&l, i, size).unwrap();
                assert_eq!(p.len(), inclusion_proof_len(i, size));
                verify_inclusion(&l[i as usize], i, size, &p, &roots[n]).unwrap();
                // Only the first `size` leaves matter.
                assert_eq!(inclusion_proof(&l[..n], i, size).unwrap(), p);
            }
            for old in 0..=size {
                let p = consistency_proof(&l, old, size).unwrap();
                verify_consistency(old, size, &roots[old as usize], &roots[n], &p).unwrap();
                assert_eq!(consistency_proof(&l[..n], old, size).unwrap(), p);
            }
        }
    }

    fn flips(proof: &[Hash]) -> impl Iterator<Item = Vec<Hash>> + '_ {
        (0..proof.len()).flat_map(move |e| {
            (0..32).map(move |b| {
                let mut p = proof.to_vec();
                p[e][b] ^= 0x01;
                p
            })
        })
    }

    fn length_tampers(proof: &[Hash]) -> Vec<Vec<Hash>> {
        let mut out = vec![];
        if !proof.is_empty() {
            out.push(proof[1..].to_vec());
            out.push(proof[..proof.len() - 1].to_vec());
            out.push(vec![]);
        }
        let mut ext = proof.to_vec();
        ext.push([0u8; 32]);
        out.push(ext);
        let mut ext = vec![[0xabu8; 32]];
        ext.extend_from_slice(proof);
        out.push(ext);
        let mut dup = proof.to_vec();
        dup.extend_from_slice(proof);
        if !proof.is_empty() {
            out.push(dup);
        }
        out
    }

    #[test]
    fn tampered_inclusion_fails() {
        const N: usize = 24;
        let l = leaves(N);
        let roots: Vec<Hash> = (0..=N).map(|n| root(&l[..n])).collect();
        for n in 1..=N {
            let size = n as u64;
            for i in 0..size {
                let leaf = l[i as usize];
                let p = inclusion_proof(&l, i, size).unwrap();
                for bad in flips(&p) {
                    assert_eq!(
                        verify_inclusion(&leaf, i, size, &bad, &roots[n]),
                        Err(ProofError::RootMismatch)
                    );
                }
                for bad in length_tampers(&p) {
                    assert!(matches!(
                        verify_inclusion(&leaf, i, size, &bad, &roots[n]),
                        Err(ProofError::WrongProofLength { .. })
                    ));
                }
                // Wrong leaf, wrong root.
                let mut bad_leaf = leaf;
                bad_leaf[31] ^= 0x80;
                assert!(verify_inclusion(&bad_leaf, i, size, &p, &roots[n]).is_err());
                let mut bad_root = roots[n];
                bad_root[0] ^= 0x01;
                assert!(verify_inclusion(&leaf, i, size, &p, &bad_root).is_err());
                // Wrong index (same size, same root).
                for j in 0..size + 2 {
                    if j != i {
                        assert!(
                            verify_inclusion(&leaf, j, size, &p, &roots[n]).is_err(),
                            "i={i} j={j} n={n}"
                        );
                    }
                }
                // Wrong size, checked against that size's true root.
                for (m, root_m) in roots.iter().enumerate() {
                    if m != n {
                        assert!(
                            verify_inclusion(&leaf, i, m as u64, &p, root_m).is_err(),
                            "i={i} n={n} m={m}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn tampered_consistency_fails() {
        const N: usize = 24;
        let l = leaves(N);
        let roots: Vec<Hash> = (0..=N).map(|n| root(&l[..n])).collect();
        for new in 1..=N {
            for old in 1..new {
                let (o, n) = (old as u64, new as u64);
                let p = consistency_proof(&l, o, n).unwrap();
                for bad in flips(&p) {
                    assert_eq!(
                        verify_consistency(o, n, &roots[old], &roots[new], &bad),
                        Err(ProofError::RootMismatch)
                    );
                }
                for bad in length_tampers(&p) {
                    assert!(matches!(
                        verify_consistency(o, n, &roots[old], &roots[new], &bad),
                        Err(ProofError::WrongProofLength { .. })
                    ));
                }
                let mut bad_root = roots[old];
                bad_root[7] ^= 0x10;
                assert!(verify_consistency(o, n, &bad_root, &roots[new], &p).is_err());
                let mut bad_root = roots[new];
                bad_root[7] ^= 0x10;
                assert!(verify_consistency(o, n, &roots[old], &bad_root, &p).is_err());
                // Swapped roots.
                assert!(verify_consistency(o, n, &roots[new], &roots[old], &p).is_err());
                // Wrong sizes, checked against those sizes' true roots.
                for (o2, n2) in (0..=N).flat_map(|a| (0..=N).map(move |b| (a, b))) {
                    if (o2, n2) != (old, new) {
                        assert!(
                            verify_consistency(o2 as u64, n2 as u64, &roots[o2], &roots[n2], &p).is_err(),
                            "proof ({old},{new}) accepted for ({o2},{n2})"
                        );
                    }
                }
            }
            // Equal sizes: empty proof and equal roots only.
            let s = new as u64;
            assert!(verify_consistency(s, s, &roots[new], &roots[new], &[]).is_ok());
            assert!(verify_consistency(s, s, &roots[new], &roots[new - 1], &[]).is_err());
            assert!(verify_consistency(s, s, &roots[new], &roots[new], &[roots[new]]).is_err());
            // Old size 0: empty proof, old root must be the empty root.
            assert!(verify_consistency(0, s, &roots[0], &roots[new], &[]).is_ok());
            assert!(verify_consistency(0, s, &roots[new], &roots[new], &[]).is_err());
            assert!(verify_consistency(0, s, &roots[0], &roots[new], &[roots[new]]).is_err());
        }
    }

    #[test]
    fn generation_errors() {
        let l = leaves(8);
        assert_eq!(
            inclusion_proof(&l, 0, 0),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(
            inclusion_proof(&l, 5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            inclusion_proof(&l, 0, 9),
            Err(ProofError::SizeOutOfRange { size: 9, limit: 8 })
        );
        assert_eq!(
            inclusion_proof(&[], 0, 1),
            Err(ProofError::SizeOutOfRange { size: 1, limit: 0 })
        );
        assert!(inclusion_proof(&l, u64::MAX, u64::MAX).is_err());
        assert_eq!(
            consistency_proof(&l, 3, 2),
            Err(ProofError::SizeOutOfRange { size: 3, limit: 2 })
        );
        assert_eq!(
            consistency_proof(&l, 1, 9),
            Err(ProofError::SizeOutOfRange { size: 9, limit: 8 })
        );
        assert!(consistency_proof(&l, 0, u64::MAX).is_err());
        assert_eq!(consistency_proof(&l, 0, 0), Ok(vec![]));
        assert_eq!(consistency_proof(&[], 0, 0), Ok(vec![]));
        assert!(verify_consistency(0, 0, &root(&[]), &root(&[]), &[]).is_ok());
        assert!(verify_consistency(0, 0, &root(&[]), &l[0], &[]).is_err());
        let e = ProofError::WrongProofLength { expected: 3, actual: 1 };
        assert_eq!(e.to_string(), "wrong proof length: expected 3 hashes, got 1");
        let _: &dyn std::error::Error = &e;
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let sizes = [
            0,
            1,
            2,
            3,
            7,
            8,
            9,
            1 << 32,
            (1 << 63) - 1,
            1 << 63,
            (1 << 63) + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        let junk: Vec<Hash> = (0..130u8).map(|i| [i; 32]).collect();
        let some_root = [0x42u8; 32];
        let leaf = [0x17u8; 32];
        for &a in &sizes {
            for &b in &sizes {
                // Every proof length 0..=130, including the exact expected one for the huge sizes.
                for len in 0..=junk.len() {
                    let p = &junk[..len];
                    assert!(verify_inclusion(&leaf, a, b, p, &some_root).is_err());
                    assert!(verify_consistency(a, b, &some_root, &some_root, p).is_err() || (a == b && len == 0));
                }
                for idx in [0, 1, a / 2, a.saturating_sub(1)] {
                    if idx < b {
                        let len = inclusion_proof_len(idx, b);
                        assert!(len <= 128);
                        let r = verify_inclusion(&leaf, idx, b, &junk[..len], &some_root);
                        assert_eq!(r, Err(ProofError::RootMismatch));
                    }
                }
                if 0 < a && a < b {
                    let len = consistency_proof_len(a, b);
                    assert!((1..=129).contains(&len));
                    let r = verify_consistency(a, b, &some_root, &some_root, &junk[..len]);
                    assert_eq!(r, Err(ProofError::RootMismatch));
                }
                let _ = inclusion_proof(&junk, a, b);
                let _ = consistency_proof(&junk, a, b);
            }
        }
    }
}
