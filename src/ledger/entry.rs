//! A ledger entry and its canonical encoding: the bytes its hash covers, and their decoder.
//!
//! Each entry's hash is SHA-256 over [`Entry::canonical_bytes`], which include the previous
//! entry's hash, so an edited, removed or reordered row breaks the chain at that row. A change
//! to this encoding must be a new version (a new tag), never a silent break of every ledger.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{EventKind, LedgerError, TransferStatus, ledger_time, merkle, micros};

pub type Hash = [u8; 32];
pub const GENESIS: Hash = [0; 32];

/// What a caller asks the ledger to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: Timestamp,
    pub transfer_id: Uuid,
    pub kind: EventKind,
    pub status: TransferStatus,
    /// On decision and approval events: permit, deny or hold.
    pub decision: Option<DecisionKind>,
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
    /// Delivery events: the destination the bytes went to (or were refused for). Version 2.
    pub destination: Option<String>,
    /// Delivery events: the gateway that made the attempt (several may share a ledger). Version 2.
    pub gateway: Option<String>,
    /// The issuer of the token of the user in `user_sub` (subjects are per issuer). Version 2.
    pub user_issuer: Option<String>,
    /// Who gave consent (a role code). Version 2.
    pub consent_given_by: Option<String>,
    /// Where the capacity decision is recorded (a reference). Version 2.
    pub capacity_ref: Option<String>,
    /// Why the person was not told (a code). Version 2.
    pub subject_informed_reason: Option<String>,
    /// The national data opt-out: `applies:not_opted_out` or `not_applicable:<exemption>`.
    /// Version 2.
    pub national_data_opt_out: Option<String>,
    /// A one-off disclosure's request kind (`court_order`, …). Version 3.
    pub requester_kind: Option<String>,
    /// A one-off disclosure's requester reference, as a keyed hash. Version 3.
    pub requester_ref: Option<String>,
}

/// What was decided, as the ledger spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// Sent (or, on an approval, released).
    Permit,
    /// Refused (or, on an approval event, stopped by the director).
    Deny,
    /// Recorded and held for a director: nothing leaves until one approves.
    Hold,
}

impl DecisionKind {
    pub fn code(self) -> &'static str {
        match self {
            Self::Permit => "permit",
            Self::Deny => "deny",
            Self::Hold => "hold",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Permit, Self::Deny, Self::Hold]
            .into_iter()
            .find(|d| d.code() == s)
    }
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
            destination: None,
            gateway: None,
            user_issuer: None,
            consent_given_by: None,
            capacity_ref: None,
            subject_informed_reason: None,
            national_data_opt_out: None,
            requester_kind: None,
            requester_ref: None,
        }
    }
}

/// Whether two events' users are one person under the two-person rule (issuer and subject, case
/// and spacing aside; see `policy::follow_up::Person`).
pub fn same_person(a: &Event, b: &Event) -> bool {
    fn person(e: &Event) -> Option<crate::policy::follow_up::Person<'_>> {
        e.user_sub.as_deref().map(|sub| crate::policy::follow_up::Person {
            issuer: e.user_issuer.as_deref(),
            sub,
        })
    }
    match (person(a), person(b)) {
        (Some(a), Some(b)) => a.is(&b),
        _ => false,
    }
}

impl Event {
    /// The fields version 2 of the encoding adds, in encoding order.
    fn v2_fields(&self) -> [&Option<String>; 7] {
        [
            &self.destination,
            &self.gateway,
            &self.user_issuer,
            &self.consent_given_by,
            &self.capacity_ref,
            &self.subject_informed_reason,
            &self.national_data_opt_out,
        ]
    }

    /// The fields version 3 adds after version 2's.
    fn v3_fields(&self) -> [&Option<String>; 2] {
        [&self.requester_kind, &self.requester_ref]
    }

    /// Whether the event needs version 2 of the encoding: one of its fields is present.
    fn has_v2_fields(&self) -> bool {
        self.v2_fields().iter().any(|f| f.is_some())
    }

    /// The encoding's version: the lowest that holds every field present.
    fn version(&self) -> u8 {
        if self.v3_fields().iter().any(|f| f.is_some()) {
            3
        } else if self.has_v2_fields() {
            2
        } else {
            1
        }
    }

    /// A permitted decision (sent, or held for approval): its legal bases are what it relied on.
    pub fn permitted(&self) -> bool {
        matches!(self.decision, Some(DecisionKind::Permit | DecisionKind::Hold))
    }

