//! The bodies the API answers with, as named types, so that the OpenAPI document is generated
//! from what the handlers really send.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::delivery::BreakerState;
use crate::ledger::checkpoint::CheckpointJson;
use crate::ledger::{HistoryItem, TransferRecord, TransferStatus};
use crate::policy::agreement::AgreementView;

/// Where a transfer stands after a request: its id, status, and the ledger entry that recorded it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Receipt {
    pub transfer_id: Uuid,
    pub status: TransferStatus,
    /// The sequence number of the ledger entry recording this step.
    pub ledger_seq: i64,
}

/// One transfer and every step of its history, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransferDetail {
    #[serde(flatten)]
    pub record: TransferRecord,
    pub history: Vec<HistoryItem>,
}

/// A page of transfers, oldest decision first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransferPage {
    /// The agreement listed, or null across agreements.
    pub agreement_id: Option<String>,
    pub transfers: Vec<TransferRecord>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<i64>,
}

/// Transfers under one agreement over a period, by status and by legal basis.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransferCounts {
    pub agreement_id: String,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub by_status: BTreeMap<String, i64>,
    /// Permitted transfers by legal-basis code.
    pub by_legal_basis: BTreeMap<String, i64>,
}

/// Transfers waiting for someone: held for approval, overdue for review, or a person to be told.
#[derive(Debug, Serialize, ToSchema)]
pub struct FollowUps {
    pub transfers: Vec<TransferRecord>,
}

/// Every agreement the gateway holds, with its state today.
#[derive(Debug, Serialize, ToSchema)]
pub struct Agreements<'a> {
    pub agreements: Vec<AgreementView<'a>>,
}

/// A signed checkpoint and the public key it verifies with.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedCheckpoint {
    pub checkpoint: CheckpointJson,
    /// `ed25519:<hex>`.
    pub public_key: String,
    /// The same checkpoint as a C2SP signed note (`tlog-checkpoint`): origin, tree size, base64
    /// root, the gateway's signature line, then one line per witness cosignature kept for it
    /// (`tlog-cosignature`).
    pub note: String,
}

/// A witness's cosignature on a checkpoint the gateway signed.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CosignatureSubmission {
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// The checkpoint's root, 64 hex characters.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub root: String,
    /// The note signature line: `— <witness name> base64(key id || timestamp || Ed25519 signature)`.
    pub cosignature: String,
}

/// The audit path proving that an entry is in the tree of a given size (RFC 9162).
#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionProof {
    pub seq: i64,
    pub leaf_index: i64,
    pub tree_size: u64,
    /// Hex SHA-256 of the leaf.
    pub leaf_hash: String,
    /// Hex SHA-256 hashes, leaf to root.
    pub path: Vec<String>,
}

/// The proof that the tree of size `from` is a prefix of the tree of size `to` (RFC 9162).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    /// Hex SHA-256 hashes.
    pub path: Vec<String>,
}

/// The process answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// Whether transfers can be accepted (the ledger answers), and each destination's circuit breaker.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// This gateway's id (several may share one ledger).
    pub gateway: String,
    /// `ok` or `unavailable`.
    pub ledger: &'static str,
    pub destinations: BTreeMap<String, BreakerState>,
}
