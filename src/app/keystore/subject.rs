//! The subject-index seeds on disk: one file per scope (`<scope>.key`, "<first year> <hex>"), in
//! `ISA_GATEWAY_SUBJECT_INDEX_DIR` or `<keys_dir>/index/subject`, under one folder lock. Made by
//! `keys new --subject` (or a development start), rewritten in place by retention.

use std::path::PathBuf;

use zeroize::Zeroizing;

use super::{KeyError, KeyStore, parse_hex, random_key};
use crate::policy::keys::{IndexKey, SubjectKeys, subject_key_material};

/// One scope's subject-index seed as kept on disk: the key of its earliest live year.
pub struct SubjectSeedFile {
    pub scope: String,
    pub first_year: i16,
    pub material: Zeroizing<[u8; 32]>,
}

impl SubjectSeedFile {
    /// This scope's key for `year`; `None` before the seed's first year (destroyed) or too far on.
    pub fn key(&self, year: i16) -> Option<IndexKey> {
        subject_key_material(self.first_year, &self.material, year).map(|m| IndexKey::from_bytes(&m))
    }
}

/// The years a seed may name.
const SEED_YEARS: std::ops::RangeInclusive<i16> = 1970..=9999;

/// A seed file's text: `<first year> <64 hex>` and a newline, always 70 bytes.
fn seed_text(first_year: i16, material: &[u8; 32]) -> Zeroizing<String> {
    Zeroizing::new(format!("{first_year:04} {}\n", &*Zeroizing::new(hex::encode(material))))
}

impl KeyStore {
    /// `ISA_GATEWAY_SUBJECT_INDEX_DIR`, or `<keys_dir>/index/subject`.
    pub fn subject_dir(&self) -> PathBuf {
        std::env::var_os("ISA_GATEWAY_SUBJECT_INDEX_DIR")
            .map_or_else(|| self.dir.join("index").join("subject"), PathBuf::from)
    }

