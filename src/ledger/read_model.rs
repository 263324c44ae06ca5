//! The read side kept beside the ledger: transfer listings, their history and counts, and
//! [`project`], the writer's rules as a pure function over a transfer's entries (what `verify`
//! re-derives and compares).

use jiff::Timestamp;
use serde::Serialize;
use uuid::Uuid;

use super::{Entry, EventKind, Hash, TransferStatus};

/// The receipt for an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub seq: i64,
    pub hash: Hash,
}

/// One transfer as the read side shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TransferRecord {
    pub transfer_id: Uuid,
    pub agreement_id: String,
    pub message_type: Option<String>,
    pub sender_system: String,
    pub recipient: Option<String>,
    pub status: TransferStatus,
    pub reason_code: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The sequence number of the decision in the ledger.
    pub ledger_seq: i64,
    /// The user who asked for it.
    pub user_sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_due: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviewed_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_informed_due: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_informed_at: Option<Timestamp>,
    /// The legal bases the permit relied on (those that applied to this transfer); empty for a
    /// refusal.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub legal_bases: Vec<String>,
}

/// The follow-ups people must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// Held for a director's approval.
    Held,
    /// Urgent transfers whose review is overdue at the given time.
    ReviewsOverdue(Timestamp),
    /// Urgent transfers not yet reviewed, soonest due (most overdue) first.
    ReviewsOutstanding,
    /// People still to be told, soonest first.
    NotificationsDue,
}

/// One step in a transfer's history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryItem {
    pub seq: i64,
    pub at: Timestamp,
    pub kind: EventKind,
    pub status: TransferStatus,
    pub reason_code: Option<String>,
    pub detail: Option<String>,
}

/// A listing filter.
#[derive(Debug, Clone, Default)]
pub struct TransferQuery {
    /// `None`: across all agreements.
    pub agreement_id: Option<String>,
    pub status: Option<TransferStatus>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub limit: u32,
    /// Continue after this decision sequence number (the previous page's `next_cursor`).
    pub after_seq: Option<i64>,
    pub message_type: Option<String>,
    /// The registered system that sent it.
    pub sender_system: Option<String>,
    /// The user who asked for it (their subject).
    pub user_sub: Option<String>,
    /// A legal-basis code that applied (permitted and held transfers carry their bases).
    pub legal_basis: Option<String>,
}

/// How a transfer's decision went, as an auditor charts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Permitted by the agreement's rules and sent without waiting for anyone.
    Permitted,
    /// Went to a director: held at the decision (whatever the director decided later).
    Held,
    /// Refused by the agreement's rules.
    Refused,
}

impl Outcome {
    pub const ALL: [Self; 3] = [Self::Permitted, Self::Held, Self::Refused];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permitted => "permitted",
            Self::Held => "held",
            Self::Refused => "refused",
        }
    }
}

/// Decisions about one agreement's transfers in one hour with one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// The start of the hour (UTC).
    pub hour: Timestamp,
    pub outcome: Outcome,
    pub count: i64,
}

/// Counts over a period, for auditors.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Counts {
    pub by_status: std::collections::BTreeMap<String, i64>,
    /// Permitted transfers by legal-basis code.
    pub by_legal_basis: std::collections::BTreeMap<String, i64>,
}

/// A transfer as the read side should show it, from its entries in order (its decision first);
/// `None` without a decision. The same rules as the writer's (`write::insert`).
pub fn project(history: &[Entry]) -> Option<TransferRecord> {
    let (decision, rest) = history.split_first()?;
    let d = &decision.event;
    if d.kind != EventKind::Decision {
        return None;
    }
    let mut r = TransferRecord {
        transfer_id: d.transfer_id,
        agreement_id: d.agreement_id.clone(),
        message_type: d.message_type.clone(),
        sender_system: d.sender_system.clone(),
        recipient: d.recipient.clone(),
        status: d.status,
        reason_code: d.reason_code.clone(),
        created_at: d.at,
        updated_at: d.at,
        ledger_seq: decision.seq,
        user_sub: d.user_sub.clone(),
        review_due: d.review_due_at(),
        reviewed_at: None,
        subject_informed_due: d.subject_informed_due.clone(),
        subject_informed_at: None,
        legal_bases: if d.permitted() {
            d.legal_bases.clone()
        } else {
            Vec::new()
        },
    };
    for e in rest.iter().map(|e| &e.event) {
        match e.kind {
            EventKind::Decision => return None,
            EventKind::Review => {
                r.reviewed_at.get_or_insert(e.at);
            }
            EventKind::Notification => {
                r.subject_informed_at.get_or_insert(e.at);
            }
            EventKind::Delivery | EventKind::Approval => {
                r.status = e.status;
                r.reason_code = e.reason_code.clone();
                r.updated_at = e.at;
            }
            EventKind::SubjectAccess | EventKind::Inbound | EventKind::Retention => {}
        }
    }
    Some(r)
}

/// What left must be what was decided: every "delivered" entry carries the decision's outbound
/// digest, and a held transfer is delivered only after a second person's approval. `None` when
/// the history keeps both rules; otherwise what broke them.
pub fn delivered_as_decided(history: &[Entry]) -> Option<&'static str> {
    let decision = &history.first()?.event;
    let mut approved = false;
    for e in &history[1..] {
        let ev = &e.event;
        if ev.kind == EventKind::Approval
            && ev.decision == Some(super::DecisionKind::Permit)
            && ev.user_sub.is_some()
            && !super::same_person(ev, decision)
        {
            approved = true;
        }
        if ev.kind == EventKind::Delivery && ev.status == TransferStatus::Delivered {
            if ev.sent_sha256 != decision.sent_sha256 {
                return Some("what was delivered is not what was decided (its digest differs)");
            }
            if decision.decision == Some(super::DecisionKind::Hold) && !approved {
                return Some("it was held, and delivered without a second person's approval");
            }
            // A one-off disclosure names its destination at the decision; a delivery elsewhere is
            // not what was decided. (A standing agreement's destination is its file's, which the
            // delivery guard checks before every attempt.)
            if decision.destination.is_some() && ev.destination.is_some() && ev.destination != decision.destination {
                return Some("it was delivered to another destination than the one decided");
            }
        }
    }
    None
}
