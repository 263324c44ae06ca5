//! Witness cosignatures on checkpoints, in the C2SP `tlog-cosignature` format (Ed25519,
//! `cosignature/v1`; <https://c2sp.org/tlog-cosignature>). A witness is another organisation
//! that keeps the last checkpoint it cosigned, checks that each new one extends it (a consistency
//! proof) and only then signs it: a ledger rewritten after a witnessed checkpoint is caught by
//! whoever asks for the witness's cosignature, even if the gateway's own key signed the rewrite.
//!
//! A cosignature is one more signature line on the checkpoint's signed note:
//!
//! ```text
//! — <witness name> base64(key id (4 bytes) || timestamp (8 bytes, big-endian) || Ed25519 signature (64 bytes))
//! ```
//!
//! The key id is the first four bytes of SHA-256(name || 0x0A || 0x04 || public key), and the
//! signature covers `cosignature/v1\ntime <timestamp>\n` followed by the note's body (origin,
//! tree size, root, each line ending in a newline). A witness's public key is written as a C2SP
//! verifier key (`vkey`): `<name>+<key id, 8 hex>+base64(0x04 || public key)`.

use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use super::checkpoint::verify_signature;
use super::signing::CheckpointKey;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The signature type byte of an Ed25519 `cosignature/v1` key.
pub const ED25519_COSIGNATURE_V1: u8 = 0x04;

/// Why a witness key or a cosignature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    #[error(
        "a witness key is <name>+<8 hex key id>+base64(0x04 || 32-byte Ed25519 key) (a C2SP vkey of type cosignature/v1)"
    )]
    MalformedKey,
    #[error("the witness key's id does not match its name and key")]
    WrongKeyId,
    #[error("the witness key is not a usable Ed25519 key (malformed or weak)")]
    WeakKey,
    #[error("a cosignature is one note signature line: — <name> base64(key id || timestamp || signature)")]
    MalformedLine,
}

/// A witness as a verifier knows it: its name and public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub name: String,
    pub public: VerifyingKey,
}

/// A key name as signed notes allow it: non-empty, no whitespace, no `+`.
pub fn is_key_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

impl Witness {
    pub fn new(name: &str, public: VerifyingKey) -> Option<Self> {
        (is_key_name(name) && !public.is_weak()).then(|| Self {
            name: name.to_owned(),
            public,
        })
    }

    /// Reads a C2SP verifier key of type 0x04. Weak (small-order) keys are refused.
    pub fn parse(vkey: &str) -> Result<Self, CosignatureError> {
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CosignatureError::MalformedKey);
        };
        let key = B64.decode(key).map_err(|_| CosignatureError::MalformedKey)?;
        if !is_key_name(name) || id.len() != 8 || key.len() != 33 || key[0] != ED25519_COSIGNATURE_V1 {
            return Err(CosignatureError::MalformedKey);
        }
        let id = hex::decode(id).map_err(|_| CosignatureError::MalformedKey)?;
        let bytes: &[u8; 32] = key[1..].try_into().map_err(|_| CosignatureError::MalformedKey)?;
        let public = VerifyingKey::from_bytes(bytes)
            .ok()
            .filter(|k| !k.is_weak())
            .ok_or(CosignatureError::WeakKey)?;
        let witness = Self {
            name: name.to_owned(),
            public,
        };
        if id != witness.key_id() {
            return Err(CosignatureError::WrongKeyId);
        }
        Ok(witness)
    }

    /// `SHA-256(name || 0x0A || 0x04 || public key)[:4]`.
    pub fn key_id(&self) -> [u8; 4] {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        h.update([0x0A, ED25519_COSIGNATURE_V1]);
        h.update(self.public.as_bytes());
        let d = h.finalize();
        [d[0], d[1], d[2], d[3]]
    }

    /// The verifier key, as witnesses publish it and gateways and auditors configure it.
    pub fn vkey(&self) -> String {
        let mut key = vec![ED25519_COSIGNATURE_V1];
        key.extend_from_slice(self.public.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.key_id()), B64.encode(key))
    }
}

