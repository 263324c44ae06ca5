//! The ledger: an append-only, hash-chained record of every decision and every delivery
//! outcome. It holds no payload, only what was decided, under which terms, and digests.
//!
//! Each entry's hash is SHA-256 over a canonical binary encoding of the entry (see
//! [`Entry::canonical_bytes`]) that includes the previous entry's hash, so an edited, removed
//! or reordered row breaks the chain at that row. All SQL lives in the backend modules.

pub mod checkpoint;
pub mod merkle;
mod sqlite;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use sqlite::SqliteLedger;

pub type Hash = [u8; 32];
pub const GENESIS: Hash = [0; 32];

/// Where a transfer stands. Stored as these lower-case words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// What a caller asks the ledger to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: Timestamp,
    pub transfer_id: Uuid,
    pub kind: EventKind,
    pub status: TransferStatus,
    /// `permit` or `deny` on decision events.
    pub decision: Option<String>,
    pub agreement_id: String,
    pub agreement_version: Option<String>,
    pub agreement_hash: Option<String>,
    pub message_type: Option<String>,
    pub schema_hash: Option<String>,
    pub sender_system: String,
    /// The user (token `sub`) and the role they acted in, where a user acted.
    pub user_sub: Option<String>,
    pub user_role: Option<String>,
    /// The recipient organisation.
    pub recipient: Option<String>,
    pub legal_bases: Vec<String>,
    pub reason_code: Option<String>,
    pub received_sha256: Option<String>,
    pub sent_sha256: Option<String>,
    pub pointers_removed: Vec<String>,
    /// A short operational note (e.g. a delivery failure's class). Never patient data.
    pub detail: Option<String>,
    /// The classes of data that left (`identifying`, `special_category`, …).
    pub data_classes: Vec<String>,
    /// Every pseudonymisation treatment applied, as `op pointer`.
    pub treatments: Vec<String>,
    /// The token key used, `agreement/<id>/v<N>`.
    pub key_ref: Option<String>,
    pub consent_status: Option<String>,
    pub consent_reason: Option<String>,
    pub consent_evidence_ref: Option<String>,
    pub subject_informed: Option<String>,
    /// Keyed hashes of the NHS numbers of the people the transfer is about (never the numbers).
    pub subject_index: Vec<String>,
    /// Urgent path: when a director's review is due (RFC 3339).
    pub review_due: Option<String>,
    /// When the person is to be told, where they will be told after (a date).
    pub subject_informed_due: Option<String>,
}

impl Event {
    /// An event with only its identity set; every optional fact empty.
    pub fn new(
        at: Timestamp,
        transfer_id: Uuid,
        kind: EventKind,
        status: TransferStatus,
        agreement_id: &str,
        sender_system: &str,
    ) -> Self {
        Self {
            at,
            transfer_id,
            kind,
            status,
            decision: None,
            agreement_id: agreement_id.to_owned(),
            agreement_version: None,
            agreement_hash: None,
            message_type: None,
            schema_hash: None,
            sender_system: sender_system.to_owned(),
            user_sub: None,
            user_role: None,
            recipient: None,
            legal_bases: Vec::new(),
            reason_code: None,
            received_sha256: None,
            sent_sha256: None,
            pointers_removed: Vec::new(),
            detail: None,
            data_classes: Vec::new(),
            treatments: Vec::new(),
            key_ref: None,
            consent_status: None,
            consent_reason: None,
            consent_evidence_ref: None,
            subject_informed: None,
            subject_index: Vec::new(),
            review_due: None,
            subject_informed_due: None,
        }
    }
}

/// A recorded event, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub event: Event,
    pub prev_hash: Hash,
    pub hash: Hash,
}

