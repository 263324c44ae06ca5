//! Requeueing a dead letter once its partner is fixed: the operator's one way to send a refused
//! delivery again. The bytes were permitted under the agreement as it was then, so they leave
//! only while that same agreement (version and content) is in force and its destination is still
//! configured. Recorded in the ledger with who did it.

use jiff::Timestamp;
use uuid::Uuid;

use crate::app::catalogue::load_agreements;
use crate::app::config::Config;
use crate::ledger::{Event, EventKind, Ledger, Receipt, TransferStatus, ledger_time};

/// Puts `transfer_id` back in the queue, or says why not (in words an operator can act on).
pub async fn requeue(
    config: &Config,
    ledger: &dyn Ledger,
    transfer_id: Uuid,
    by: &str,
    now: Timestamp,
) -> Result<Receipt, String> {
    let record = ledger
        .transfer(transfer_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no transfer {transfer_id}"))?;
    let not_dead = || {
        format!(
            "transfer {transfer_id} is {}, not undeliverable: nothing to requeue",
            record.status.as_str()
        )
    };
    if record.status != TransferStatus::Undeliverable {
        return Err(not_dead());
    }
    // The bytes were permitted under the agreement as it was then: send them only while that
    // same agreement (version and content) is in force and its destination still configured.
    let (agreements, _) = load_agreements(config)
        .map_err(|p| format!("{} problem(s) with the agreements; run `isa-gateway check`", p.len()))?;
    let decided = ledger
        .entries_of(&[transfer_id])
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .map(|e| e.event)
        .ok_or_else(|| format!("no decision for transfer {transfer_id}"))?;
    let agreement = agreements
        .iter()
        .find(|a| a.id() == record.agreement_id)
        .ok_or_else(|| format!("agreement {} is no longer loaded: not requeued", record.agreement_id))?;
    if decided.agreement_hash.as_deref() != Some(agreement.content_hash()) {
        return Err(format!(
            "agreement {} has changed since the transfer was permitted (version {} then, {} now): not requeued; \
             send it again so it is decided under the agreement in force",
            record.agreement_id,
            decided.agreement_version.as_deref().unwrap_or("?"),
            agreement.version()
        ));
    }
    let today = crate::policy::agreement::utc_date(now);
    if let Err(not) = agreement.in_force(today) {
        return Err(format!("{} Not requeued.", not.explain()));
    }
    let destination = agreement.destination_of(decided.destination.as_deref());
    if config.destination(destination).is_none() {
        return Err(format!(
            "destination {destination} is no longer configured: not requeued"
        ));
    }
    let mut event = Event::new(
        ledger_time(now),
        transfer_id,
        EventKind::Delivery,
        TransferStatus::Accepted,
        &record.agreement_id,
        "cli",
    );
    event.message_type = record.message_type.clone();
    event.recipient = record.recipient.clone();
    event.reason_code = Some("requeued".into());
    event.detail = Some("requeued by an operator".into());
    event.user_sub = Some(by.to_owned());
    event.user_role = Some("operator".into());
    match ledger.requeue(event).await.map_err(|e| e.to_string())? {
        Some(receipt) => Ok(receipt),
        // Undeliverable with nothing queued: the partner took it, then reported non-delivery
        // (a MESH report); the outbound bytes are no longer held.
        None => Err(format!(
            "transfer {transfer_id} was delivered and then reported undelivered by the partner; its outbound \
             bytes are no longer held, so it cannot be requeued: send it again"
        )),
    }
}