    /// When a director's review of an urgent transfer is due, at the ledger's resolution.
    pub fn review_due_at(&self) -> Option<Timestamp> {
        self.review_due
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(ledger_time)
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
    /// The canonical encoding the hash covers. Version 1:
    ///
    /// `"isa-gateway.ledger.v1"`, then `prev_hash` (32 bytes), `seq` and `at` (microseconds since
    /// the Unix epoch) as 8-byte big-endian integers, then each field in declaration order of
    /// [`Event`]: a string as a 4-byte big-endian length and its UTF-8 bytes; an absent optional
    /// string as the length `0xFFFFFFFF`; a list as a 4-byte count then each string.
    ///
    /// Version 2 (tag `"isa-gateway.ledger.v2"`) is version 1 followed by `destination`, `gateway`,
    /// `user_issuer`, `consent_given_by`, `capacity_ref`, `subject_informed_reason` and
    /// `national_data_opt_out` (optional strings). It is written exactly when one of them is present, so
    /// every entry written before them keeps its version 1 bytes and hash. Version 3 (tag
    /// `"isa-gateway.ledger.v3"`, one-off disclosures) is version 2 followed by `requester_kind` and
    /// `requester_ref`, written exactly when one of those is present.
    pub fn canonical_bytes(seq: i64, prev_hash: &Hash, e: &Event) -> Vec<u8> {
        let mut b = Vec::with_capacity(512);
        let version = e.version();
        b.extend_from_slice(match version {
            1 => TAG_V1,
            2 => TAG_V2,
            _ => TAG_V3,
        });
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
        o(&mut b, &e.decision.map(|d| d.code().to_owned()));
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
        if version >= 2 {
            e.v2_fields().into_iter().for_each(|f| o(&mut b, f));
        }
        if version >= 3 {
            e.v3_fields().into_iter().for_each(|f| o(&mut b, f));
        }
        b
    }

    pub fn compute_hash(seq: i64, prev_hash: &Hash, e: &Event) -> Hash {
        Sha256::digest(Self::canonical_bytes(seq, prev_hash, e)).into()
    }

    /// The entry's leaf in the Merkle tree: SHA-256(0x00 || canonical bytes), RFC 9162.
    pub fn leaf(seq: i64, prev_hash: &Hash, e: &Event) -> Hash {
        merkle::leaf_hash(&Self::canonical_bytes(seq, prev_hash, e))
    }

    /// Reads an entry back from its canonical bytes (what the ledger stores), with the hash
    /// stored beside them. `None` if the bytes are not a well-formed version 1, 2 or 3 encoding.
    pub fn decode(bytes: &[u8], hash: Hash) -> Option<Self> {
        let mut r = Reader::header(bytes)?;
        let (prev_hash, seq, at) = (r.prev_hash, r.seq, r.at_us);
        let s = |r: &mut Reader| r.str().map(str::to_owned);
        let o = |r: &mut Reader| r.opt().map(|v| v.map(str::to_owned));
        let l = |r: &mut Reader| r.list();
        let event = Event {
            at: Timestamp::from_microsecond(at).ok()?,
            transfer_id: Uuid::parse_str(r.str()?).ok()?,
            kind: EventKind::parse(r.str()?)?,
            status: TransferStatus::parse(r.str()?)?,
            decision: match r.opt()? {
                None => None,
                Some(code) => Some(DecisionKind::parse(code)?),
            },
            agreement_id: s(&mut r)?,
            agreement_version: o(&mut r)?,
            agreement_hash: o(&mut r)?,
            message_type: o(&mut r)?,
            schema_hash: o(&mut r)?,
            sender_system: s(&mut r)?,
            user_sub: o(&mut r)?,
            user_role: o(&mut r)?,
            recipient: o(&mut r)?,
            legal_bases: l(&mut r)?,
            reason_code: o(&mut r)?,
            received_sha256: o(&mut r)?,
            sent_sha256: o(&mut r)?,
            pointers_removed: l(&mut r)?,
            detail: o(&mut r)?,
            data_classes: l(&mut r)?,
            treatments: l(&mut r)?,
            key_ref: o(&mut r)?,
            consent_status: o(&mut r)?,
            consent_reason: o(&mut r)?,
            consent_evidence_ref: o(&mut r)?,
            subject_informed: o(&mut r)?,
            subject_index: l(&mut r)?,
            review_due: o(&mut r)?,
            subject_informed_due: o(&mut r)?,
            destination: None,
            gateway: None,
            user_issuer: None,
            consent_given_by: None,
            capacity_ref: None,
            subject_informed_reason: None,
            national_data_opt_out: None,
            requester_kind: None,
            requester_ref: None,
        };
        let mut event = event;
        if r.version >= 2 {
            event.destination = o(&mut r)?;
            event.gateway = o(&mut r)?;
            event.user_issuer = o(&mut r)?;
            event.consent_given_by = o(&mut r)?;
            event.capacity_ref = o(&mut r)?;
            event.subject_informed_reason = o(&mut r)?;
            event.national_data_opt_out = o(&mut r)?;
        }
        if r.version == 3 {
            event.requester_kind = o(&mut r)?;
            event.requester_ref = o(&mut r)?;
        }
        // A version without any of the fields it adds is not an encoding this code writes.
        if event.version() != r.version {
            return None;
        }
        r.rest.is_empty().then_some(Self {
            seq,
            event,
            prev_hash,
            hash,
        })
    }
}

const TAG_V1: &[u8] = b"isa-gateway.ledger.v1";
const TAG_V2: &[u8] = b"isa-gateway.ledger.v2";
const TAG_V3: &[u8] = b"isa-gateway.ledger.v3";

/// Reads the canonical encoding without copying: the fixed header, then field by field.
pub(super) struct Reader<'a> {
    pub(super) prev_hash: Hash,
    pub(super) seq: i64,
    pub(super) at_us: i64,
    /// 1, 2 or 3.
    pub(super) version: u8,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn header(bytes: &'a [u8]) -> Option<Self> {
        let (version, rest) = if let Some(rest) = bytes.strip_prefix(TAG_V1) {
            (1, rest)
        } else if let Some(rest) = bytes.strip_prefix(TAG_V2) {
            (2, rest)
        } else {
            (3, bytes.strip_prefix(TAG_V3)?)
        };
        let (prev_hash, rest) = rest.split_first_chunk::<32>()?;
        let (seq, rest) = rest.split_first_chunk::<8>()?;
        let (at, rest) = rest.split_first_chunk::<8>()?;
        Some(Self {
            prev_hash: *prev_hash,
            seq: i64::from_be_bytes(*seq),
            at_us: i64::from_be_bytes(*at),
            version,
            rest,
        })
    }