/// One witness's cosignature on one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    /// The witness's key name.
    pub name: String,
    pub key_id: [u8; 4],
    /// When the witness signed, seconds since the Unix epoch.
    pub time: u64,
    pub signature: [u8; 64],
}

/// The bytes a `cosignature/v1` signature covers: the header, the time, then the note's body.
pub fn signed_message(time: u64, body: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{body}").into_bytes()
}

impl Cosignature {
    /// `key`, as the witness `name`, cosigns the checkpoint whose note body is `body` at `time`.
    pub fn sign(name: &str, key: &CheckpointKey, body: &str, time: u64) -> Self {
        let witness = Witness {
            name: name.to_owned(),
            public: key.public(),
        };
        Self {
            name: name.to_owned(),
            key_id: witness.key_id(),
            time,
            signature: key.sign(&signed_message(time, body)),
        }
    }

    /// The note signature line, without its newline.
    pub fn line(&self) -> String {
        let mut sig = Vec::with_capacity(76);
        sig.extend_from_slice(&self.key_id);
        sig.extend_from_slice(&self.time.to_be_bytes());
        sig.extend_from_slice(&self.signature);
        format!("\u{2014} {} {}", self.name, B64.encode(sig))
    }

    /// Reads one note signature line as a cosignature (76 bytes of signature: key id, time,
    /// Ed25519 signature). Other signature lines (the gateway's own, 68 bytes) are not one.
    pub fn parse_line(line: &str) -> Result<Self, CosignatureError> {
        let rest = line
            .trim_end_matches('\n')
            .strip_prefix("\u{2014} ")
            .ok_or(CosignatureError::MalformedLine)?;
        let (name, sig) = rest.split_once(' ').ok_or(CosignatureError::MalformedLine)?;
        let sig = B64.decode(sig).map_err(|_| CosignatureError::MalformedLine)?;
        if !is_key_name(name) || sig.len() != 76 {
            return Err(CosignatureError::MalformedLine);
        }
        let mut key_id = [0; 4];
        key_id.copy_from_slice(&sig[..4]);
        let mut time = [0; 8];
        time.copy_from_slice(&sig[4..12]);
        let mut signature = [0; 64];
        signature.copy_from_slice(&sig[12..]);
        let time = u64::from_be_bytes(time);
        if time > i64::MAX as u64 {
            return Err(CosignatureError::MalformedLine);
        }
        Ok(Self {
            name: name.to_owned(),
            key_id,
            time,
            signature,
        })
    }

    /// Made by `witness` (name and key id) over the note body `body`, verified strictly.
    pub fn verifies(&self, witness: &Witness, body: &str) -> bool {
        self.name == witness.name
            && self.key_id == witness.key_id()
            && verify_signature(
                witness.public.as_bytes(),
                &signed_message(self.time, body),
                &self.signature,
            )
    }
}

