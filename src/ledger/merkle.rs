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
#[path = "merkle_tests.rs"]
mod tests;
