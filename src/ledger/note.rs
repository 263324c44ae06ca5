//! Checkpoints as C2SP signed notes (`tlog-checkpoint`, `signed-note`): the form a checkpoint takes
//! outside the database, readable by the transparency-log tooling others already have.
//!
//! ```text
//! <origin>
//! <tree size>
//! <root hash, standard base64>
//! isa-gateway-agreements <digest of the agreements' head lines, standard base64>
//!
//! — <key name> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>
//! ```
//!
//! The fourth line is a `tlog-checkpoint` extension line, on version 2 checkpoints (see
//! [`super::heads`]); witnesses cosign it with the rest, so the per-agreement heads a bundle's
//! completeness rests on are fixed for good once witnessed. No other extension line is accepted.
//! The signature covers the note's text: its lines, each ending in a newline. The key id is
//! the first four bytes of SHA-256(key name || 0x0A || 0x01 || public key), 0x01 naming Ed25519.

use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use super::Hash;
use super::checkpoint::verify_signature;
use super::signing::CheckpointKey;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The key id a note signature names.
pub fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, 0x01]);
    h.update(public.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The extension line's keyword.
const AGREEMENTS: &str = "isa-gateway-agreements";

/// What a checkpoint note states: the tree's size and root, and (version 2) the digest of the
/// agreements' head lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tree {
    pub tree_size: u64,
    pub root: Hash,
    pub agreements: Option<Hash>,
}

/// The note's body: origin, tree size, root and the agreements' extension line if any, each line
/// ending in a newline (what the gateway signs, and what a witness cosigns).
pub fn body(origin: &str, tree: &Tree) -> String {
    let mut text = format!("{origin}\n{}\n{}\n", tree.tree_size, B64.encode(tree.root));
    if let Some(d) = &tree.agreements {
        text.push_str(&format!("{AGREEMENTS} {}\n", B64.encode(d)));
    }
    text
}

/// A checkpoint as a signed note, signed by `key` under the key name `origin`.
pub fn sign(origin: &str, tree: &Tree, key: &CheckpointKey) -> String {
    let text = body(origin, tree);
    let mut sig = key_id(origin, &key.public()).to_vec();
    sig.extend_from_slice(&key.sign(text.as_bytes()));
    format!("{text}\n\u{2014} {origin} {}\n", B64.encode(sig))
}

/// Why a note was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("not a checkpoint note (origin, tree size, base64 root, a blank line, signatures)")]
    Malformed,
    #[error("the note is for origin {0:?}, not this ledger's")]
    OtherOrigin(String),
    #[error("no signature by the pinned checkpoint key verifies")]
    NotSigned,
}

/// Reads a note and checks that `public`, under the key name `origin`, signed it. Other
/// signatures (a witness's cosignature) are allowed beside it and ignored here.
pub fn verify(text: &str, origin: &str, public: &VerifyingKey) -> Result<Tree, NoteError> {
    let (head, signatures) = text.split_once("\n\n").ok_or(NoteError::Malformed)?;
    let mut lines = head.split('\n');
    let (Some(found), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(NoteError::Malformed);
    };
    let agreements = match (lines.next(), lines.next()) {
        (None, _) => None,
        (Some(line), None) => Some(
            line.strip_prefix(AGREEMENTS)
                .and_then(|l| l.strip_prefix(' '))
                .and_then(|d| B64.decode(d).ok())
                .and_then(|d| d.try_into().ok())
                .ok_or(NoteError::Malformed)?,
        ),
        (Some(_), Some(_)) => return Err(NoteError::Malformed),
    };
    if found != origin {
        return Err(NoteError::OtherOrigin(found.chars().take(100).collect()));
    }
    let tree_size: u64 = size.parse().map_err(|_| NoteError::Malformed)?;
    let root: Hash = B64
        .decode(root)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or(NoteError::Malformed)?;
    let signed = format!("{head}\n");
    let id = key_id(origin, public);
    let ok = signatures.lines().any(|line| {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return false;
        };
        let Some((name, sig)) = rest.split_once(' ') else {
            return false;
        };
        let Ok(sig) = B64.decode(sig) else { return false };
        name == origin
            && sig.len() == 68
            && sig[..4] == id
            && verify_signature(public.as_bytes(), signed.as_bytes(), &sig[4..])
    });
    if ok {
        Ok(Tree {
            tree_size,
            root,
            agreements,
        })
    } else {
        Err(NoteError::NotSigned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_verifies_under_its_key_and_origin_only() {
        let key = CheckpointKey::from_seed(&[5; 32]);
        let tree = Tree {
            tree_size: 42,
            root: [7; 32],
            agreements: None,
        };
        let note = sign("isa-gateway.example/ledger", &tree, &key);
        assert!(
            note.starts_with(
                "isa-gateway.example/ledger\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n\u{2014} "
            )
        );
        assert_eq!(verify(&note, "isa-gateway.example/ledger", &key.public()), Ok(tree));
        // With the agreements' extension line: signed with the rest, and read back.
        let v2 = Tree {
            agreements: Some([9; 32]),
            ..tree
        };
        let note2 = sign("isa-gateway.example/ledger", &v2, &key);
        assert!(note2.contains("\nisa-gateway-agreements CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n\n"));
        assert_eq!(verify(&note2, "isa-gateway.example/ledger", &key.public()), Ok(v2));
        let dropped = note2.replace(
            "isa-gateway-agreements CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n",
            "",
        );
        assert_eq!(
            verify(&dropped, "isa-gateway.example/ledger", &key.public()),
            Err(NoteError::NotSigned),
            "the extension line is signed"
        );
        let unknown = note.replacen("=\n\n", "=\nsomething else\n\n", 1);
        assert_eq!(
            verify(&unknown, "isa-gateway.example/ledger", &key.public()),
            Err(NoteError::Malformed)
        );
        let other = CheckpointKey::from_seed(&[6; 32]);
        assert_eq!(
            verify(&note, "isa-gateway.example/ledger", &other.public()),
            Err(NoteError::NotSigned)
        );
        assert!(matches!(
            verify(&note, "elsewhere", &key.public()),
            Err(NoteError::OtherOrigin(_))
        ));
        let forged = note.replace("\n42\n", "\n43\n");
        assert_eq!(
            verify(&forged, "isa-gateway.example/ledger", &key.public()),
            Err(NoteError::NotSigned)
        );
    }
}
