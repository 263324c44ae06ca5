//! `keys new | rotate`, `retention` and `token dev`.

use std::path::Path;
use std::process::ExitCode;

use super::{KeysCommand, load, load_agreements};
use crate::app::config::{Overrides, Profile};

pub(super) fn keys(command: KeysCommand) -> Result<ExitCode, String> {
    let (path, action) = match &command {
        KeysCommand::New { config, .. } | KeysCommand::Rotate { config, .. } => (&config.config, &command),
    };
    let config = load(path, &Overrides::default())?;
    let store = crate::app::keystore::KeyStore::new(&config.keys_dir);
    match action {
        KeysCommand::New { checkpoint: true, .. } => {
            store.new_checkpoint_key().map_err(|e| e.to_string())?;
            let (key, _) = store.checkpoint_key(false).map_err(|e| e.to_string())?;
            println!(
                "made the checkpoint key in {} (mode 0600); its public key for auditors: {}",
                config.keys_dir.display(),
                crate::ledger::checkpoint::public_key_text(&key.public())
            );
        }
        KeysCommand::New { index: true, .. } => {
            store.new_index_key().map_err(|e| e.to_string())?;
            println!("made the index key in {} (mode 0600)", config.keys_dir.display());
        }
        KeysCommand::New { subject: true, .. } => {
            let agreements = load_agreements(&config)?;
            let scopes = crate::app::catalogue::subject_scopes(&agreements);
            let year = crate::policy::agreement::utc_date(jiff::Timestamp::now()).year();
            let made = store.new_subject_keys(&scopes, year).map_err(|e| e.to_string())?;
            println!(
                "{} subject-index seed(s) made, {} already there (mode 0600, first year {year})",
                made.len(),
                scopes.len() - made.len()
            );
        }
        KeysCommand::New {
            agreement: Some(id), ..
        } => {
            let v = store.new_key(id).map_err(|e| e.to_string())?;
            println!(
                "made key agreement/{id}/v{v} in {} (mode 0600)",
                config.keys_dir.display()
            );
        }
        KeysCommand::New { .. } => return Err("name --agreement ID, --index, --checkpoint or --subject".into()),
        KeysCommand::Rotate { agreement, .. } => {
            let v = store.rotate(agreement).map_err(|e| e.to_string())?;
            println!(
                "added key agreement/{agreement}/v{v}; new transfers use it, older versions stay for verification"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn token_dev(path: &Path, sub: &str, roles: &[String], ttl_secs: u64) -> Result<ExitCode, String> {
    let config = load(path, &Overrides::default())?;
    if config.profile != Profile::Development {
        return Err("development tokens are for the development profile only".into());
    }
    let roles = roles
        .iter()
        .map(|r| {
            crate::platform::auth::UserRole::parse(r).ok_or_else(|| {
                format!("unknown role {r:?}: use practitioner, safeguarding_lead, director, dpo or auditor")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let issuer = config
        .auth
        .issuers
        .iter()
        .find(|i| i.dev_signing_key.is_some())
        .ok_or("no issuer in the configuration has a dev_signing_key")?;
    if issuer.dev_signing_key.as_ref().is_some_and(|k| !k.exists()) {
        return Err(
            "the development issuer's key does not exist yet: run `isa-gateway certs dev` (or `serve`) first".into(),
        );
    }
    println!(
        "{}",
        crate::platform::auth::mint_dev_token(issuer, &config.auth.audience, sub, &roles, ttl_secs)?
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn retention(path: &Path, as_of: Option<jiff::Timestamp>, destroy: bool) -> Result<ExitCode, String> {
    let config = load(path, &Overrides::default())?;
    let agreements = load_agreements(&config)?;
    let store = crate::app::keystore::KeyStore::new(&config.keys_dir);
    let now = jiff::Timestamp::now();
    // Destroying as of a date still to come would destroy keys still in use: a moved clock is
    // for seeing what a date will bring, and for the development profile's tests.
    if destroy && as_of.is_some_and(|t| t > now) && config.profile != Profile::Development {
        return Err("--destroy with an --as-of in the future is for the development profile only".into());
    }
    let as_of = as_of.unwrap_or(now);
    let seeds = store.subject_seeds().map_err(|e| e.to_string())?;
    let plan = crate::app::retention::plan(&seeds, &agreements, as_of);
    if plan.is_empty() {
        println!("no subject-index keys in {}", config.keys_dir.display());
    }
    for p in &plan {
        let when = match (p.retention_years, p.next_destruction()) {
            (Some(r), Some(y)) => format!("retention {r} years; {} goes on {y}-01-01", p.first_live),
            _ => "retention unknown (no agreement with this id is loaded): kept".to_owned(),
        };
        let due = p.due().map_or_else(String::new, |(a, b)| {
            format!("; DUE as of {}: {a}–{b}", crate::policy::agreement::utc_date(as_of))
        });
        println!("{}: live from {}; {when}{due}", p.scope, p.first_live);
    }
    if !destroy {
        if plan.iter().any(|p| p.due().is_some()) {
            println!("(nothing destroyed: run with --destroy)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let ledger = crate::ledger::open(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let done = crate::app::retention::run(ledger.as_ref(), &store, &agreements, None, as_of, now)
        .await
        .map_err(|e| e.to_string())?;
    for d in &done {
        println!(
            "destroyed: {} {}–{} (ledger entry {})",
            d.scope, d.years.0, d.years.1, d.ledger_seq
        );
    }
    println!("{} scope(s) destroyed", done.len());
    Ok(ExitCode::SUCCESS)
}
