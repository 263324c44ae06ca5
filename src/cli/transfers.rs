//! `transfers list | requeue` and `subject-disclosures`.

use std::path::Path;
use std::process::ExitCode;

use super::{ListFormat, load};
use crate::app::config::Overrides;

pub(super) async fn transfers_list(
    path: &Path,
    agreement: String,
    since: Option<jiff::Timestamp>,
    until: Option<jiff::Timestamp>,
    status: Option<&str>,
    format: ListFormat,
) -> Result<ExitCode, String> {
    use crate::ledger::{TransferQuery, TransferStatus};
    let config = load(path, &Overrides::default())?;
    let status = status
        .map(|s| TransferStatus::parse(s).ok_or_else(|| format!("unknown status {s:?}")))
        .transpose()?;
    let ledger = crate::ledger::open(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let mut after_seq = None;
    loop {
        let query = TransferQuery {
            agreement_id: Some(agreement.clone()),
            status,
            since,
            until,
            limit: 1000,
            after_seq,
            ..Default::default()
        };
        let page = ledger.list_transfers(&query).await.map_err(|e| e.to_string())?;
        let done = page.len() < 1000;
        after_seq = page.last().map(|t| t.ledger_seq);
        rows.extend(page);
        if done {
            break;
        }
    }
    match format {
        ListFormat::Table => print!("{}", crate::audit::report::table(&rows)),
        ListFormat::Csv => print!("{}", crate::audit::report::csv(&rows)),
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?),
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn subject_disclosures(path: &Path, by: &str) -> Result<ExitCode, String> {
    let config = load(path, &Overrides::default())?;
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin().read_line(&mut line).map_err(|e| e.to_string())?;
    let nhs = crate::policy::nhs_number::NhsNumber::parse(line.trim())
        .map_err(|_| "standard input must hold an NHS number: ten digits with a valid check digit".to_owned())?;
    let keys = crate::app::keystore::KeyStore::new(&config.keys_dir);
    let ledger = crate::ledger::open(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let asker = crate::audit::subject_access::Asker {
        system: "cli",
        user: by,
        issuer: None,
    };
    let answer = crate::audit::subject_access::lookup(ledger.as_ref(), &keys, &nhs, asker, jiff::Timestamp::now())
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", serde_json::to_string_pretty(&answer).map_err(|e| e.to_string())?);
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn transfers_requeue(path: &Path, transfer_id: uuid::Uuid, by: &str) -> Result<ExitCode, String> {
    let config = load(path, &Overrides::default())?;
    let ledger = crate::ledger::open(&config.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let receipt =
        crate::app::requeue::requeue(&config, ledger.as_ref(), transfer_id, by, jiff::Timestamp::now()).await?;
    println!(
        "requeued transfer {transfer_id} (ledger entry {}); a running gateway sends it at its next poll",
        receipt.seq
    );
    Ok(ExitCode::SUCCESS)
}