impl Entry {
    /// The canonical encoding the hash covers (version 1):
    ///
    /// `"isa-gateway.ledger.v1"`, then `prev_hash` (32 bytes), `seq` and `at` (microseconds since
    /// the Unix epoch) as 8-byte big-endian integers, then each field in declaration order of
    /// [`Event`]: a string as a 4-byte big-endian length and its UTF-8 bytes; an absent optional
    /// string as the length `0xFFFFFFFF`; a list as a 4-byte count then each string.
    pub fn canonical_bytes(seq: i64, prev_hash: &Hash, e: &Event) -> Vec<u8> {
        let mut b = Vec::with_capacity(512);
        b.extend_from_slice(b"isa-gateway.ledger.v1");
        b.extend_from_slice(prev_hash);
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&micros(e.at).to_be_bytes());
        let s = |b: &mut Vec<u8>, v: &str| {
            b.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX - 1).to_be_bytes());
            b.extend_from_slice(v.as_bytes());
        };
        let o = |b: &mut Vec<u8>, v: &Option<String>| match v {
            Some(v) => s(b, v),
            None => b.extend_from_slice(&u32::MAX.to_be_bytes()),
        };
        let l = |b: &mut Vec<u8>, v: &[String]| {
            b.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_be_bytes());
            v.iter().for_each(|x| s(b, x));
        };
        s(&mut b, &e.transfer_id.to_string());
        s(&mut b, e.kind.as_str());
        s(&mut b, e.status.as_str());
        o(&mut b, &e.decision);
        s(&mut b, &e.agreement_id);
        o(&mut b, &e.agreement_version);
        o(&mut b, &e.agreement_hash);
        o(&mut b, &e.message_type);
        o(&mut b, &e.schema_hash);
        s(&mut b, &e.sender_system);
        o(&mut b, &e.user_sub);
        o(&mut b, &e.user_role);
        o(&mut b, &e.recipient);
        l(&mut b, &e.legal_bases);
        o(&mut b, &e.reason_code);
        o(&mut b, &e.received_sha256);
        o(&mut b, &e.sent_sha256);
        l(&mut b, &e.pointers_removed);
        o(&mut b, &e.detail);
        l(&mut b, &e.data_classes);
        l(&mut b, &e.treatments);
        o(&mut b, &e.key_ref);
        o(&mut b, &e.consent_status);
        o(&mut b, &e.consent_reason);
        o(&mut b, &e.consent_evidence_ref);
        o(&mut b, &e.subject_informed);
        l(&mut b, &e.subject_index);
        o(&mut b, &e.review_due);
        o(&mut b, &e.subject_informed_due);
        b
    }

    pub fn compute_hash(seq: i64, prev_hash: &Hash, e: &Event) -> Hash {
        Sha256::digest(Self::canonical_bytes(seq, prev_hash, e)).into()
    }

    /// The entry's leaf in the Merkle tree: SHA-256(0x00 || canonical bytes), RFC 9162.
    pub fn leaf(seq: i64, prev_hash: &Hash, e: &Event) -> Hash {
        merkle::leaf_hash(&Self::canonical_bytes(seq, prev_hash, e))
    }
}

/// Microseconds since the Unix epoch: the ledger's time resolution.
pub fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

/// A timestamp truncated to the ledger's resolution, so what is stored is what was hashed.
pub fn ledger_time(t: Timestamp) -> Timestamp {
    Timestamp::from_microsecond(micros(t)).unwrap_or(t)
}

/// The receipt for an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub seq: i64,
    pub hash: Hash,
}

/// One transfer as the read side shows it.
#[derive(Debug, Clone, Serialize)]
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
}

/// The follow-ups people must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    /// Held for a director's approval.
    Held,
    /// Urgent transfers whose review is overdue at the given time.
    ReviewsOverdue(Timestamp),
    /// People still to be told, soonest first.
    NotificationsDue,
}

/// One step in a transfer's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryItem {
    pub seq: i64,
    pub at: Timestamp,
    pub kind: EventKind,
    pub status: TransferStatus,
    pub reason_code: Option<String>,
    pub detail: Option<String>,
}

/// A listing filter.
#[derive(Debug, Clone)]
pub struct TransferQuery {
    /// `None`: across all agreements.
    pub agreement_id: Option<String>,
    pub status: Option<TransferStatus>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub limit: u32,
    /// Continue after this decision sequence number (the previous page's `next_cursor`).
    pub after_seq: Option<i64>,
}

/// Counts over a period, for auditors.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub by_status: std::collections::BTreeMap<String, i64>,
    /// Permitted transfers by legal-basis code.
    pub by_legal_basis: std::collections::BTreeMap<String, i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("ledger migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("ledger row {seq} is unreadable: {what}")]
    Corrupt { seq: i64, what: String },
    #[error("unsupported database URL (expected sqlite://…)")]
    UnsupportedUrl,
    #[error("the idempotency key is already bound to a transfer")]
    IdempotencyKeyTaken,
    #[error("the ledger has no tree of size {0}")]
    BeyondTree(u64),
}