    fn u32(&mut self) -> Option<u32> {
        let (n, rest) = self.rest.split_first_chunk::<4>()?;
        self.rest = rest;
        Some(u32::from_be_bytes(*n))
    }

    fn bytes(&mut self, n: u32) -> Option<&'a str> {
        let n = usize::try_from(n).ok()?;
        if self.rest.len() < n {
            return None;
        }
        let (v, rest) = self.rest.split_at(n);
        self.rest = rest;
        std::str::from_utf8(v).ok()
    }

    pub(super) fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()?;
        self.bytes(n)
    }

    pub(super) fn opt(&mut self) -> Option<Option<&'a str>> {
        match self.u32()? {
            u32::MAX => Some(None),
            n => self.bytes(n).map(Some),
        }
    }

    fn list(&mut self) -> Option<Vec<String>> {
        let n = self.u32()?;
        // Each element takes at least 4 bytes: a count beyond that is malformed, not a reason
        // to reserve memory.
        if usize::try_from(n).ok()? > self.rest.len() / 4 {
            return None;
        }
        (0..n).map(|_| self.str().map(str::to_owned)).collect()
    }
}

/// An entry as stored: its canonical bytes and hash, with the columns the database indexes it
/// by. Verification checks the bytes against the hash and the columns against the bytes, so
/// an edited index column (which would hide an entry from an agreement's export) is caught too.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub seq: i64,
    pub bytes: Vec<u8>,
    pub hash: Hash,
    pub transfer_id: String,
    pub kind: String,
    pub agreement_id: String,
    pub at_us: i64,
}

impl RawEntry {
    pub fn of(entry: &Entry) -> Self {
        Self {
            seq: entry.seq,
            bytes: Entry::canonical_bytes(entry.seq, &entry.prev_hash, &entry.event),
            hash: entry.hash,
            transfer_id: entry.event.transfer_id.to_string(),
            kind: entry.event.kind.as_str().to_owned(),
            agreement_id: entry.event.agreement_id.clone(),
            at_us: micros(entry.event.at),
        }
    }

    pub fn decode(&self) -> Result<Entry, LedgerError> {
        Entry::decode(&self.bytes, self.hash).ok_or_else(|| LedgerError::Corrupt {
            seq: self.seq,
            what: "its stored bytes are not a ledger entry".into(),
        })
    }
}
