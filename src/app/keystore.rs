//! Where keys come from: files under `keys_dir` (mode 0600) and the environment.
//!
//! Each agreement that tokenises has its own 256-bit keys, versioned: new transfers use the
//! highest version; older versions stay loaded so earlier tokens can be re-derived for checks.
//! A separate gateway-wide index key makes the blind subject index. Keys live in files (mode
//! 0600) under `keys_dir`, or come from the environment:
//!
//! ```text
//! <keys_dir>/agreements/<agreement-id>/v<N>.key    64 hex characters
//! <keys_dir>/index/v1.key                          references (typed ids) and older entries
//! <keys_dir>/index/subject/<scope>.key              the subject index: "<first year> <hex>"
//!                                                   (or ISA_GATEWAY_SUBJECT_INDEX_DIR/<scope>.key)
//! ISA_GATEWAY_KEY_<AGREEMENT_ID>_V<N>=<hex>         (agreement id upper-cased, '-' as '_')
//! ISA_GATEWAY_KEY_<AGREEMENT_ID>_V<N>_FILE=<path>
//! ISA_GATEWAY_INDEX_KEY=<hex>  or  ISA_GATEWAY_INDEX_KEY_FILE=<path>
//! ```
//!
//! Subject-index keys are per agreement (scope) and year, derived forward from one seed per scope
//! (`policy::keys::SubjectKeys`). Retention (`crate::app::retention`) destroys a year's key by
//! replacing the seed with the next year's, so seeds live in files the gateway can rewrite, not
//! in the environment. Gateways sharing a database share these files, as they share the others.
//!
//! No type here prints key material: `Debug` shows ids and versions only, and errors never
//! carry file contents.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::ledger::signing::CheckpointKey;
use crate::policy::keys::{AgreementKey, IndexKey, KeyRing};

mod subject;
pub use subject::SubjectSeedFile;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key {0}: {1}")]
    Read(String, std::io::ErrorKind),
    #[error("{0}")]
    NotPrivate(String),
    #[error("key {0} is not 64 hexadecimal characters (256 bits)")]
    Malformed(String),
    #[error("cannot write key {0}: {1}")]
    Write(PathBuf, std::io::ErrorKind),
    #[error("agreement {0} already has a key; use `keys rotate` to add a version")]
    Exists(String),
    #[error("{0} already exists; it is kept, not replaced (others pin its public half)")]
    FileExists(PathBuf),
    #[error("agreement {0} has no key yet; use `keys new` first")]
    NoKey(String),
    #[error("no randomness available")]
    Random,
    #[error("missing keys: {}", .0.join(", "))]
    Missing(Vec<String>),
}

fn parse_hex(name: &str, text: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), out.as_mut()).map_err(|_| KeyError::Malformed(name.to_owned()))?;
    Ok(out)
}

/// Keys on disk and in the environment.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

fn env_prefix(agreement_id: &str) -> String {
    format!(
        "ISA_GATEWAY_KEY_{}_V",
        agreement_id.to_ascii_uppercase().replace('-', "_")
    )
}

fn env_name(agreement_id: &str, version: u32) -> String {
    format!("{}{version}", env_prefix(agreement_id))
}

fn random_key() -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let mut k = Zeroizing::new([0u8; 32]);
    getrandom::fill(k.as_mut()).map_err(|_| KeyError::Random)?;
    Ok(k)
}

