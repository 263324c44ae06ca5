//! The catalogue from disk: message schemas, agreements and their keys, read here and checked by
//! the policy core (which never reads a file itself).

use std::path::{Path, PathBuf};

use crate::app::config::{Config, Profile};
use crate::app::keystore::{KeyError, KeyStore};
use crate::policy::agreement::{Agreements, Context, Problem, SourceFile};
use crate::policy::keys::KeyRing;
use crate::policy::schemas::MessageSchemas;

/// Every file in `dir` with the extension `ext`, in name order, with a problem for each one that
/// cannot be read (and for the folder, if it cannot be listed).
fn read_files(dir: &Path, ext: &str) -> (Vec<SourceFile>, Vec<Problem>) {
    let problem = |file: PathBuf, message: String| Problem {
        file,
        location: None,
        message,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return (
                Vec::new(),
                vec![problem(dir.to_path_buf(), format!("cannot read: {e}"))],
            );
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    paths.sort();
    let (mut files, mut problems) = (Vec::new(), Vec::new());
    for path in paths {
        match std::fs::read(&path) {
            Ok(bytes) => files.push(SourceFile { path, bytes }),
            Err(e) => problems.push(problem(path, format!("cannot read: {e}"))),
        }
    }
    (files, problems)
}

/// Compiles every `schemas_dir/messages/*.json` (message types; the file stem is the name) and
/// every `schemas_dir/outbound/*.json` (what agreements may promise recipients; the folder is
/// optional).
pub fn load_schemas(schemas_dir: &Path) -> Result<MessageSchemas, Vec<Problem>> {
    let messages_dir = schemas_dir.join("messages");
    let (messages, mut problems) = read_files(&messages_dir, "json");
    let outbound_dir = schemas_dir.join("outbound");
    let outbound = if outbound_dir.exists() {
        let (files, p) = read_files(&outbound_dir, "json");
        problems.extend(p);
        files
    } else {
        Vec::new()
    };
    match MessageSchemas::from_files(&messages_dir, messages, outbound) {
        Ok(schemas) if problems.is_empty() => Ok(schemas),
        Ok(_) => Err(problems),
        Err(p) => {
            problems.extend(p);
            Err(problems)
        }
    }
}

/// Loads every `*.toml` agreement in `dir` and checks each against `ctx`. All problems are
/// reported together; one broken agreement fails the load.
pub fn load_agreement_files(dir: &Path, ctx: &Context<'_>) -> Result<Agreements, Vec<Problem>> {
    let (files, mut problems) = read_files(dir, "toml");
    match Agreements::from_files(files, ctx) {
        Ok(agreements) if problems.is_empty() => Ok(agreements),
        Ok(_) => Err(problems),
        Err(p) => {
            problems.extend(p);
            Err(problems)
        }
    }
}

/// Loads message schemas and agreements and checks each agreement against the configuration
/// and the schemas.
pub fn load_agreements(config: &Config) -> Result<(Agreements, MessageSchemas), Vec<Problem>> {
    let (schemas, mut problems) = match load_schemas(&config.schemas_dir) {
        Ok(s) => (s, Vec::new()),
        Err(p) => (MessageSchemas::default(), p),
    };
    let ctx = Context {
        systems: config.systems.iter().map(|s| s.id.clone()).collect(),
        destinations: config.destinations.iter().map(|d| d.id().to_owned()).collect(),
        schemas: &schemas,
    };
    match load_agreement_files(&config.agreements_dir, &ctx) {
        Ok(agreements) if problems.is_empty() => Ok((agreements, schemas)),
        Ok(_) => Err(problems),
        Err(p) => {
            problems.extend(p);
            Err(problems)
        }
    }
}

/// The scopes that need a subject-index key: every agreement, and the subject access lookups
/// themselves. An agreement that indexes no NHS number still keys the references its transfers
/// record (a case-record id, a consent evidence reference) under its own key for the year, so
/// retention destroys them with the rest of the year. The gateway-wide index key is left keying
/// only the senders' idempotency keys, in their table beside the ledger (no entry holds one).
pub fn subject_scopes(agreements: &Agreements) -> Vec<&str> {
    let mut scopes: Vec<&str> = agreements.iter().map(|a| a.id()).collect();
    scopes.push(crate::policy::keys::SUBJECT_ACCESS_SCOPE);
    scopes
}

/// Loads the keys the agreements need; development makes missing ones and says so. A new
/// subject-index seed starts in the year of `now` (the decisions' clock): it never claims to
/// index a year before it existed.
pub fn load_keys(config: &Config, agreements: &Agreements, now: jiff::Timestamp) -> Result<KeyRing, KeyError> {
    let needing: Vec<&str> = agreements.iter().filter(|a| a.needs_key()).map(|a| a.id()).collect();
    let dev = config.profile == Profile::Development;
    let store = KeyStore::new(&config.keys_dir);
    let (ring, mut created) = store.load(&needing, dev)?;
    let scopes = subject_scopes(agreements);
    let year = crate::policy::agreement::utc_date(now).year();
    created.extend(store.load_subject_keys(ring.subject(), &scopes, year, dev)?);
    for k in created {
        tracing::warn!(key = %k, dir = %config.keys_dir.display(), "created a development key");
    }
    Ok(ring)
}
