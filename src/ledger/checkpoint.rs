//! Signed checkpoints: (tree size, Merkle root, time), signed with the gateway's Ed25519
//! checkpoint key. An auditor who keeps a checkpoint can later demand a consistency proof and so
//! know that nothing recorded up to it was changed, removed or reordered.
//!
//! The signed message (version 1) is the UTF-8 text
//! `isa-gateway checkpoint v1\n<tree size>\n<root, lower-case hex>\n<time, microseconds since the Unix epoch>\n`.
//! Version 2 also signs the per-agreement heads ([`super::heads`]): `isa-gateway checkpoint v2\n`,
//! the same three lines, then `<digest of the agreements' lines, lower-case hex>\n`. Every
//! checkpoint made now is version 2; version 1 checkpoints made before still verify.
//!
//! Verification is strict ([`verify_signature`]): RFC 8032 §5.1.7 with a canonical `S`, and no
//! small-order ("weak") public key or `R`. A weak key verifies signatures that nobody's secret key
//! made (the identity key `ed25519:01000…00` with the signature `R` = identity, `S` = 0 verifies
//! every message under the lenient check), so such a key is refused when parsed and when used.

use ed25519_dalek::{Signature, VerifyingKey};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Hash, micros};
use crate::ledger::signing::CheckpointKey;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub tree_size: u64,
    pub root: Hash,
    pub at: Timestamp,
    /// Every agreement's line ([`super::heads`]), sorted by agreement id; `None` on a version 1
    /// checkpoint, which commits to no per-agreement heads.
    pub agreements: Option<Vec<Hash>>,
    pub signature: [u8; 64],
}

/// The bytes a checkpoint's signature covers; `agreements` is the digest of the agreements'
/// lines (version 2), or `None` (version 1).
pub fn signed_message(tree_size: u64, root: &Hash, at: Timestamp, agreements: Option<&Hash>) -> Vec<u8> {
    match agreements {
        None => format!(
            "isa-gateway checkpoint v1\n{tree_size}\n{}\n{}\n",
            hex::encode(root),
            micros(at)
        ),
        Some(d) => format!(
            "isa-gateway checkpoint v2\n{tree_size}\n{}\n{}\n{}\n",
            hex::encode(root),
            micros(at),
            hex::encode(d)
        ),
    }
    .into_bytes()
}

impl Checkpoint {
    /// Signs the tree of `tree_size` entries with root `root` and the agreements' `lines`.
    pub fn sign(tree_size: u64, root: Hash, lines: Vec<Hash>, at: Timestamp, key: &CheckpointKey) -> Self {
        let at = super::ledger_time(at);
        let digest = super::heads::digest(&lines);
        Self {
            tree_size,
            root,
            at,
            signature: key.sign(&signed_message(tree_size, &root, at, Some(&digest))),
            agreements: Some(lines),
        }
    }

    /// What its note states: size, root and the agreements' digest.
    pub fn tree(&self) -> super::note::Tree {
        super::note::Tree {
            tree_size: self.tree_size,
            root: self.root,
            agreements: self.agreements_digest(),
        }
    }

    /// The digest of the agreements' lines this checkpoint signs (`None`: version 1).
    pub fn agreements_digest(&self) -> Option<Hash> {
        self.agreements.as_deref().map(super::heads::digest)
    }

    pub fn verify(&self, public: &VerifyingKey) -> bool {
        verify_signature(
            public.as_bytes(),
            &signed_message(self.tree_size, &self.root, self.at, self.agreements_digest().as_ref()),
            &self.signature,
        )
    }

    pub fn to_json(&self) -> CheckpointJson {
        CheckpointJson {
            tree_size: self.tree_size,
            root: hex::encode(self.root),
            at: self.at,
            agreements: self.agreements.as_ref().map(|l| l.iter().map(hex::encode).collect()),
            signature: hex::encode(self.signature),
        }
    }
}