impl KeyStore {
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
    }

    fn agreement_dir(&self, id: &str) -> PathBuf {
        self.dir.join("agreements").join(id)
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index").join("v1.key")
    }

    /// Versions on disk for an agreement, ascending.
    fn disk_versions(&self, id: &str) -> Vec<u32> {
        let mut v: Vec<u32> = std::fs::read_dir(self.agreement_dir(id))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix('v')?.strip_suffix(".key")?.parse().ok()
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Versions in the environment for an agreement.
    fn env_versions(id: &str) -> Vec<u32> {
        let prefix = env_prefix(id);
        std::env::vars()
            .filter_map(|(k, _)| {
                let rest = k.strip_prefix(&prefix)?;
                rest.strip_suffix("_FILE").unwrap_or(rest).parse().ok()
            })
            .collect()
    }

    fn read_material(&self, id: &str, version: u32) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let name = env_name(id, version);
        if let Ok(hex) = std::env::var(&name) {
            return parse_hex(&name, &Zeroizing::new(hex));
        }
        if let Ok(path) = std::env::var(format!("{name}_FILE")) {
            return read_file(Path::new(&path));
        }
        read_file(&self.agreement_dir(id).join(format!("v{version}.key")))
    }

    /// Loads every version of every named agreement's key, and the index key. With
    /// `create_missing` (development), missing keys are made and their names returned;
    /// otherwise anything missing is an error naming it.
    pub fn load(&self, agreement_ids: &[&str], create_missing: bool) -> Result<(KeyRing, Vec<String>), KeyError> {
        let mut ring = KeyRing::default();
        let mut created = Vec::new();
        let mut missing = Vec::new();
        for id in agreement_ids {
            let mut versions = self.disk_versions(id);
            versions.extend(Self::env_versions(id));
            versions.sort_unstable();
            versions.dedup();
            if versions.is_empty() {
                if create_missing {
                    versions.push(self.new_key(id)?);
                    created.push(format!("agreement/{id}/v1"));
                } else {
                    missing.push(format!("agreement/{id} (run `isa-gateway keys new --agreement {id}`)"));
                    continue;
                }
            }
            for v in versions {
                let material = self.read_material(id, v)?;
                ring.insert(AgreementKey::from_bytes(id, v, &material));
            }
        }
        let index = if let Some(k) = self.index_material()? {
            Some(k)
        } else if create_missing {
            let k = random_key()?;
            write_key(&self.index_path(), &k)?;
            created.push("index/v1".to_owned());
            Some(k)
        } else {
            missing.push("index/v1 (run `isa-gateway keys new --index`)".to_owned());
            None
        };
        if let Some(k) = index {
            ring.set_index(IndexKey::from_bytes(&k));
        }
        if missing.is_empty() {
            Ok((ring, created))
        } else {
            Err(KeyError::Missing(missing))
        }
    }

    /// The gateway-wide index key's material: `ISA_GATEWAY_INDEX_KEY`, `…_FILE`, or
    /// `<keys_dir>/index/v1.key`; `None` if none is given.
    fn index_material(&self) -> Result<Option<Zeroizing<[u8; 32]>>, KeyError> {
        if let Ok(hex) = std::env::var("ISA_GATEWAY_INDEX_KEY") {
            parse_hex("ISA_GATEWAY_INDEX_KEY", &Zeroizing::new(hex)).map(Some)
        } else if let Ok(path) = std::env::var("ISA_GATEWAY_INDEX_KEY_FILE") {
            read_file(Path::new(&path)).map(Some)
        } else if self.index_path().is_file() {
            read_file(&self.index_path()).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Makes version 1 of an agreement's key. Refuses if one exists.
    pub fn new_key(&self, agreement_id: &str) -> Result<u32, KeyError> {
        if !self.disk_versions(agreement_id).is_empty() {
            return Err(KeyError::Exists(agreement_id.to_owned()));
        }
        write_key(&self.agreement_dir(agreement_id).join("v1.key"), &*random_key()?)?;
        Ok(1)
    }

    /// Adds the next version; new transfers use it, older versions stay.
    pub fn rotate(&self, agreement_id: &str) -> Result<u32, KeyError> {
        let next = self
            .disk_versions(agreement_id)
            .last()
            .copied()
            .ok_or_else(|| KeyError::NoKey(agreement_id.to_owned()))?
            + 1;
        write_key(
            &self.agreement_dir(agreement_id).join(format!("v{next}.key")),
            &*random_key()?,
        )?;
        Ok(next)
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.dir.join("signing").join("checkpoint-v1.key")
    }

    /// The checkpoint signing key: `ISA_GATEWAY_CHECKPOINT_KEY` (hex seed), `…_FILE`, or
    /// `<keys_dir>/signing/checkpoint-v1.key`. With `create_missing` (development) it is made.
    pub fn checkpoint_key(&self, create_missing: bool) -> Result<(CheckpointKey, bool), KeyError> {
        let seed = if let Ok(hex) = std::env::var("ISA_GATEWAY_CHECKPOINT_KEY") {
            parse_hex("ISA_GATEWAY_CHECKPOINT_KEY", &Zeroizing::new(hex))?
        } else if let Ok(path) = std::env::var("ISA_GATEWAY_CHECKPOINT_KEY_FILE") {
            read_file(Path::new(&path))?
        } else if self.checkpoint_path().is_file() {
            read_file(&self.checkpoint_path())?
        } else if create_missing {
            let k = random_key()?;
            write_key(&self.checkpoint_path(), &k)?;
            return Ok((CheckpointKey::from_seed(&k), true));
        } else {
            return Err(KeyError::Missing(vec![
                "signing/checkpoint-v1 (run `isa-gateway keys new --checkpoint`)".into(),
            ]));
        };
        Ok((CheckpointKey::from_seed(&seed), false))
    }

    /// Makes the checkpoint signing key. Refuses if it exists: auditors pin its public half.
    pub fn new_checkpoint_key(&self) -> Result<(), KeyError> {
        if self.checkpoint_path().exists() {
            return Err(KeyError::Exists("checkpoint".into()));
        }
        write_key(&self.checkpoint_path(), &*random_key()?)
    }

    /// Makes the index key. Refuses if it exists: a new one would orphan the index.
    pub fn new_index_key(&self) -> Result<(), KeyError> {
        if self.index_path().exists() {
            return Err(KeyError::Exists("index".into()));
        }
        write_key(&self.index_path(), &*random_key()?)
    }
}

/// Where a witness keeps its signing key by default: `<state>/witness.key`.
pub fn witness_key_path(state: &Path) -> PathBuf {
    state.join("witness.key")
}

/// A witness's Ed25519 signing key (`isa-gateway witness`): `ISA_GATEWAY_WITNESS_KEY` (hex seed),
/// `ISA_GATEWAY_WITNESS_KEY_FILE`, or `<state>/witness.key` (0600, refused if others can read it).
pub fn witness_key(state: &Path) -> Result<CheckpointKey, KeyError> {
    let seed = if let Ok(hex) = std::env::var("ISA_GATEWAY_WITNESS_KEY") {
        parse_hex("ISA_GATEWAY_WITNESS_KEY", &Zeroizing::new(hex))?
    } else if let Ok(path) = std::env::var("ISA_GATEWAY_WITNESS_KEY_FILE") {
        read_file(Path::new(&path))?
    } else if witness_key_path(state).is_file() {
        read_file(&witness_key_path(state))?
    } else {
        return Err(KeyError::Missing(vec![format!(
            "{} (run `isa-gateway witness init`)",
            witness_key_path(state).display()
        )]));
    };
    Ok(CheckpointKey::from_seed(&seed))
}

/// Makes a witness's signing key at `<state>/witness.key` (0600). Refuses if it exists: the
/// gateway and auditors pin its public half.
pub fn new_witness_key(state: &Path) -> Result<CheckpointKey, KeyError> {
    let path = witness_key_path(state);
    if path.exists() {
        return Err(KeyError::FileExists(path));
    }
    let seed = random_key()?;
    write_key(&path, &seed)?;
    Ok(CheckpointKey::from_seed(&seed))
}

fn read_file(path: &Path) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let name = path.display().to_string();
    crate::platform::fs::ensure_private(path).map_err(KeyError::NotPrivate)?;
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| KeyError::Read(name.clone(), e.kind()))?);
    parse_hex(&name, &text)
}

