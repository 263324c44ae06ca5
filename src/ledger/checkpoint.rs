//! Signed checkpoints: (tree size, Merkle root, time), signed with the gateway's Ed25519
//! checkpoint key. An auditor who keeps a checkpoint can later demand a consistency proof and so
//! know that nothing recorded up to it was changed, removed or reordered.
//!
//! The signed message (version 1) is the UTF-8 text
//! `isa-gateway checkpoint v1\n<tree size>\n<root, lower-case hex>\n<time, microseconds since the Unix epoch>\n`.

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{Hash, micros};
use crate::ledger::signing::CheckpointKey;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub tree_size: u64,
    pub root: Hash,
    pub at: Timestamp,
    pub signature: [u8; 64],
}

/// The bytes a checkpoint's signature covers.
pub fn signed_message(tree_size: u64, root: &Hash, at: Timestamp) -> Vec<u8> {
    format!(
        "isa-gateway checkpoint v1\n{tree_size}\n{}\n{}\n",
        hex::encode(root),
        micros(at)
    )
    .into_bytes()
}

impl Checkpoint {
    pub fn sign(tree_size: u64, root: Hash, at: Timestamp, key: &CheckpointKey) -> Self {
        let at = super::ledger_time(at);
        Self {
            tree_size,
            root,
            at,
            signature: key.sign(&signed_message(tree_size, &root, at)),
        }
    }

    pub fn verify(&self, public: &VerifyingKey) -> bool {
        let signature = Signature::from_bytes(&self.signature);
        public
            .verify(&signed_message(self.tree_size, &self.root, self.at), &signature)
            .is_ok()
    }

    pub fn to_json(&self) -> CheckpointJson {
        CheckpointJson {
            tree_size: self.tree_size,
            root: hex::encode(self.root),
            at: self.at,
            signature: hex::encode(self.signature),
        }
    }
}

/// A checkpoint as the API and the audit bundle show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointJson {
    pub tree_size: u64,
    pub root: String,
    pub at: Timestamp,
    pub signature: String,
}

impl CheckpointJson {
    pub fn parse(&self) -> Option<Checkpoint> {
        Some(Checkpoint {
            tree_size: self.tree_size,
            root: hex::decode(&self.root).ok()?.try_into().ok()?,
            at: self.at,
            signature: hex::decode(&self.signature).ok()?.try_into().ok()?,
        })
    }
}

/// The public key as auditors pin it: `ed25519:<64 hex>`.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("ed25519:{}", hex::encode(key.as_bytes()))
}

pub fn parse_public_key(text: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(text.trim().strip_prefix("ed25519:")?)
        .ok()?
        .try_into()
        .ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_only_with_its_key_and_contents() {
        let key = CheckpointKey::from_seed(&[7; 32]);
        let other = CheckpointKey::from_seed(&[8; 32]);
        let cp = Checkpoint::sign(10, [1; 32], Timestamp::from_second(1_800_000_000).unwrap(), &key);
        assert!(cp.verify(&key.public()));
        assert!(!cp.verify(&other.public()), "re-signed with another key");
        let mut forged = cp.clone();
        forged.tree_size = 9;
        assert!(!forged.verify(&key.public()));
        let mut forged = cp.clone();
        forged.root[0] ^= 1;
        assert!(!forged.verify(&key.public()));
        assert_eq!(cp.to_json().parse().unwrap(), cp);
        assert_eq!(parse_public_key(&public_key_text(&key.public())), Some(key.public()));
    }
}