/// A checkpoint as the API and the audit bundle show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckpointJson {
    pub tree_size: u64,
    pub root: String,
    pub at: Timestamp,
    /// Every agreement's head line (hex), sorted by agreement id: what a bundle proves its
    /// completeness against. Absent on checkpoints made before per-agreement heads (version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreements: Option<Vec<String>>,
    pub signature: String,
}

impl CheckpointJson {
    pub fn parse(&self) -> Option<Checkpoint> {
        Some(Checkpoint {
            tree_size: self.tree_size,
            root: hex::decode(&self.root).ok()?.try_into().ok()?,
            at: self.at,
            agreements: match &self.agreements {
                None => None,
                Some(lines) => Some(
                    lines
                        .iter()
                        .map(|l| hex::decode(l).ok()?.try_into().ok())
                        .collect::<Option<Vec<Hash>>>()?,
                ),
            },
            signature: hex::decode(&self.signature).ok()?.try_into().ok()?,
        })
    }
}

/// The public key as auditors pin it: `ed25519:<64 hex>`.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("ed25519:{}", hex::encode(key.as_bytes()))
}

/// Reads `ed25519:<64 hex>`; `None` if it is not that, not a point, or a weak (small-order) key.
pub fn parse_public_key(text: &str) -> Option<VerifyingKey> {
    public_key(&hex::decode(text.trim().strip_prefix("ed25519:")?).ok()?)
}

/// A public key from its 32 bytes; `None` if they do not encode a point or the point has small
/// order (a weak key, under which signatures can be made without any secret).
fn public_key(bytes: &[u8]) -> Option<VerifyingKey> {
    let bytes: &[u8; 32] = bytes.try_into().ok()?;
    VerifyingKey::from_bytes(bytes).ok().filter(|k| !k.is_weak())
}

/// Ed25519 verification as checkpoints use it, over any message: the public key's 32 bytes, the
/// message, and the signature's 64 bytes. `false` for a key that is malformed or weak, a
/// signature of the wrong length, or a signature that does not verify strictly (`verify_strict`:
/// canonical `S`, no small-order `R`).
pub fn verify_signature(public_key_bytes: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Some(key) = public_key(public_key_bytes) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(message, &signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_only_with_its_key_and_contents() {
        let key = CheckpointKey::from_seed(&[7; 32]);
        let other = CheckpointKey::from_seed(&[8; 32]);
        let cp = Checkpoint::sign(
            10,
            [1; 32],
            vec![[3; 32]],
            Timestamp::from_second(1_800_000_000).unwrap(),
            &key,
        );
        assert!(cp.verify(&key.public()));
        assert!(!cp.verify(&other.public()), "re-signed with another key");
        let mut forged = cp.clone();
        forged.tree_size = 9;
        assert!(!forged.verify(&key.public()));
        let mut forged = cp.clone();
        forged.root[0] ^= 1;
        assert!(!forged.verify(&key.public()));
        let mut forged = cp.clone();
        forged.agreements = Some(vec![[4; 32]]);
        assert!(!forged.verify(&key.public()), "another agreement head");
        let mut forged = cp.clone();
        forged.agreements = None;
        assert!(!forged.verify(&key.public()), "passed off as version 1");
        assert_eq!(cp.to_json().parse().unwrap(), cp);
        assert_eq!(parse_public_key(&public_key_text(&key.public())), Some(key.public()));
    }

    #[test]
    fn the_identity_key_is_refused_and_verifies_nothing() {
        let identity = format!("ed25519:01{}", "00".repeat(31));
        assert_eq!(parse_public_key(&identity), None);
        // R = identity, S = 0 satisfies the lenient equation for every message under this key.
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let weak = VerifyingKey::from_bytes(&hex::decode(&identity[8..]).unwrap().try_into().unwrap()).unwrap();
        let cp = Checkpoint {
            tree_size: 1,
            root: [0; 32],
            at: Timestamp::from_second(1_800_000_000).unwrap(),
            agreements: None,
            signature: forged,
        };
        assert!(!cp.verify(&weak));
    }
}
