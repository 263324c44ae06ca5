//! `keys new | rotate` and `token dev`.

use std::path::Path;
use std::process::ExitCode;

use super::{KeysCommand, load};
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
        KeysCommand::New {
            agreement: Some(id), ..
        } => {
            let v = store.new_key(id).map_err(|e| e.to_string())?;
            println!(
                "made key agreement/{id}/v{v} in {} (mode 0600)",
                config.keys_dir.display()
            );
        }
        KeysCommand::New { .. } => return Err("name --agreement ID or --index".into()),
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
