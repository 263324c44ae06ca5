//! The ledger: an append-only, hash-chained record of every decision and every delivery
//! outcome. It holds no payload, only what was decided, under which terms, and digests.
//!
//! [`entry`] is the encoding and the hash chain's link; [`chain`] the head and Merkle leaves this
//! process holds; [`merkle`] and [`checkpoint`] the tree, its proofs and signed checkpoints;
//! [`read_model`] the listings kept beside the entries; [`verify`] checks all of it; [`Ledger`] is
//! the storage contract, and [`sql`] its one implementation (SQLite or PostgreSQL). All SQL lives
//! in `sql`.

pub mod chain;
pub mod checkpoint;
pub mod cosignature;
pub mod entry;
pub mod error;
pub mod heads;
mod kinds;
pub mod merkle;
pub mod note;
pub mod read_model;
pub mod record;
pub mod signing;
mod sql;
pub mod verify;

use async_trait::async_trait;
use jiff::Timestamp;
use uuid::Uuid;

pub use self::chain::*;
pub use self::entry::*;
pub use self::error::*;
pub use self::kinds::*;
pub use self::read_model::*;
pub use self::sql::{SessionStore, SqlLedger, StoredSession};
pub use self::verify::*;

/// A subject-index key's fingerprint for one scope and year, and which gateway recorded it first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFingerprint {
    pub scope: String,
    pub year: i16,
    pub fingerprint: String,
    pub gateway: String,
    pub recorded_at_us: i64,
}

/// A witness's cosignature as the gateway keeps it: on which tree (size, root, and the
/// agreements' digest its note carried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCosignature {
    pub tree_size: u64,
    pub root: Hash,
    pub agreements: Option<Hash>,
    pub cosignature: cosignature::Cosignature,
}

impl StoredCosignature {
    /// The tree (as its note states it) the witness cosigned.
    pub fn tree(&self) -> note::Tree {
        note::Tree {
            tree_size: self.tree_size,
            root: self.root,
            agreements: self.agreements,
        }
    }
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
    /// For a held transfer: the most that may wait under its agreement, and for its user; checked
    /// in the transaction that would add it ([`LedgerError::HeldQuotaExceeded`]).
    pub held_quota: Option<HeldQuota>,
}

/// How many transfers may wait for a director at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldQuota {
    pub per_agreement: u64,
    pub per_user: u64,
}

/// Outbox entries that are not (yet, or any longer) being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Waiting for a director.
    Held,
    /// Dead letters, waiting for an operator.
    Dead,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Dead => "dead",
        }
    }
}

