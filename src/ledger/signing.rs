//! The key that signs checkpoints. Where it is kept is `app::keystore`'s business.

use std::fmt;

/// The key that signs ledger checkpoints (Ed25519). Its public half is what auditors pin.
pub struct CheckpointKey(ed25519_dalek::SigningKey);

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointKey(public {})", hex::encode(self.public().as_bytes()))
    }
}

impl CheckpointKey {
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    pub fn public(&self) -> ed25519_dalek::VerifyingKey {
        self.0.verifying_key()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.0.sign(message).to_bytes()
    }
}
