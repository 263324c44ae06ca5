//! `ledger verify | checkpoint | export | verify-bundle`.

use std::process::ExitCode;

use super::{LedgerCommand, load};
use crate::app::config::Overrides;

pub(super) async fn ledger(command: LedgerCommand) -> Result<ExitCode, String> {
    use crate::ledger::checkpoint::parse_public_key;
    let pinned = |text: &Option<String>| -> Result<Option<ed25519_dalek::VerifyingKey>, String> {
        text.as_deref()
            .map(|t| parse_public_key(t).ok_or_else(|| "--public-key must be ed25519:<64 hex>".to_owned()))
            .transpose()
    };
    if let LedgerCommand::VerifyBundle {
        dir,
        public_key,
        allow_unpinned,
        witnesses,
        origin,
        agreement,
        since,
        until,
    } = &command
    {
        let witnesses = parse_witnesses(witnesses)?;
        if public_key.is_none() && !witnesses.is_empty() && origin.is_none() {
            return Err(
                "with --witness and no --public-key, name the ledger's origin (--origin, the first line of its \
                 checkpoints): a witness vouches for the tree of the origin it cosigned, and the bundle could name any"
                    .into(),
            );
        }
        if public_key.is_none() && witnesses.is_empty() && !allow_unpinned {
            return Err(
                "a bundle proves nothing without the key or the witnesses you trust: pass --public-key \
                 ed25519:<hex> (from a channel other than the bundle) and/or --witness <vkey>, or --allow-unpinned \
                 to check its integrity only"
                    .into(),
            );
        }
        let report = crate::audit::bundle::verify(dir, pinned(public_key)?.as_ref(), &witnesses)
            .map_err(|e| format!("bundle does not verify: {e}"))?;
        if let Some(expected) = origin
            && report.origin.as_deref() != Some(expected.as_str())
        {
            return Err(format!(
                "bundle does not verify: its checkpoint is of the origin {:?}, not {expected:?}",
                report
                    .origin
                    .as_deref()
                    .unwrap_or("(not read: name witnesses to check the origin)")
            ));
        }
        let c = &report.complete;
        let asked = [
            (
                agreement.is_some() && agreement.as_ref() != Some(&c.agreement),
                "agreement",
            ),
            (
                since.is_some() && since.map(crate::ledger::ledger_time) != c.since,
                "--since",
            ),
            (
                until.is_some() && until.map(crate::ledger::ledger_time) != c.until,
                "--until",
            ),
        ];
        if let Some((_, what)) = asked.iter().find(|(differs, _)| *differs) {
            return Err(format!(
                "bundle does not verify: it is of {} recorded {}, not the {what} you asked for",
                c.agreement,
                period_words(c.since, c.until)
            ));
        }
        if public_key.is_none() && witnesses.is_empty() {
            println!(
                "integrity only: {} entries consistent with the signed tree of {} entries, under the bundle's own \
                 public_key.txt; who signed it is NOT proved (pin the key with --public-key, or name witnesses)",
                report.entries, report.tree_size
            );
        } else {
            println!(
                "ok: {} entries, each in the signed tree of {} entries",
                report.entries, report.tree_size
            );
            println!("{}", complete_words(&report.complete));
            let key = if public_key.is_some() {
                "the pinned checkpoint key"
            } else {
                "the bundle's own public_key.txt (the checkpoint key is NOT pinned; the witnesses vouch for the tree)"
            };
            println!(
                "trusted: {key}{}",
                witness_words(&report.witnessed, report.origin.as_deref())
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let config_path = match &command {
        LedgerCommand::Verify { config, .. }
        | LedgerCommand::Checkpoint { config }
        | LedgerCommand::Export { config, .. } => &config.config,
        LedgerCommand::VerifyBundle { .. } => return Ok(ExitCode::FAILURE),
    };
    let config = load(config_path, &Overrides::default())?;
    let ledger = crate::ledger::open(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let store = crate::app::keystore::KeyStore::new(&config.keys_dir);
    let key = || store.checkpoint_key(false).map(|(k, _)| k).map_err(|e| e.to_string());
    match command {
        LedgerCommand::Verify {
            public_key,
            checkpoint,
            witnesses,
            ..
        } => {
            let witnesses = parse_witnesses(&witnesses)?;
            let trusted_key = if public_key.is_some() {
                "the pinned key"
            } else {
                "the gateway's own key"
            };
            let public = match pinned(&public_key)? {
                Some(k) => k,
                None => key()?.public(),
            };
            // The progress bar needs the total, which costs a read of every entry: only for a person.
            let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let total = if terminal { ledger.tree_size().await } else { 0 };
            let bar = if terminal && total >= 100_000 {
                let style = indicatif::ProgressStyle::with_template(
                    "verifying: {pos}/{len} entries [{bar:40}] {elapsed_precise} (eta {eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                // Drawn on stderr, at most 20 times a second.
                indicatif::ProgressBar::new(total).with_style(style.progress_chars("=> "))
            } else {
                indicatif::ProgressBar::hidden()
            };
            let mut progress = |done: i64| bar.set_position(u64::try_from(done).unwrap_or(0));
            let report = crate::ledger::verify(ledger.as_ref(), &public, &mut progress)
                .await
                .map_err(|e| e.to_string())?;
            bar.finish();
            match report.first_break {
                None => {
                    // The chain holds; now the listings and the subject index made from it.
                    if let Some(problem) = crate::ledger::verify_transfers(ledger.as_ref())
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        println!(
                            "BROKEN: {problem} (the {} ledger entries themselves verify)",
                            report.entries
                        );
                        return Ok(ExitCode::FAILURE);
                    }
                    // Checkpoints kept outside the database: the log's, and any an auditor kept.
                    let log = crate::app::startup::checkpoint_log(&config);
                    let origin = log.as_ref().map_or(config.ledger.origin.as_str(), |l| l.origin());
                    let mut kept = match &log {
                        Some(l) => l.read(&public).map_err(|e| e.to_string())?,
                        None => Vec::new(),
                    };
                    let from_log = kept.len();
                    for file in &checkpoint {
                        kept.push(
                            crate::audit::checkpoint_log::read_note(file, origin, &public)
                                .map_err(|e| e.to_string())?,
                        );
                    }
                    if let Some(problem) = crate::audit::checkpoint_log::check_kept(ledger.as_ref(), &kept, from_log)
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        println!("BROKEN: {problem}");
                        return Ok(ExitCode::FAILURE);
                    }
                    // The witnesses the auditor named: each must vouch for a tree the ledger extends.
                    let witnessed = crate::audit::witnesses::witnessed(ledger.as_ref(), origin, &witnesses)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut vouched = Vec::new();
                    for (w, seen) in witnesses.iter().zip(witnessed) {
                        use crate::audit::witnesses::Witnessed;
                        match seen {
                            Witnessed::Extends { tree_size, time } => vouched.push((w.name.clone(), tree_size, time)),
                            Witnessed::None => {
                                println!(
                                    "BROKEN: no cosignature by witness {} on any checkpoint of {origin} verifies \
                                     (has the witness run `isa-gateway witness cosign`?)",
                                    w.name
                                );
                                return Ok(ExitCode::FAILURE);
                            }
                            Witnessed::Forged { tree_size } => {
                                println!(
                                    "BROKEN: a stored cosignature in witness {}'s name on the tree of {tree_size} entries \
                                     does not verify under its key: it was forged or damaged in the database",
                                    w.name
                                );
                                return Ok(ExitCode::FAILURE);
                            }
                            Witnessed::Contradicted { tree_size } => {
                                println!(
                                    "BROKEN: witness {} cosigned the tree of {tree_size} entries, which the ledger no \
                                     longer extends: history was rewritten",
                                    w.name
                                );
                                return Ok(ExitCode::FAILURE);
                            }
                        }
                    }
                    println!(
                        "ok: {} entries, chain head {}, {} checkpoint(s) verified; transfer listings and subject \
                         index match the entries",
                        report.entries,
                        hex::encode(report.head),
                        report.checkpoints
                    );
                    println!(
                        "trusted: {trusted_key}; {from_log} checkpoint(s) from the checkpoint log and {} kept \
                         checkpoint(s) given, each extended by the ledger",
                        checkpoint.len()
                    );
                    if vouched.is_empty() {
                        println!("witnesses: none named (pass --witness <vkey> to require their cosignatures)");
                    }
                    for (name, tree_size, time) in vouched {
                        println!(
                            "witness {name}: cosigned the tree of {tree_size} entries (at {}), which the ledger \
                             extends; entries after it rest on the checkpoint key alone",
                            jiff::Timestamp::from_second(i64::try_from(time).unwrap_or(0)).unwrap_or_default()
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(b) => {
                    println!("BROKEN: {b} ({} entries verified before it)", report.entries);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        LedgerCommand::Checkpoint { .. } => {
            let checkpointer = crate::audit::checkpointer::Checkpointer::new(
                ledger,
                key()?,
                crate::platform::clock::Clock::System,
                1,
                std::time::Duration::from_secs(1),
                crate::app::startup::publication(&config),
            )
            .await
            .map_err(|e| e.to_string())?;
            match checkpointer.checkpoint_now().await.map_err(|e| e.to_string())? {
                Some(cp) => println!("checkpoint: tree size {}, root {}", cp.tree_size, hex::encode(cp.root)),
                None => println!("the ledger is empty: nothing to checkpoint"),
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Export {
            agreement,
            since,
            until,
            out,
            ..
        } => {
            let key = key()?;
            let checkpointer = crate::audit::checkpointer::Checkpointer::new(
                ledger.clone(),
                key,
                crate::platform::clock::Clock::System,
                1,
                std::time::Duration::from_secs(1),
                crate::app::startup::publication(&config),
            )
            .await
            .map_err(|e| e.to_string())?;
            let cp = checkpointer
                .checkpoint_now()
                .await
                .map_err(|e| e.to_string())?
                .ok_or("the ledger is empty")?;
            let in_tree = |e: &crate::ledger::Entry| u64::try_from(e.seq).is_ok_and(|s| s <= cp.tree_size);
            let covered = ledger
                .entries_for(&agreement, since, until)
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .rev()
                .find(|e| in_tree(e))
                .map_or(0, |e| u64::try_from(e.seq).unwrap_or(0));
            // The newest checkpoint every configured witness cosigned, if it covers the entries;
            // otherwise the one just made (which no witness has seen yet).
            let cp = crate::audit::witnesses::newest_witnessed(ledger.as_ref(), &checkpointer, covered)
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or(cp);
            let (entries, proof) = crate::audit::completeness::prove(ledger.as_ref(), &agreement, since, until, &cp)
                .await
                .map_err(|e| e.to_string())?;
            let cosignatures = ledger.cosignatures(cp.tree_size).await.map_err(|e| e.to_string())?;
            let note = checkpointer.note(&cp, &cosignatures);
            crate::audit::bundle::export(
                ledger.as_ref(),
                &entries,
                &proof,
                &cp,
                &checkpointer.public_key(),
                &note,
                &out,
            )
            .await
            .map_err(|e| e.to_string())?;
            let carried = cosignatures.iter().filter(|c| c.tree() == cp.tree()).count();
            println!("the bundle's checkpoint carries {carried} witness cosignature(s)");
            println!(
                "wrote {} entries for {agreement} to {} (checkpoint at tree size {}); verify with `isa-gateway ledger verify-bundle {}`",
                entries.len(),
                out.display(),
                cp.tree_size,
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::VerifyBundle { .. } => Ok(ExitCode::FAILURE),
    }
}

/// A period, in words.
fn period_words(since: Option<jiff::Timestamp>, until: Option<jiff::Timestamp>) -> String {
    match (since, until) {
        (None, None) => "at any time".into(),
        (Some(s), None) => format!("from {s}"),
        (None, Some(u)) => format!("before {u}"),
        (Some(s), Some(u)) => format!("from {s}, before {u}"),
    }
}

/// What a bundle proves it holds all of, in words.
fn complete_words(c: &crate::audit::completeness::Complete) -> String {
    format!(
        "complete: every entry of {} recorded {} ({} entries; the signed tree holds {} more of its entries, each \
         recorded outside that period)",
        c.agreement,
        period_words(c.since, c.until),
        c.entries,
        c.others
    )
}

/// The witnesses named on the command line, each a C2SP verifier key.
fn parse_witnesses(vkeys: &[String]) -> Result<Vec<crate::ledger::cosignature::Witness>, String> {
    vkeys
        .iter()
        .map(|v| crate::ledger::cosignature::Witness::parse(v).map_err(|e| format!("--witness: {e}")))
        .collect()
}

/// "; witnesses a (at …), b (at …) cosigned the tree of <origin>", or nothing.
fn witness_words(witnessed: &[(String, u64)], origin: Option<&str>) -> String {
    if witnessed.is_empty() {
        return String::new();
    }
    let names: Vec<String> = witnessed
        .iter()
        .map(|(name, time)| {
            let at = jiff::Timestamp::from_second(i64::try_from(*time).unwrap_or(0)).unwrap_or_default();
            format!("{name} (at {at})")
        })
        .collect();
    format!(
        "; witnesses {} cosigned this tree of {}",
        names.join(", "),
        origin.unwrap_or("the ledger")
    )
}