fn write_key(path: &Path, key: &[u8; 32]) -> Result<(), KeyError> {
    let text = Zeroizing::new(format!("{}\n", hex::encode(key)));
    crate::platform::pki::write_file(path, text.as_bytes(), true)
        .map_err(|e| KeyError::Write(path.to_path_buf(), e.kind()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure signature, not ours
    fn new_rotate_and_load() {
        // Holds the Jail lock: another test sets key variables in the environment.
        figment::Jail::expect_with(|_| {
            let dir = tempfile::tempdir().unwrap();
            let store = KeyStore::new(dir.path());
            assert!(matches!(store.load(&["gp"], false), Err(KeyError::Missing(m)) if m.len() == 2));
            assert_eq!(store.new_key("gp").unwrap(), 1);
            assert!(matches!(store.new_key("gp"), Err(KeyError::Exists(_))));
            assert_eq!(store.rotate("gp").unwrap(), 2);
            store.new_index_key().unwrap();
            let (ring, created) = store.load(&["gp"], false).unwrap();
            assert!(created.is_empty());
            assert_eq!(ring.current("gp").unwrap().version(), 2);
            assert_eq!(ring.versions("gp").len(), 2);
            let mode = std::fs::metadata(dir.path().join("agreements/gp/v2.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure signature, not ours
    fn development_creates_missing_keys() {
        // Holds the Jail lock: another test sets key variables in the environment.
        figment::Jail::expect_with(|_| {
            let dir = tempfile::tempdir().unwrap();
            let (ring, created) = KeyStore::new(dir.path()).load(&["gp"], true).unwrap();
            assert_eq!(created, ["agreement/gp/v1", "index/v1"]);
            assert!(ring.current("gp").is_some() && ring.index().is_some());
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closure signature, not ours
    fn keys_come_from_the_environment_too() {
        let dir = tempfile::tempdir().unwrap();
        let index_file = dir.path().join("index-from-secret-store");
        crate::platform::fs::write_file(&index_file, format!("{}\n", "cd".repeat(32)).as_bytes(), true).unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("ISA_GATEWAY_KEY_NVTT_NHSE_DATASET_V3", "ab".repeat(32));
            jail.set_env("ISA_GATEWAY_INDEX_KEY_FILE", index_file.display().to_string());
            let store = KeyStore::new(&dir.path().join("empty"));
            let (ring, created) = store.load(&["nvtt-nhse-dataset"], false).unwrap();
            assert!(created.is_empty());
            let current = ring.current("nvtt-nhse-dataset").unwrap();
            assert_eq!(current.version(), 3);
            assert_eq!(
                current.token("x"),
                AgreementKey::from_bytes("nvtt-nhse-dataset", 3, &[0xab; 32]).token("x")
            );
            assert!(ring.index().is_some());
            jail.set_env("ISA_GATEWAY_KEY_NVTT_NHSE_DATASET_V3", "not hex");
            let err = store.load(&["nvtt-nhse-dataset"], false).unwrap_err().to_string();
            assert!(
                err.contains("ISA_GATEWAY_KEY_NVTT_NHSE_DATASET_V3") && !err.contains("not hex"),
                "{err}"
            );
            Ok(())
        });
    }
}