/// What `verify` found: the chain, the tree, and every checkpoint, with the first problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: i64,
    pub head: Hash,
    pub checkpoints: usize,
    pub first_break: Option<ChainBreak>,
}

/// Recomputes the hash chain, the Merkle tree, and every checkpoint's root and signature against
/// `public` (the checkpoint key auditors pin). Catches an edited field, a deleted row, swapped
/// rows (the chain), a truncated tail (a checkpoint larger than the ledger), and a forged or
/// re-signed checkpoint (its signature or root). `progress` is told how many entries are done.
pub async fn verify(
    ledger: &dyn Ledger,
    public: &ed25519_dalek::VerifyingKey,
    progress: &mut dyn FnMut(i64),
) -> Result<VerifyReport, LedgerError> {
    const PAGE: u32 = 10_000;
    let mut leaves: Vec<Hash> = Vec::new();
    let mut prev = GENESIS;
    let report = |entries: i64, head: Hash, first_break: Option<ChainBreak>, checkpoints: usize| VerifyReport {
        entries,
        head,
        checkpoints,
        first_break,
    };
    loop {
        let next = leaves.len() as i64 + 1;
        let page = ledger.entries_after(next - 1, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for e in page {
            let expected = leaves.len() as i64 + 1;
            let broken = |problem: &str| {
                Some(ChainBreak {
                    seq: expected,
                    problem: problem.to_owned(),
                })
            };
            let problem = if e.seq != expected {
                broken(&format!("missing: the next entry present is {}", e.seq))
            } else if e.prev_hash != prev {
                broken("its previous-hash link does not match the entry before it")
            } else if Entry::compute_hash(e.seq, &e.prev_hash, &e.event) != e.hash {
                broken("its contents do not match its hash (edited)")
            } else {
                None
            };
            if problem.is_some() {
                return Ok(report(expected - 1, prev, problem, 0));
            }
            leaves.push(Entry::leaf(e.seq, &e.prev_hash, &e.event));
            prev = e.hash;
        }
        progress(leaves.len() as i64);
    }
    let entries = leaves.len() as i64;
    let checkpoints = ledger.checkpoints().await?;
    for cp in &checkpoints {
        let at = i64::try_from(cp.tree_size).unwrap_or(i64::MAX);
        let broken = |problem: String| Some(ChainBreak { seq: at, problem });
        let problem = if !cp.verify(public) {
            broken(format!(
                "checkpoint at tree size {} has a signature that is not the gateway's (forged or re-signed)",
                cp.tree_size
            ))
        } else if cp.tree_size > leaves.len() as u64 {
            broken(format!(
                "checkpoint at tree size {} but the ledger has {entries} entries: the tail was truncated",
                cp.tree_size
            ))
        } else if merkle::root(&leaves[..at as usize]) != cp.root {
            broken(format!(
                "checkpoint at tree size {} does not match the entries (rewritten history)",
                cp.tree_size
            ))
        } else {
            None
        };
        if problem.is_some() {
            return Ok(report(entries, prev, problem, checkpoints.len()));
        }
    }
    Ok(report(entries, prev, None, checkpoints.len()))
}

/// Where the chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub problem: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ledger entry {}: {}", self.seq, self.problem)
    }
}

/// The outcome of a chain check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub entries: i64,
    pub head: Hash,
    pub first_break: Option<ChainBreak>,
}

/// A permitted transfer's place in the outbox.
#[derive(Debug, Clone)]
pub struct Enqueue {
    pub destination: String,
    pub body: Vec<u8>,
    /// Wall-clock time of acceptance (the age limit counts from here).
    pub now: Timestamp,
    /// Held for approval: stored, but not due until released.
    pub held: bool,
}

/// An idempotency key to bind to the transfer being accepted.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub system: String,
    pub key: String,
    pub request_sha256: String,
}

/// What an idempotency key is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentOriginal {
    pub request_sha256: String,
    pub transfer_id: Uuid,
    pub ledger_seq: i64,
}

/// A queued delivery.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub transfer_id: Uuid,
    pub destination: String,
    pub agreement_id: String,
    pub message_type: String,
    pub sender_system: String,
    pub recipient: Option<String>,
    pub body: Vec<u8>,
    pub attempts: u32,
    pub created_at: Timestamp,
}

