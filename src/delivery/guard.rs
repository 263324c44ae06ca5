//! Before every attempt, delivery compares what it is about to send with what was decided, and
//! sends nothing that differs. The outbox is a table an insider with the database can edit: the
//! bytes, the destination or a held flag could be changed there while the ledger still says what
//! was decided. The worker decides nothing new; it only refuses to send what the record does not
//! support.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::civil::Date;

use crate::ledger::{DecisionKind, Entry, EventKind, OutboxItem, same_person};
use crate::policy::agreement::Agreement;
use crate::policy::decision::sha256_hex;

/// Why an outbox item was not sent. The code is recorded as the dead letter's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAsDecided {
    /// The transfer's ledger entries do not hash to what is stored with them.
    RecordUnverifiable,
    /// No permitting decision for the transfer in the ledger.
    NoPermit,
    /// The outbox bytes are not the bytes whose digest the decision recorded.
    BytesChanged,
    /// The decision was a hold, and no other person's approval is recorded.
    NotApproved,
    /// The agreement the transfer was permitted under (its content hash) is not the one loaded.
    AgreementChanged,
    /// The outbox names another destination than the agreement does.
    DestinationChanged,
    /// The agreement is no longer in force (suspended, expired, review overdue, …).
    AgreementNotInForce,
}

impl NotAsDecided {
    pub fn code(self) -> &'static str {
        match self {
            Self::RecordUnverifiable => "record_unverifiable",
            Self::NoPermit => "no_permit_recorded",
            Self::BytesChanged => "outbox_bytes_changed",
            Self::NotApproved => "not_approved",
            Self::AgreementChanged => "agreement_changed",
            Self::DestinationChanged => "destination_changed",
            Self::AgreementNotInForce => "agreement_not_in_force",
        }
    }
}

/// Checks `item` against the transfer's own ledger entries (`history`, in order) and the
/// agreements loaded now.
pub fn check(
    item: &OutboxItem,
    history: &[Entry],
    agreements: &HashMap<String, Arc<Agreement>>,
    today: Date,
) -> Result<(), NotAsDecided> {
    // Never trust what was stored: each entry must hash to its stored hash.
    if history.iter().any(|e| {
        Entry::compute_hash(e.seq, &e.prev_hash, &e.event) != e.hash || e.event.transfer_id != item.transfer_id
    }) {
        return Err(NotAsDecided::RecordUnverifiable);
    }
    let decision = history
        .iter()
        .find(|e| e.event.kind == EventKind::Decision)
        .map(|e| &e.event)
        .filter(|d| d.permitted())
        .ok_or(NotAsDecided::NoPermit)?;
    if decision.sent_sha256.as_deref() != Some(sha256_hex(&item.body).as_str()) {
        return Err(NotAsDecided::BytesChanged);
    }
    if decision.decision == Some(DecisionKind::Hold) {
        let approved = history.iter().any(|e| {
            e.event.kind == EventKind::Approval
                && e.event.decision == Some(DecisionKind::Permit)
                && e.event.user_sub.is_some()
                && !same_person(&e.event, decision)
        });
        if !approved {
            return Err(NotAsDecided::NotApproved);
        }
    }
    let agreement = agreements
        .get(&decision.agreement_id)
        .filter(|a| decision.agreement_hash.as_deref() == Some(a.content_hash()))
        .ok_or(NotAsDecided::AgreementChanged)?;
    let decided = agreement.destination_of(decision.destination.as_deref());
    // The recipient the delivery entry will name is the decided one (a one-off disclosure's
    // requester), not an edited outbox row's.
    if decided != item.destination || !agreement.offers_destination(decided) || item.recipient != decision.recipient {
        return Err(NotAsDecided::DestinationChanged);
    }
    agreement.in_force(today).map_err(|_| NotAsDecided::AgreementNotInForce)
}