    fn subject_path(&self, scope: &str) -> Result<PathBuf, KeyError> {
        // Scopes are agreement ids (checked at load: lower-case letters, digits, '-').
        if scope.is_empty()
            || !scope
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(KeyError::Malformed(format!("subject-index scope {scope:?}")));
        }
        Ok(self.subject_dir().join(format!("{scope}.key")))
    }

    /// The folder's lock: shared to read seeds, exclusive to make or rewrite one, so a reader
    /// never sees a seed half rewritten and two writers (a gateway's hourly run and the CLI, or
    /// two gateways) never both rewrite from the same old seed.
    fn lock_subject_dir(&self, exclusive: bool) -> Result<std::fs::File, KeyError> {
        let dir = self.subject_dir();
        let lock = dir.join(".lock");
        let fail = |e: std::io::Error| KeyError::Write(lock.clone(), e.kind());
        if exclusive && !dir.exists() {
            // Only the gateway's user may list the seeds (0700), as the files are 0600.
            std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
                .create(&dir)
                .map_err(fail)?;
            if let Some(parent) = dir.parent() {
                std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(fail)?;
            }
        }
        let file = if exclusive {
            std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false),
                0o600,
            )
            .open(&lock)
            .map_err(fail)?
        } else {
            std::fs::File::open(&lock).map_err(|_| {
                KeyError::Missing(vec![format!(
                    "the subject-index seeds in {} (set ISA_GATEWAY_SUBJECT_INDEX_DIR as the gateway has it, or run \
                     `isa-gateway keys new --subject`)",
                    dir.display()
                )])
            })?
        };
        if exclusive { file.lock() } else { file.lock_shared() }.map_err(fail)?;
        Ok(file)
    }

    /// Every subject-index seed on disk, read now, in scope order. A folder that is missing or
    /// cannot be read is an error, never an empty answer (subject access must not say "nothing"
    /// because it looked in the wrong place).
    pub fn subject_seeds(&self) -> Result<Vec<SubjectSeedFile>, KeyError> {
        let _lock = self.lock_subject_dir(false)?;
        self.subject_seeds_locked()
    }

    fn subject_seeds_locked(&self) -> Result<Vec<SubjectSeedFile>, KeyError> {
        let dir = self.subject_dir();
        let entries = std::fs::read_dir(&dir).map_err(|e| KeyError::Read(dir.display().to_string(), e.kind()))?;
        let mut scopes = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| KeyError::Read(dir.display().to_string(), e.kind()))?;
            if let Some(scope) = entry.file_name().to_str().and_then(|n| n.strip_suffix(".key")) {
                scopes.push(scope.to_owned());
            }
        }
        scopes.sort();
        scopes.into_iter().map(|scope| self.read_subject_seed(&scope)).collect()
    }

    fn read_subject_seed(&self, scope: &str) -> Result<SubjectSeedFile, KeyError> {
        let path = self.subject_path(scope)?;
        let name = path.display().to_string();
        crate::platform::fs::ensure_private(&path).map_err(KeyError::NotPrivate)?;
        let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| KeyError::Read(name.clone(), e.kind()))?);
        let (year, hex) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| KeyError::Malformed(name.clone()))?;
        let first_year = year
            .parse()
            .ok()
            .filter(|y| SEED_YEARS.contains(y))
            .ok_or_else(|| KeyError::Malformed(name.clone()))?;
        Ok(SubjectSeedFile {
            scope: scope.to_owned(),
            first_year,
            material: parse_hex(&name, hex)?,
        })
    }

    /// Rewrites an existing seed in place (one short write of the same length, synced), so the
    /// old year's key is overwritten rather than left in a freed block. Under the exclusive lock.
    fn rewrite_subject_seed(&self, scope: &str, first_year: i16, material: &[u8; 32]) -> Result<(), KeyError> {
        use std::io::Write;
        let path = self.subject_path(scope)?;
        let text = seed_text(first_year, material);
        let fail = |e: std::io::Error| KeyError::Write(path.clone(), e.kind());
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).map_err(fail)?;
        f.write_all(text.as_bytes()).map_err(fail)?;
        f.set_len(text.len() as u64).map_err(fail)?;
        f.sync_all().map_err(fail)
    }

    /// Makes a seed that does not exist (never replaces one another process made meanwhile), its
    /// file and folder entry synced. Under the exclusive lock.
    fn create_subject_seed(&self, scope: &str, first_year: i16) -> Result<bool, KeyError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.subject_path(scope)?;
        let fail = |e: std::io::Error| KeyError::Write(path.clone(), e.kind());
        let mut f = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(fail(e)),
        };
        let text = seed_text(first_year, &*random_key()?);
        f.write_all(text.as_bytes()).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        std::fs::File::open(self.subject_dir())
            .and_then(|d| d.sync_all())
            .map_err(fail)?;
        Ok(true)
    }

    /// Loads every subject-index seed on disk into `keys` (seeds of scopes no longer configured
    /// too: their entries stay findable until retention destroys them), after checking each of
    /// `scopes` has one: a missing one is made (its first year `year`) with `create_missing`, and
    /// its name returned; otherwise it is an error naming it. Loading is one way: a seed older
    /// than the one `keys` holds is ignored.
    pub fn load_subject_keys(
        &self,
        keys: &SubjectKeys,
        scopes: &[&str],
        year: i16,
        create_missing: bool,
    ) -> Result<Vec<String>, KeyError> {
        let created = if create_missing {
            self.new_subject_keys(scopes, year)?
        } else {
            let mut missing = Vec::new();
            for scope in scopes {
                if !self.subject_path(scope)?.exists() {
                    missing.push(format!(
                        "index/subject/{scope} (run `isa-gateway keys new --subject` once, on one gateway, and give \
                         every gateway sharing its database a copy of that folder)"
                    ));
                }
            }
            if !missing.is_empty() {
                return Err(KeyError::Missing(missing));
            }
            Vec::new()
        };
        for seed in self.subject_seeds()? {
            keys.set(&seed.scope, seed.first_year, &seed.material);
        }
        Ok(created)
    }

    /// Makes the seeds of `scopes` that are missing, starting at `year`; returns their names.
    pub fn new_subject_keys(&self, scopes: &[&str], year: i16) -> Result<Vec<String>, KeyError> {
        let _lock = self.lock_subject_dir(true)?;
        let mut created = Vec::new();
        for scope in scopes {
            if self.create_subject_seed(scope, year)? {
                created.push(format!("index/subject/{scope}"));
            }
        }
        Ok(created)
    }

    /// Destroys `scope`'s keys for every year before `to_year`, under the folder's exclusive
    /// lock: `record` is called first (the ledger entry saying so) once everything that can be
    /// checked beforehand is (the seed is there, older, derivable, and its file opens for
    /// writing), then the seed is replaced, in place, by `to_year`'s key. `None` if those years
    /// were already destroyed (or the scope has none); nothing is recorded then. Copies elsewhere
    /// (backups of the keys folder) go by their own retention.
    pub async fn destroy_subject_keys_before<T, E, F>(
        &self,
        scope: &str,
        to_year: i16,
        record: F,
    ) -> Result<Option<T>, E>
    where
        F: std::future::Future<Output = Result<T, E>>,
        E: From<KeyError>,
    {
        let _lock = self.lock_subject_dir(true)?;
        let path = self.subject_path(scope)?;
        if !path.exists() {
            return Ok(None);
        }
        let seed = self.read_subject_seed(scope)?;
        if seed.first_year >= to_year {
            return Ok(None);
        }
        let material = subject_key_material(seed.first_year, &seed.material, to_year)
            .ok_or_else(|| KeyError::Malformed(format!("subject-index scope {scope}: year {to_year}")))?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| KeyError::Write(path.clone(), e.kind()))?;
        let recorded = record.await?;
        self.rewrite_subject_seed(scope, to_year, &material)?;
        Ok(Some(recorded))
    }

    /// The person's keyed hashes under every live key of `seeds` (read from disk at the time of
    /// asking: a key destroyed by `isa-gateway retention` stops answering at once, whatever a
    /// running gateway holds), for each year up to `through_year`; and under the gateway-wide
    /// index key, which indexed entries made before keys per year.
    pub fn subject_hashes(
        &self,
        seeds: &[SubjectSeedFile],
        nhs_number: &crate::policy::nhs_number::NhsNumber,
        through_year: i16,
    ) -> Result<Vec<String>, KeyError> {
        let mut hashes: Vec<String> = seeds
            .iter()
            .flat_map(|seed| (seed.first_year..=through_year).filter_map(|year| seed.key(year)))
            .map(|key| key.index(nhs_number))
            .collect();
        if let Some(k) = self.index_material()? {
            hashes.push(IndexKey::from_bytes(&k).index(nhs_number));
        }
        Ok(hashes)
    }
}