/// The ledger's storage. Implementations hold all SQL; chain logic is shared here.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Appends one event durably; returns only once it is committed.
    async fn append(&self, event: Event) -> Result<Receipt, LedgerError>;
    /// Appends an accepted decision, its outbox entry and (if given) its idempotency key in one
    /// transaction: all or nothing. A key already bound gives [`LedgerError::IdempotencyKeyTaken`].
    async fn accept(&self, event: Event, enqueue: Enqueue, key: Option<IdempotencyKey>)
    -> Result<Receipt, LedgerError>;
    async fn idempotent_original(&self, system: &str, key: &str) -> Result<Option<IdempotentOriginal>, LedgerError>;
    /// Pending outbox entries due at `now`, oldest first.
    async fn due(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>, LedgerError>;
    /// Claims an entry for one attempt: only if it is still pending, due, and has made exactly
    /// `attempts` attempts. Counts the attempt before anything is sent, so an attempt interrupted
    /// by a crash is known as one (MESH then asks tracking before sending again). `false`: the
    /// entry was delivered, dead-lettered or retried meanwhile; do not send.
    async fn claim(&self, transfer_id: Uuid, attempts: u32, now: Timestamp) -> Result<bool, LedgerError>;
    /// Records a failed attempt (`event`, status `retrying`) and when to try again.
    async fn attempt_failed(
        &self,
        event: Event,
        attempts: u32,
        next_attempt: Timestamp,
    ) -> Result<Receipt, LedgerError>;
    /// Records delivery (with the partner's reference, if any) and removes the outbox entry, in
    /// one transaction. `None` if the entry was
    /// already gone (delivered before): the ledger then records nothing, so "delivered" appears
    /// exactly once per transfer.
    async fn delivered(&self, event: Event, remote: Option<(String, String)>) -> Result<Option<Receipt>, LedgerError>;
    /// The transfer a partner's reference (destination, reference) belongs to.
    async fn transfer_by_remote_ref(&self, destination: &str, remote_ref: &str) -> Result<Option<Uuid>, LedgerError>;
    /// Records the dead letter and marks the outbox entry dead (kept for requeueing).
    async fn dead_letter(&self, event: Event) -> Result<Receipt, LedgerError>;
    /// Pending entries per destination.
    async fn outbox_depth(&self) -> Result<Vec<(String, i64)>, LedgerError>;
    /// Releases a held transfer to delivery with its approval event; `None` if it was not held.
    async fn release(&self, event: Event) -> Result<Option<Receipt>, LedgerError>;
    /// Withdraws a held transfer (its outbox entry is deleted) with its refusal event; `None` if
    /// it was not held.
    async fn withdraw(&self, event: Event) -> Result<Option<Receipt>, LedgerError>;
    /// Records a review or a notification; `None` if there was none outstanding.
    async fn follow_up(&self, event: Event) -> Result<Option<Receipt>, LedgerError>;
    /// Follow-ups on transfers sent by `sender_system` (`None`: every system; metrics only).
    /// Every transfer (not refused) whose subject index holds `subject_hash`, oldest first, with
    /// its decision entry.
    async fn disclosures(&self, subject_hash: &str) -> Result<Vec<(TransferRecord, Entry)>, LedgerError>;
    async fn follow_ups(
        &self,
        which: FollowUp,
        sender_system: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TransferRecord>, LedgerError>;
    /// Entries so far: the Merkle tree's size.
    async fn tree_size(&self) -> u64;
    /// The Merkle root of the first `size` entries.
    async fn root(&self, size: u64) -> Result<Hash, LedgerError>;
    /// The audit path for entry `seq` in the tree of `size` entries.
    async fn inclusion_proof(&self, seq: i64, size: u64) -> Result<Vec<Hash>, LedgerError>;
    /// The proof that the tree of `old` entries is a prefix of the tree of `new`.
    async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, LedgerError>;
    async fn store_checkpoint(&self, checkpoint: &checkpoint::Checkpoint) -> Result<(), LedgerError>;
    /// Every stored checkpoint, smallest tree first.
    async fn checkpoints(&self) -> Result<Vec<checkpoint::Checkpoint>, LedgerError>;
    async fn transfer(&self, id: Uuid) -> Result<Option<TransferRecord>, LedgerError>;
    async fn history(&self, id: Uuid) -> Result<Vec<HistoryItem>, LedgerError>;
    /// Transfers in decision order, after the cursor.
    async fn list_transfers(&self, query: &TransferQuery) -> Result<Vec<TransferRecord>, LedgerError>;
    async fn counts(
        &self,
        agreement_id: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Counts, LedgerError>;
    /// Entries with `seq > after`, in order, at most `limit`.
    async fn entries_after(&self, after: i64, limit: u32) -> Result<Vec<Entry>, LedgerError>;
    /// Every entry about an agreement's transfers recorded in `[since, until)`, in order.
    async fn entries_for(
        &self,
        agreement_id: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Vec<Entry>, LedgerError>;
}

/// Recomputes the chain from the first entry and names the first entry that breaks it.
pub async fn verify_chain(ledger: &dyn Ledger) -> Result<ChainReport, LedgerError> {
    const PAGE: u32 = 5_000;
    let mut expected_seq = 1;
    let mut prev = GENESIS;
    loop {
        let page = ledger.entries_after(expected_seq - 1, PAGE).await?;
        if page.is_empty() {
            return Ok(ChainReport {
                entries: expected_seq - 1,
                head: prev,
                first_break: None,
            });
        }
        for e in page {
            let broken = |problem: &str| ChainReport {
                entries: expected_seq - 1,
                head: prev,
                first_break: Some(ChainBreak {
                    seq: expected_seq,
                    problem: problem.to_owned(),
                }),
            };
            if e.seq != expected_seq {
                return Ok(broken(&format!("missing: the next entry present is {}", e.seq)));
            }
            if e.prev_hash != prev {
                return Ok(broken("its previous-hash link does not match the entry before it"));
            }
            if Entry::compute_hash(e.seq, &e.prev_hash, &e.event) != e.hash {
                return Ok(broken("its contents do not match its hash (edited)"));
            }
            prev = e.hash;
            expected_seq += 1;
        }
    }
}

/// Opens the ledger named by a database URL.
pub async fn open(database_url: &str) -> Result<std::sync::Arc<dyn Ledger>, LedgerError> {
    if let Some(path) = database_url.strip_prefix("sqlite://") {
        Ok(std::sync::Arc::new(
            SqliteLedger::open(std::path::Path::new(path)).await?,
        ))
    } else {
        Err(LedgerError::UnsupportedUrl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            at: Timestamp::from_microsecond(1_700_000_000_000_000).unwrap(),
            transfer_id: Uuid::nil(),
            kind: EventKind::Decision,
            status: TransferStatus::Accepted,
            decision: Some("permit".into()),
            agreement_id: "a".into(),
            agreement_version: Some("1".into()),
            agreement_hash: None,
            message_type: Some("gp_update".into()),
            schema_hash: None,
            sender_system: "s".into(),
            user_sub: None,
            user_role: None,
            recipient: None,
            legal_bases: vec!["x".into()],
            reason_code: None,
            received_sha256: None,
            sent_sha256: None,
            pointers_removed: vec![],
            detail: None,
            data_classes: vec![],
            treatments: vec![],
            key_ref: None,
            consent_status: None,
            consent_reason: None,
            consent_evidence_ref: None,
            subject_informed: None,
            subject_index: vec![],
            review_due: None,
            subject_informed_due: None,
        }
    }

    #[test]
    fn absent_and_empty_strings_hash_differently() {
        let a = event();
        let mut b = event();
        b.agreement_hash = Some(String::new());
        assert_ne!(
            Entry::compute_hash(1, &GENESIS, &a),
            Entry::compute_hash(1, &GENESIS, &b)
        );
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let mut a = event();
        a.legal_bases = vec!["ab".into(), "c".into()];
        let mut b = event();
        b.legal_bases = vec!["a".into(), "bc".into()];
        assert_ne!(
            Entry::compute_hash(1, &GENESIS, &a),
            Entry::compute_hash(1, &GENESIS, &b)
        );
    }

    #[test]
    fn hash_covers_sequence_and_link() {
        let e = event();
        let h = Entry::compute_hash(1, &GENESIS, &e);
        assert_ne!(h, Entry::compute_hash(2, &GENESIS, &e));
        assert_ne!(h, Entry::compute_hash(1, &[1; 32], &e));
    }
}
