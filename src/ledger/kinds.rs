//! The words the ledger records for where a transfer stands and what kind of event an entry is.

use serde::{Deserialize, Serialize};

/// Where a transfer stands. Stored as these lower-case words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    /// Permitted, recorded and queued in the outbox; not yet delivered.
    Accepted,
    /// Refused; nothing left the gateway.
    Refused,
    /// Permitted but held for a director's approval; nothing has left.
    Held,
    /// A delivery attempt failed; another is scheduled.
    Retrying,
    Delivered,
    /// Dead letter: delivery gave up (attempts or age exhausted, or the partner refused it).
    Undeliverable,
}

impl TransferStatus {
    pub const ALL: [Self; 6] = [
        Self::Accepted,
        Self::Refused,
        Self::Held,
        Self::Retrying,
        Self::Delivered,
        Self::Undeliverable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Refused => "refused",
            Self::Held => "held",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::Undeliverable => "undeliverable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The gateway's decision on an attempt (permit or deny).
    Decision,
    /// A delivery outcome.
    Delivery,
    /// A director's approval or refusal of a held transfer.
    Approval,
    /// A director's retrospective review of an urgent transfer.
    Review,
    /// The person the transfer is about has been told.
    Notification,
    /// A subject access lookup ("who did you share my data with"): who asked, and when.
    SubjectAccess,
    /// A message a partner sent to the gateway's own MESH mailbox, kept unread in quarantine:
    /// its digest and size, never its content.
    Inbound,
    /// Retention acted: a subject-index key destroyed once an agreement's retention period for
    /// its year had passed (the entries it indexed can no longer be linked to a person).
    Retention,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decision => "decision",
            Self::Delivery => "delivery",
            Self::Approval => "approval",
            Self::Review => "review",
            Self::Notification => "notification",
            Self::SubjectAccess => "subject_access",
            Self::Inbound => "inbound",
            Self::Retention => "retention",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Decision,
            Self::Delivery,
            Self::Approval,
            Self::Review,
            Self::Notification,
            Self::SubjectAccess,
            Self::Inbound,
            Self::Retention,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}