/// The cosignature `witness` made on the signed note `note`, if one of its lines is one that
/// verifies over the note's body.
pub fn find(note: &str, witness: &Witness) -> Option<Cosignature> {
    let (head, signatures) = note.split_once("\n\n")?;
    let body = format!("{head}\n");
    signatures
        .lines()
        .filter_map(|line| Cosignature::parse_line(line).ok())
        .find(|c| c.verifies(witness, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real checkpoint of the `arche2025h1.staging.ct.transparency.dev` log with the cosignature
    /// of the public witness `remora.n621.de`, whose verifier key also appears in the tests of
    /// transparency-dev/formats (`note/note_cosigv1_test.go`). Made by other people's code (Go),
    /// it pins the key id, the signed message and the line's layout.
    const REAL_NOTE: &str = "arche2025h1.staging.ct.transparency.dev\n1432088532\nU7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=\n\n\
\u{2014} arche2025h1.staging.ct.transparency.dev zTM8sQAAAZ5W0WdjBAMARjBEAiBjW5IQf9pvsYLfQFX6hoGREPMHbdQ3urbllzalApkptQIgIpwtEroeW2BXaHAI4kJXFbon5Ch9MNL5zRNZ55lvGt0=\n\
\u{2014} arche2025h1.staging.ct.transparency.dev ui8GwCF1+kWqZrxGdhj4aX3gcw7XUlXQQabg/27lefwhUkzbC3NygNI75MdhL1bfTW9g8Ei59RA23oHP7Ry1k3ZFWwQ=\n\
\u{2014} remora.n621.de 2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIobWX9sXTynk5XeU/zZ0WBxtqB0DrAWfBw==\n";
    const REMORA: &str = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";

    #[test]
    fn a_published_cosignature_verifies_and_nothing_else_does() {
        let witness = Witness::parse(REMORA).unwrap();
        assert_eq!(witness.vkey(), REMORA, "the key id is derived as the spec says");
        let c = find(REAL_NOTE, &witness).expect("the published cosignature verifies");
        assert_eq!(hex::encode(c.key_id), "da77ade7");
        assert!(REAL_NOTE.contains(&c.line()), "the line round-trips");
        // Any change to the body, or another key, and it no longer does.
        assert_eq!(find(&REAL_NOTE.replace("1432088532", "1432088533"), &witness), None);
        let other = Witness::new("remora.n621.de", CheckpointKey::from_seed(&[1; 32]).public()).unwrap();
        assert_eq!(find(REAL_NOTE, &other), None);
        let renamed = Witness::new("remora.example", witness.public).unwrap();
        assert_eq!(find(REAL_NOTE, &renamed), None, "the name is part of the key id");
    }

    #[test]
    fn round_trip_and_tamper() {
        let key = CheckpointKey::from_seed(&[3; 32]);
        let witness = Witness::new("witness.example/w1", key.public()).unwrap();
        assert_eq!(Witness::parse(&witness.vkey()), Ok(witness.clone()));
        let body = "isa-gateway\n6\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n";
        let c = Cosignature::sign("witness.example/w1", &key, body, 1_800_000_000);
        assert_eq!(Cosignature::parse_line(&c.line()), Ok(c.clone()));
        assert!(c.verifies(&witness, body));
        assert!(!c.verifies(&witness, &body.replace("\n6\n", "\n7\n")));
        let mut later = c.clone();
        later.time += 1;
        assert!(!later.verifies(&witness, body), "the time is signed");
        let note = format!("{body}\n\u{2014} isa-gateway AAAA\n{}\n", c.line());
        assert_eq!(find(&note, &witness), Some(c));
    }

    #[test]
    fn malformed_and_weak_keys_are_refused() {
        let id = format!("ed25519:01{}", "00".repeat(31));
        let mut weak = vec![ED25519_COSIGNATURE_V1, 1];
        weak.extend_from_slice(&[0; 31]);
        let weak = format!("w+00000000+{}", B64.encode(&weak));
        for (vkey, why) in [
            ("", CosignatureError::MalformedKey),
            ("w+00000000", CosignatureError::MalformedKey),
            (id.as_str(), CosignatureError::MalformedKey),
            (
                "remora.n621.de+da77ade7+AevN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
                CosignatureError::MalformedKey,
            ),
            (
                "remora.n621.de+00000000+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
                CosignatureError::WrongKeyId,
            ),
            (weak.as_str(), CosignatureError::WeakKey),
        ] {
            assert_eq!(Witness::parse(vkey), Err(why), "{vkey}");
        }
        for line in ["", "\u{2014} w", "\u{2014} w !!!", "- w AAAA", "\u{2014} w AAAA"] {
            assert_eq!(
                Cosignature::parse_line(line),
                Err(CosignatureError::MalformedLine),
                "{line}"
            );
        }
    }
}