/// One gateway's claim on the next attempts of a destination's due entries (see [`Ledger::claim_due`]).
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// The destination whose due entries are claimed.
    pub destination: &'a str,
    /// The most entries to claim (the destination's free sending slots).
    pub limit: u32,
    /// Wall-clock time (gateways sharing a ledger keep their clocks in step, e.g. NTP; the lease's
    /// margin covers ordinary skew).
    pub now: Timestamp,
    pub lease: std::time::Duration,
    pub gateway_id: &'a str,
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
    /// The console's sessions, kept in a table of the same database (not in the ledger).
    fn sessions(&self) -> SessionStore;
    /// Appends one event durably; returns only once it is committed.
    async fn append(&self, event: Event) -> Result<Receipt, LedgerError>;
    /// Appends an accepted decision, its outbox entry and (if given) its idempotency key in one
    /// transaction: all or nothing. A key already bound gives [`LedgerError::IdempotencyKeyTaken`].
    async fn accept(&self, event: Event, enqueue: Enqueue, key: Option<IdempotencyKey>)
    -> Result<Receipt, LedgerError>;
    async fn idempotent_original(&self, system: &str, key: &str) -> Result<Option<IdempotentOriginal>, LedgerError>;
    /// Pending outbox entries due at `now`, oldest first.
    async fn due(&self, now: Timestamp, limit: u32) -> Result<Vec<OutboxItem>, LedgerError>;
    /// Claims, in one statement, up to `claim.limit` of `claim.destination`'s due entries for one
    /// attempt each, oldest first, as a lease. Counts the attempt before anything is sent, so an
    /// attempt interrupted by a crash is known as one (MESH then asks tracking before sending
    /// again), and makes each entry not due until the lease ends, so no other gateway on the same
    /// ledger claims it while this one may still be sending. The outcome (delivered, retry, dead
    /// letter) ends the lease; a gateway that dies mid-send leaves it to expire. Returns the
    /// entries claimed, each with the attempts it had before this one; an entry another gateway
    /// claimed, delivered or dead-lettered meanwhile is not among them.
    async fn claim_due(&self, claim: &Claim<'_>) -> Result<Vec<OutboxItem>, LedgerError>;
    /// Pending outbox entries for destinations not among `configured`, oldest first.
    async fn unrouted(&self, configured: &[&str], limit: u32) -> Result<Vec<OutboxItem>, LedgerError>;
    /// Ends, at `now`, the leases `gateway_id` holds on pending entries: it has restarted, so it is
    /// not sending them. Returns how many.
    async fn release_leases(&self, gateway_id: &str, now: Timestamp) -> Result<u64, LedgerError>;
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
    /// Puts a dead letter back in the queue with fresh attempts and age, with its event (a
    /// delivery event, status `accepted`); `None` if it was not a dead letter.
    async fn requeue(&self, event: Event) -> Result<Option<Receipt>, LedgerError>;
    /// Pending entries per destination.
    async fn outbox_depth(&self) -> Result<Vec<(String, i64)>, LedgerError>;
    /// Outbox entries in `state` accepted (wall clock) at or before `before`, oldest first.
    async fn outbox_older_than(
        &self,
        state: OutboxState,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, LedgerError>;
    /// Destroys a dead letter's bytes (its outbox entry) with the event saying so; `None` if it
    /// was not a dead letter (requeued, or already destroyed).
    async fn destroy(&self, event: Event) -> Result<Option<Receipt>, LedgerError>;
    /// Whether each entry is the one this gateway's chain holds at its place (its Merkle leaf),
    /// not only self-consistent: an entry edited in the database and re-hashed on its own is not.
    async fn holds(&self, entries: &[Entry]) -> Result<bool, LedgerError>;
    /// Makes deleted bytes unrecoverable from the database's own files where the backend allows:
    /// SQLite (with `secure_delete` on) checkpoints and resets its write-ahead log; PostgreSQL
    /// keeps dead row versions until VACUUM, and its WAL and backups by their own retention.
    async fn scrub(&self) -> Result<(), LedgerError>;
    /// Releases a held transfer to delivery with its approval event; `None` if it was not held.
    async fn release(&self, event: Event) -> Result<Option<Receipt>, LedgerError>;
    /// Withdraws a held transfer (its outbox entry is deleted) with its refusal event; `None` if
    /// it was not held.
    async fn withdraw(&self, event: Event) -> Result<Option<Receipt>, LedgerError>;
    /// Records a review or a notification; `None` if there was none outstanding.
    async fn follow_up(&self, event: Event) -> Result<Option<Receipt>, LedgerError>;
    /// Every transfer (not refused) whose subject index holds one of `subject_hashes` (the
    /// person's keyed hash under each live key), oldest first, with its decision entry.
    async fn disclosures(&self, subject_hashes: &[String]) -> Result<Vec<(TransferRecord, Entry)>, LedgerError>;
    /// Follow-ups on transfers sent by `sender_system` (`None`: every system; metrics only).
    async fn follow_ups(
        &self,
        which: FollowUp,
        sender_system: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TransferRecord>, LedgerError>;
    /// Loads what the gateway keeps in memory (the tree's leaves) before it serves, so the
    /// first append does not do it while holding the database's write lock.
    async fn warm(&self) -> Result<(), LedgerError> {
        Ok(())
    }
    /// Entries so far: the Merkle tree's size.
    async fn tree_size(&self) -> u64;
    /// The Merkle root of the first `size` entries.
    async fn root(&self, size: u64) -> Result<Hash, LedgerError>;
    /// The tree as it stands, taken together: its size, its root, and every agreement's head
    /// line ([`heads`]): what a checkpoint signs.
    async fn commitment(&self) -> Result<(u64, Hash, Vec<Hash>), LedgerError>;
    /// The audit path for entry `seq` in the tree of `size` entries.
    async fn inclusion_proof(&self, seq: i64, size: u64) -> Result<Vec<Hash>, LedgerError>;
    /// The proof that the tree of `old` entries is a prefix of the tree of `new`.
    async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, LedgerError>;
    async fn store_checkpoint(&self, checkpoint: &checkpoint::Checkpoint) -> Result<(), LedgerError>;
    /// Every stored checkpoint, smallest tree first.
    async fn checkpoints(&self) -> Result<Vec<checkpoint::Checkpoint>, LedgerError>;
    /// The (sequence number, time in microseconds, hash) of every entry of an agreement up to
    /// `upto`, in order, as stored (index columns: check them against a signed head).
    async fn agreement_hashes(&self, agreement_id: &str, upto: u64) -> Result<Vec<(i64, i64, Hash)>, LedgerError>;
    /// Every agreement's head line ([`heads`]) at `size` entries, from the entries' own bytes.
    async fn heads_at(&self, size: u64) -> Result<Vec<Hash>, LedgerError>;
    /// An agreement's entries with sequence numbers in `from..=to`, in order.
    async fn agreement_entries(&self, agreement_id: &str, from: i64, to: i64) -> Result<Vec<Entry>, LedgerError>;
    /// Keeps a witness's cosignature on the checkpoint of `tree_size` entries and root `root`
    /// (checked by the caller). `false` when that witness's cosignature on that tree size was
    /// already kept (the first is kept; rows are append-only).
    async fn store_cosignature(&self, cosigned: &StoredCosignature) -> Result<bool, LedgerError>;
    /// Records `mine` unless a fingerprint of that scope's key for that year is recorded; returns
    /// the one recorded (the first gateway's), to compare.
    async fn subject_key_fingerprint(&self, mine: &KeyFingerprint) -> Result<KeyFingerprint, LedgerError>;
    /// Every kept cosignature on trees of at least `min_tree_size` entries, smallest tree first.
    async fn cosignatures(&self, min_tree_size: u64) -> Result<Vec<StoredCosignature>, LedgerError>;
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
    /// Decisions about an agreement's transfers in `[since, until)`, per hour and [`Outcome`].
    async fn activity(
        &self,
        agreement_id: &str,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Vec<Activity>, LedgerError>;
    /// The transfers one person (by subject) asked for through these systems, newest first.
    async fn transfers_by(
        &self,
        user_sub: &str,
        sender_systems: &[String],
        limit: u32,
    ) -> Result<Vec<TransferRecord>, LedgerError>;
    /// Every entry about these transfers, in order.
    async fn entries_of(&self, transfer_ids: &[Uuid]) -> Result<Vec<Entry>, LedgerError>;
    /// The legal bases stored with these transfers' listings (JSON, on permitted ones).
    async fn legal_bases_of(&self, transfer_ids: &[Uuid]) -> Result<Vec<(Uuid, Option<String>)>, LedgerError>;
    /// The subject index's rows for these transfers: (transfer, subject hash).
    async fn subjects_of(&self, transfer_ids: &[Uuid]) -> Result<Vec<(Uuid, String)>, LedgerError>;
    /// How many rows the read side holds, and how many the chain says it should: (transfers,
    /// decision entries, subject-index rows).
    async fn projection_sizes(&self) -> Result<(i64, i64, i64), LedgerError>;
    /// Entries with `seq > after`, in order, at most `limit`, as stored.
    async fn raw_entries_after(&self, after: i64, limit: u32) -> Result<Vec<RawEntry>, LedgerError>;
    /// Entries with `seq > after`, in order, at most `limit`.
    async fn entries_after(&self, after: i64, limit: u32) -> Result<Vec<Entry>, LedgerError> {
        let raw = self.raw_entries_after(after, limit).await?;
        raw.iter().map(RawEntry::decode).collect()
    }
    /// Every entry about an agreement's transfers recorded in `[since, until)`, in order.
    async fn entries_for(
        &self,
        agreement_id: &str,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Vec<Entry>, LedgerError>;
}

/// Opens the ledger named by a database URL: `sqlite://PATH` (embedded, one file) or
/// `postgres://…` (several gateways may share it).
pub async fn open(database_url: &str) -> Result<std::sync::Arc<dyn Ledger>, LedgerError> {
    Ok(std::sync::Arc::new(SqlLedger::open(database_url).await?))
}

#[cfg(test)]
mod tests;
